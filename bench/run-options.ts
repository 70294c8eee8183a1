// Command-line options of `npm run bench`, resolved once into a frozen object.
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseCount } from '../common/cli/options.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const SCENARIOS = ['ping', 'execute', 'stream', 'ping-under-load'] as const;
export type Scenario = (typeof SCENARIOS)[number];

const DEFAULT_JSON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/results/latest.json');

export interface RunOptions {
  pings: number;
  execs: number;
  /** Streamed output sizes, MiB. */
  sizes: readonly number[];
  /** Transfers per size and contender; undefined: by size (see `repsFor`). */
  reps: number | undefined;
  only: ReadonlySet<Scenario>;
  /** Interleave qemu-ga's equivalents when it is installed (and not `rpcOnly`). */
  qga: boolean;
  /** Negotiator contenders only, no baselines (for profiling). */
  rpcOnly: boolean;
  json: string;
  /** node options for the server process (`--cpu-prof ...`). */
  serverNodeArgs: readonly string[];
  /** The agent's `prespawn` (launchers kept ready). */
  prespawn: number;
  /** Offer binary frames (issue 12); false: JSON lines both ways, for A/B runs. */
  frames: boolean;
}

function parsePositiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`Expected \`--${name}\` to be a positive integer, got \`${value}\``);
    return n;
  };
}

function parseScenarios(value: string): Scenario[] {
  return value.split(',').map((name) => {
    if (!(SCENARIOS as readonly string[]).includes(name)) {
      throw new InvalidArgumentError(`Expected \`--only\` to list some of ${SCENARIOS.join(', ')}, got \`${name}\``);
    }
    return name as Scenario;
  });
}

// Parse `argv` (process.argv shape); commander prints usage and exits on a bad option.
export function parseRunOptions(argv: readonly string[]): Readonly<RunOptions> {
  const opts = new Command()
    .name('bench')
    .description('negotiator over one UNIX socket vs bare baselines on the same socket (and qemu-ga when installed)')
    .addOption(new Option('--pings <n>', 'measured pings per contender').default(5000).argParser(parsePositiveInt('pings')))
    .addOption(new Option('--execs <n>', 'measured /bin/true executions per contender').default(200).argParser(parsePositiveInt('execs')))
    .addOption(new Option('--sizes <mib>', 'streamed output sizes in MiB, comma-separated').default([1, 16, 256]).argParser((v) => v.split(',').map(parsePositiveInt('sizes'))))
    .addOption(new Option('--reps <n>', 'transfers per size and contender (default 15 / 7 / 5 for <= 1 / <= 16 / larger MiB)').argParser(parsePositiveInt('reps')))
    .addOption(new Option('--only <scenarios>', `comma-separated subset of ${SCENARIOS.join(', ')}`).default([...SCENARIOS]).argParser(parseScenarios))
    .option('--no-qga', 'leave qemu-ga out even when it is installed')
    .option('--no-frames', 'the client does not offer binary frames: bulk bytes go as base64 JSON lines (A/B)')
    .option('--rpc-only', 'negotiator contenders only, no baselines (for profiling with --cpu-prof)', false)
    .addOption(new Option('--json <file>', 'where the machine-readable results go').default(DEFAULT_JSON))
    .addOption(new Option('--prespawn <n>', 'launchers the agent keeps ready (common/commands/launcher-pool.ts; 0 = spawn every command directly)').default(2).argParser(parseCount(true)))
    .addOption(
      new Option('--server-node-args <args>', 'node options for the server process, space-separated (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")')
        .default([])
        .argParser((v) => v.split(' ').filter(Boolean)),
    )
    .parse([...argv])
    .opts<Omit<RunOptions, 'only' | 'reps'> & { only: Scenario[]; reps?: number }>();
  return Object.freeze({ ...opts, reps: opts.reps, only: new Set(opts.only) });
}

// Transfers per contender for a size: fewer for the large ones (each takes seconds).
export function repsFor(mib: number, override: number | undefined): number {
  return override ?? (mib <= 1 ? 15 : mib <= 16 ? 7 : 5);
}
