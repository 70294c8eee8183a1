// Where a CLI's start-up time goes: node's own phases (from performance.nodeTiming, through a tiny
// --import preload), the cost of each group of modules the CLI imports (bench/import-steps.ts, in fresh
// processes), and the shipped esbuild bundle of the CLI (npm run bundle).
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { medianOf } from './stats.js';
import { runTimed, type RunSpec } from './timed-spawn.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const IMPORT_STEPS = path.join(DIST, 'bench', 'import-steps.js');

const TIMING_MARK = '@@bench-timing ';
// Runs before the program's first module; at exit, reports node's start-up milestones (ms after its time origin).
const PRELOAD = `import { writeSync } from 'node:fs';
const userStart = performance.now();
process.on('exit', () => {
  const t = performance.nodeTiming;
  writeSync(2, '\\n${TIMING_MARK}' + JSON.stringify({ timeOrigin: performance.timeOrigin, v8Start: t.v8Start, environment: t.environment, bootstrapComplete: t.bootstrapComplete, userStart, exit: performance.now() }) + '\\n');
});`;
// Through NODE_OPTIONS, so that it also reaches the node a launcher (bin/negotiator-host) starts.
const PRELOAD_NODE_OPTIONS = `--import data:text/javascript,${encodeURIComponent(PRELOAD)}`;

/** Phases of one run, ms; they add up to its wall time. */
export const PHASES = {
  exec: 'spawn until node\'s clock starts (fork, exec, dynamic linking; a launcher\'s sh)',
  preV8: 'node start until V8 starts (reads NODE_EXTRA_CA_CERTS)',
  bootstrap: 'V8 and node\'s environment bootstrap',
  loader: 'ESM loader until the program\'s first module runs',
  program: 'the program: its imports, then its work',
  teardown: 'exit until the parent sees it closed',
} as const;
export type Phase = keyof typeof PHASES;

interface Milestones {
  timeOrigin: number;
  v8Start: number;
  bootstrapComplete: number;
  userStart: number;
  exit: number;
}

export type PhaseSample = Record<Phase, number> & { wall: number };

// One run of `spec` (node, or a launcher that starts node), cut into phases.
export async function runWithPhases(spec: RunSpec): Promise<PhaseSample> {
  const run = await runTimed({ ...spec, env: { ...spec.env, NODE_OPTIONS: PRELOAD_NODE_OPTIONS } });
  const line = run.stderr.split('\n').find((l) => l.startsWith(TIMING_MARK));
  if (run.exitCode !== 0 || !line) throw new Error(`phases of ${[spec.file, ...spec.args].join(' ')}: exit ${run.exitCode}, ${run.stderr.trim()}`);
  const m = JSON.parse(line.slice(TIMING_MARK.length)) as Milestones;
  return {
    exec: m.timeOrigin - run.startEpochMs,
    preV8: m.v8Start,
    bootstrap: m.bootstrapComplete - m.v8Start,
    loader: m.userStart - m.bootstrapComplete,
    program: m.exit - m.userStart,
    teardown: run.startEpochMs + run.wallMs - (m.timeOrigin + m.exit),
    wall: run.wallMs,
  };
}

// The median of each phase (the medians need not add up to the median wall time).
export function summarizePhases(samples: readonly PhaseSample[]): PhaseSample {
  const median = (key: Phase | 'wall'): number => medianOf(samples.map((s) => s[key]));
  return { exec: median('exec'), preV8: median('preV8'), bootstrap: median('bootstrap'), loader: median('loader'), program: median('program'), teardown: median('teardown'), wall: median('wall') };
}

/** A group of modules, imported after the groups before it. */
export interface ImportGroup {
  label: string;
  specs: readonly string[];
  /**
   * `static`: cli.js's static imports, which every run loads; `on demand`: a dynamic import that only
   * some runs make; `reference`: not loaded by `--execute` at all. Checked by test/bench/startup-profile.test.ts.
   */
  loaded: 'static' | 'on demand' | 'reference';
}

const dist = (file: string): string => pathToFileURL(path.join(DIST, file)).href;

/** `negotiator-host`'s static imports in dependency order, then what `--execute` loads on demand, then references. */
export const HOST_CLI_IMPORTS: readonly ImportGroup[] = [
  { label: '(ESM loader warm-up: one empty module; every program pays it)', specs: ['data:text/javascript,'], loaded: 'static' },
  { label: 'commander', specs: ['commander'], loaded: 'static' },
  { label: 'common/protocol, errors, logger', specs: [dist('common/wire/protocol.js'), dist('common/wire/errors.js'), dist('common/base/logger.js')], loaded: 'static' },
  { label: 'common/rpc-peer (+ handshake, line-reader, warning-limiter; node:crypto, node:events)', specs: [dist('common/wire/rpc-peer.js')], loaded: 'static' },
  { label: 'common/cli-actions (+ execute-client, command-line, flow-window)', specs: [dist('common/cli/actions.js')], loaded: 'static' },
  { label: 'common/agent-info, cli-options, stream-options (+ streams/address, commands/name)', specs: [dist('common/wire/agent-info.js'), dist('common/cli/options.js'), dist('common/cli/stream-options.js')], loaded: 'static' },
  { label: 'common/cli-client, stream-channel (node:net)', specs: [dist('common/cli/client.js'), dist('common/wire/stream-channel.js')], loaded: 'static' },
  { label: 'host/guest-specs, run-host (the rest of cli.js\'s static imports)', specs: [dist('host/guest-specs.js'), dist('host/run-host.js')], loaded: 'static' },
  { label: 'host/locate-guest (+ domain-xml, virsh; --execute without a daemon, libvirt guests only)', specs: [dist('host/locate-guest.js')], loaded: 'on demand' },
  { label: 'chokidar (not loaded by the CLI: only the daemons watch)', specs: ['chokidar'], loaded: 'reference' },
  { label: 'execa (not loaded by --execute; for reference)', specs: ['execa'], loaded: 'reference' },
];

export interface ImportCost {
  label: string;
  /** Median ms this group added, over fresh processes. */
  medianMs: number;
  /** ES modules it loaded (CommonJS files required inside a package are not counted). */
  modules: number;
}

// The cost of each group, median over `runs` fresh processes (env: NODE_EXTRA_CA_CERTS does not matter here).
export async function measureImportCosts(groups: readonly ImportGroup[], runs: number, env: NodeJS.ProcessEnv): Promise<ImportCost[]> {
  const args = groups.map((group) => group.specs.join(' '));
  const run = async (extra: string[]): Promise<Array<{ ms: number; modules?: number }>> => {
    const result = await runTimed({ file: process.execPath, args: [IMPORT_STEPS, ...extra, ...args], env });
    if (result.exitCode !== 0) throw new Error(`import-steps failed: ${result.stderr.trim()}`);
    return JSON.parse(result.stdout) as Array<{ ms: number; modules?: number }>;
  };
  const counted = await run(['--count']);
  const times: number[][] = groups.map(() => []);
  for (let i = 0; i < runs; i++) (await run([])).forEach((step, index) => times[index]!.push(step.ms));
  return groups.map((group, index) => ({ label: group.label, medianMs: medianOf(times[index]!), modules: counted[index]?.modules ?? Number.NaN }));
}

// The shipped single-file bundle of negotiator-host (`npm run bundle`, examples/bundle/build-bundle.ts),
// built under `outDir`; returns its path.
export async function bundleHostCli(outDir: string): Promise<string> {
  const { buildBundles } = await import('../examples/bundle/build-bundle.js');
  const outputs = await buildBundles(outDir);
  const host = outputs.find((output) => path.basename(output).startsWith('negotiator-host'));
  if (!host) throw new Error(`npm run bundle built no negotiator-host bundle: ${outputs.join(', ')}`);
  return host;
}
