// `npm run bench:cli`: `negotiator-host --execute true GUEST` end to end, as a user runs it (the command
// npm installs: a link in a bin directory to the launcher bin/negotiator-host, which starts node without
// NODE_EXTRA_CA_CERTS): wall time (spawn to exit, output read), the CLI's CPU time and peak resident
// memory, through a running host daemon (its control socket) and without one (the CLI opens the guest's
// socket itself: --guest NAME=DIR --no-libvirt), beside `node -e 0` (the floor) and `node dist/host/cli.js`
// (no launcher), each with NODE_EXTRA_CA_CERTS as set and unset.
// The guest is simulated (bench/fleet-guests.ts, its own process) and offers `true -> /bin/true`.
// Then where the start-up time goes: node's phases, the CLI's module groups; and the shipped bundle (npm run bundle).
// With --executable FILE, the single executable (npm run package) runs beside them: its own target is
// < 80 ms and no slower than the npm-installed command.
import { parseCount } from '../common/cli/options.js';
import { Command, Option } from 'commander';
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { executeRemote } from '../common/execute/client.js';
import type { ExecuteResult } from '../common/wire/protocol.js';
import { startGuestFleet } from './guest-fleet.js';
import { HOST_CLI, connectControl, startHostDaemon, waitForConnectedGuests } from './host-daemon.js';
import { LoadSampler, loadavg1 } from './proc-stats.js';
import { describeMachine, fixed, formatTable, formatVerdicts, runBenchmark, writeResults, type TargetVerdict } from './report.js';
import { sampleLatencies } from './sampling.js';
import { HOST_CLI_IMPORTS, PHASES, bundleHostCli, measureImportCosts, runWithPhases, summarizePhases, type Phase, type PhaseSample } from './startup-profile.js';
import { medianOf, summarizeLatencies, type LatencySummary } from './stats.js';
import { measurePeakRssKiB, runTimed, type RunSpec } from './timed-spawn.js';
import { createWorkspace } from './workspace.js';

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEFAULT_JSON = path.join(PACKAGE_ROOT, 'bench/results/cli.json');
const GUEST = 'bench';
const TARGET_MS = 150;
const EXECUTABLE_TARGET_MS = 80;

interface CliBenchOptions {
  runs: number;
  rssRuns: number;
  phaseRuns: number;
  importRuns: number;
  bundle: boolean;
  executable?: string;
  json: string;
}

function parseOptions(argv: readonly string[]): Readonly<CliBenchOptions> {
  const opts = new Command()
    .name('bench:cli')
    .description('negotiator-host --execute true GUEST end to end, with and without a host daemon, beside node -e 0')
    .addOption(new Option('--runs <n>', 'timed runs per contender (interleaved)').default(40).argParser(parseCount(false)))
    .addOption(new Option('--rss-runs <n>', 'runs under /usr/bin/time per contender, for the peak RSS').default(8).argParser(parseCount(false)))
    .addOption(new Option('--phase-runs <n>', 'runs with the start-up phase preload per profiled contender').default(10).argParser(parseCount(false)))
    .addOption(new Option('--import-runs <n>', 'fresh processes timing the CLI\'s module groups').default(10).argParser(parseCount(false)))
    .option('--no-bundle', 'leave out the bundled CLI contender (npm run bundle)')
    .option('--executable <file>', 'also run this negotiator-host single executable (npm run package: release/x64/negotiator-host)')
    .addOption(new Option('--json <file>', 'where the machine-readable results go').default(DEFAULT_JSON))
    .parse([...argv])
    .opts<CliBenchOptions>();
  return Object.freeze(opts);
}

/** One way of running something, timed against the others. */
interface Contender {
  /** What runs, as the table says it. */
  what: string;
  /** NODE_EXTRA_CA_CERTS as the machine sets it, or unset. */
  certs: 'set' | 'unset';
  spec: RunSpec;
  /** Expected exit code 0 and no output (`--execute true`). */
  silent: boolean;
  /** Issue 7's target (< TARGET_MS) applies: `--execute true` with the installed command. */
  targeted?: boolean;
  /** Through the launcher, which unsets NODE_EXTRA_CA_CERTS: node never sees it. */
  throughLauncher?: boolean;
}

interface ContenderResult {
  what: string;
  certs: 'set' | 'unset';
  /** NODE_EXTRA_CA_CERTS as node itself sees it (a launcher unsets it). */
  nodeCerts: 'set' | 'unset';
  targeted: boolean;
  wall: LatencySummary;
  cpuMsMedian: number;
  peakRssMiBMedian: number;
  load: string;
}

// `negotiator-host` as `npm install -g` puts it under `prefix`: bin/negotiator-host, a relative link to the
// package's launcher (here the package folder is a link to this checkout, as `npm install -g .` makes it).
function installHostCommand(prefix: string): string {
  const packageDir = path.join(prefix, 'lib', 'node_modules', 'kvm-negotiator');
  mkdirSync(path.dirname(packageDir), { recursive: true });
  symlinkSync(PACKAGE_ROOT, packageDir);
  mkdirSync(path.join(prefix, 'bin'));
  const command = path.join(prefix, 'bin', 'negotiator-host');
  symlinkSync('../lib/node_modules/kvm-negotiator/bin/negotiator-host', command);
  return command;
}

function contenderKey(c: Pick<Contender, 'what' | 'certs'>): string {
  return `${c.what} [${c.certs}]`;
}

async function runChecked(contender: Contender): Promise<number> {
  const run = await runTimed(contender.spec);
  if (run.exitCode !== 0 || (contender.silent && (run.stdout !== '' || run.stderr !== ''))) {
    throw new Error(`${contender.what}: exit ${run.exitCode}, stdout ${JSON.stringify(run.stdout.slice(0, 200))}, stderr ${JSON.stringify(run.stderr.slice(0, 500))}`);
  }
  return run.cpuMs;
}

function formatResults(results: readonly ContenderResult[], floor: Record<string, number>): string {
  return formatTable(
    ['run', 'NODE_EXTRA_CA_CERTS', 'median ms', 'p99 ms', 'min..max ms', 'over node -e 0', 'CPU ms', 'peak RSS MiB', 'n', '1-min load'],
    results.map((r) => [
      r.what,
      r.certs,
      fixed(r.wall.medianUs / 1000),
      fixed(r.wall.p99Us / 1000),
      `${fixed(r.wall.minUs / 1000)}..${fixed(r.wall.maxUs / 1000)}`,
      r.what === 'node -e 0' ? '' : `+${fixed(r.wall.medianUs / 1000 - floor[r.nodeCerts]!)}`,
      fixed(r.cpuMsMedian),
      fixed(r.peakRssMiBMedian),
      String(r.wall.count),
      r.load,
    ]),
  );
}

function formatPhases(columns: ReadonlyArray<{ header: string; phases: PhaseSample }>): string {
  const rows = (Object.keys(PHASES) as Phase[]).map((phase) => [PHASES[phase], ...columns.map((c) => fixed(c.phases[phase]))]);
  rows.push(['wall (median of the runs)', ...columns.map((c) => fixed(c.phases.wall))]);
  return formatTable(['phase, median ms', ...columns.map((c) => c.header)], rows);
}

const EXECUTABLE_ROW = '--execute true, via the daemon, single executable';

// The single executable against its own target and against the installed command of the same run.
function executableVerdicts(results: readonly ContenderResult[]): TargetVerdict[] {
  return results
    .filter((r) => r.what === EXECUTABLE_ROW)
    .flatMap((r) => {
      const installed = results.find((other) => other.what === '--execute true, via the daemon' && other.certs === r.certs)!;
      const ms = r.wall.medianUs / 1000;
      const installedMs = installed.wall.medianUs / 1000;
      return [
        { name: `single executable, NODE_EXTRA_CA_CERTS ${r.certs}`, target: `< ${EXECUTABLE_TARGET_MS} ms`, measured: `median ${fixed(ms)} ms (load ${r.load})`, met: ms < EXECUTABLE_TARGET_MS },
        { name: `single executable against the installed command, NODE_EXTRA_CA_CERTS ${r.certs}`, target: 'no slower', measured: `${fixed(ms)} ms against ${fixed(installedMs)} ms`, met: ms <= installedMs },
      ];
    });
}

const IN_PROCESS = {
  open: 'executeRemote true over an open control connection',
  fresh: 'connect + handshake + executeRemote true + close',
} as const;

// `--execute true` via the daemon as library calls: over one open connection, and on a fresh one each time.
async function measureInProcess(controlSocket: string, count: number): Promise<{ rows: Record<string, LatencySummary>; load: string }> {
  const load = new LoadSampler();
  const open = await connectControl(controlSocket);
  const check = (result: ExecuteResult): void => {
    if (result.exitCode !== 0) throw new Error(`execute true through the daemon: exit ${result.exitCode}`);
  };
  try {
    load.sample();
    const samples = await sampleLatencies(
      {
        [IN_PROCESS.open]: async () => check(await executeRemote(open, { command: 'true', guest: GUEST })),
        [IN_PROCESS.fresh]: async () => {
          const peer = await connectControl(controlSocket);
          try {
            check(await executeRemote(peer, { command: 'true', guest: GUEST }));
          } finally {
            await peer.close();
          }
        },
      },
      { warmup: 5, count, rounds: 5 },
    );
    load.sample();
    return { rows: Object.fromEntries(Object.entries(samples).map(([name, s]) => [name, summarizeLatencies(s.times)])), load: load.describe() };
  } finally {
    await open.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  const machine = describeMachine();
  console.log(`negotiator CLI benchmark: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, ${machine.kernel}, 1-min load ${machine.loadavgStart}`);
  const { NODE_OPTIONS: _ignored, ...baseEnv } = process.env;
  const { NODE_EXTRA_CA_CERTS: certsFile, ...envNoCerts } = baseEnv;
  console.log(`NODE_EXTRA_CA_CERTS=${certsFile ?? '(not set: both variants are the same)'}`);
  console.log(`guest \`${GUEST}\`: simulated (its own process), command directory with true -> /bin/true; wall = spawn to exit with output read\n`);

  const workspace = createWorkspace('negotiator-bench-cli-');
  const controlSocket = path.join(workspace.dir, 'host.sock');
  const fleet = await startGuestFleet(path.join(workspace.dir, 'guests'), workspace.commandsDir, [GUEST]);
  const results: ContenderResult[] = [];
  let phaseColumns: Array<{ header: string; phases: PhaseSample }> = [];
  let importCosts: Awaited<ReturnType<typeof measureImportCosts>> = [];
  let inProcessRows: Record<string, LatencySummary> = {};
  try {
    const daemon = await startHostDaemon({ controlSocket, commandsDir: workspace.commandsDir, guests: [fleet.spec(GUEST)] });
    try {
      const control = await connectControl(controlSocket);
      await waitForConnectedGuests(control, 1, 30_000);
      await control.close();
      const bundled = options.bundle ? await bundleHostCli(path.join(workspace.dir, 'bundle')) : undefined;

      // The launcher finds `node` on PATH: put this node first, so that every row runs the same node.
      const envOf = (certs: 'set' | 'unset'): NodeJS.ProcessEnv => {
        const env = certs === 'set' ? baseEnv : envNoCerts;
        return { ...env, PATH: [path.dirname(process.execPath), env.PATH].filter(Boolean).join(path.delimiter) };
      };
      const node = (args: readonly string[], certs: 'set' | 'unset'): RunSpec => ({ file: process.execPath, args, env: envOf(certs) });
      const command = installHostCommand(path.join(workspace.dir, 'prefix'));
      const installed = (args: readonly string[], certs: 'set' | 'unset'): RunSpec => ({ file: command, args, env: envOf(certs) });
      const viaDaemon = ['--control-socket', controlSocket, '--execute', 'true', GUEST];
      const noDaemon = ['--control-socket', path.join(workspace.dir, 'no-daemon.sock'), '--no-libvirt', '--guest', fleet.spec(GUEST), '--execute', 'true', GUEST];
      const contenders: Contender[] = (['set', 'unset'] as const).flatMap((certs) => [
        { what: 'node -e 0', certs, spec: node(['-e', '0'], certs), silent: true },
        { what: 'negotiator-host --version', certs, spec: installed(['--version'], certs), silent: false, throughLauncher: true },
        { what: '--execute true, via the daemon', certs, spec: installed(viaDaemon, certs), silent: true, targeted: true, throughLauncher: true },
        { what: '--execute true, no daemon (--guest)', certs, spec: installed(noDaemon, certs), silent: true, targeted: true, throughLauncher: true },
        { what: '--execute true, via the daemon, node dist/host/cli.js', certs, spec: node([HOST_CLI, ...viaDaemon], certs), silent: true },
        ...(bundled ? [{ what: '--execute true, via the daemon, npm run bundle', certs, spec: node([bundled, ...viaDaemon], certs), silent: true }] : []),
        ...(options.executable ? [{ what: EXECUTABLE_ROW, certs, spec: { file: path.resolve(options.executable), args: viaDaemon, env: envOf(certs) }, silent: true }] : []),
      ]);

      // Timed runs, interleaved (one of each contender per round, order rotated).
      const cpu = new Map<string, number[]>(contenders.map((c) => [contenderKey(c), []]));
      const loads = new Map<string, LoadSampler>(contenders.map((c) => [contenderKey(c), new LoadSampler()]));
      const timed = await sampleLatencies(
        Object.fromEntries(
          contenders.map((c) => [
            contenderKey(c),
            async () => {
              loads.get(contenderKey(c))!.sample();
              cpu.get(contenderKey(c))!.push(await runChecked(c));
            },
          ]),
        ),
        { warmup: 2, count: options.runs, rounds: options.runs },
      );
      // Peak RSS: separate runs under /usr/bin/time (its fork and exec would distort the wall times).
      const rss = new Map<string, number[]>(contenders.map((c) => [contenderKey(c), []]));
      await sampleLatencies(
        Object.fromEntries(contenders.map((c) => [contenderKey(c), async () => void rss.get(contenderKey(c))!.push(await measurePeakRssKiB(c.spec))])),
        { warmup: 0, count: options.rssRuns, rounds: options.rssRuns },
      );
      for (const c of contenders) {
        const key = contenderKey(c);
        cpu.get(key)!.splice(0, 2); // the warm-up runs
        results.push({
          what: c.what,
          certs: c.certs,
          nodeCerts: c.throughLauncher ? 'unset' : c.certs,
          targeted: c.targeted === true,
          wall: summarizeLatencies(timed[key]!.times),
          cpuMsMedian: medianOf(cpu.get(key)!),
          peakRssMiBMedian: medianOf(rss.get(key)!) / 1024,
          load: loads.get(key)!.describe(),
        });
      }
      // The CLI's own work without node's start-up and imports: the same library calls in this process.
      const inProcess = await measureInProcess(controlSocket, Math.max(options.runs, 100));
      inProcessRows = inProcess.rows;
      const floor = Object.fromEntries(results.filter((r) => r.what === 'node -e 0').map((r) => [r.certs, r.wall.medianUs / 1000]));
      console.log(formatResults(results, floor));
      console.log('("over node -e 0": against node -e 0 with NODE_EXTRA_CA_CERTS as the row\'s node sees it; the installed command\'s launcher unsets it)\n');
      console.log(`the same work in this process (no node start-up, no imports; 1-min load ${inProcess.load}):`);
      console.log(
        formatTable(
          ['call', 'median ms', 'p99 ms', 'n'],
          Object.entries(inProcess.rows).map(([name, s]) => [name, fixed(s.medianUs / 1000, 2), fixed(s.p99Us / 1000, 2), String(s.count)]),
        ) + '\n',
      );

      // Where the time goes.
      const find = (what: string, certs: 'set' | 'unset'): Contender => contenders.find((c) => c.what === what && c.certs === certs)!;
      const profiled: Array<{ header: string; contender: Contender }> = [
        { header: 'node -e 0, certs', contender: find('node -e 0', 'set') },
        { header: 'node -e 0', contender: find('node -e 0', 'unset') },
        { header: '--version, certs', contender: find('negotiator-host --version', 'set') },
        { header: 'daemon, certs', contender: find('--execute true, via the daemon', 'set') },
        { header: 'no daemon, certs', contender: find('--execute true, no daemon (--guest)', 'set') },
        { header: 'node cli.js, daemon, certs', contender: find('--execute true, via the daemon, node dist/host/cli.js', 'set') },
        { header: 'node cli.js, daemon', contender: find('--execute true, via the daemon, node dist/host/cli.js', 'unset') },
        ...contenders.filter((c) => c.what.includes('npm run bundle') && c.certs === 'unset').map((contender) => ({ header: 'bundle, daemon', contender })),
      ];
      const phaseLoad = new LoadSampler();
      const samples = new Map<string, PhaseSample[]>(profiled.map((p) => [p.header, []]));
      for (let round = 0; round < options.phaseRuns; round++) {
        phaseLoad.sample();
        for (const p of profiled) samples.get(p.header)!.push(await runWithPhases(p.contender.spec));
      }
      phaseColumns = profiled.map((p) => ({ header: p.header, phases: summarizePhases(samples.get(p.header)!) }));
      console.log(`start-up phases (${options.phaseRuns} runs each, interleaved; "certs" = NODE_EXTRA_CA_CERTS set; 1-min load ${phaseLoad.describe()}):`);
      console.log(formatPhases(phaseColumns) + '\n');

      const importLoad = new LoadSampler();
      importLoad.sample();
      importCosts = await measureImportCosts(HOST_CLI_IMPORTS, options.importRuns, envNoCerts);
      importLoad.sample();
      console.log(`module groups of negotiator-host, each imported after the ones above it (median of ${options.importRuns} fresh processes; 1-min load ${importLoad.describe()}):`);
      console.log(
        formatTable(
          ['module group', 'ms', 'ES modules'],
          importCosts.map((c) => [c.label, fixed(c.medianMs), Number.isFinite(c.modules) ? String(c.modules) : '?']),
        ) + '\n',
      );
    } finally {
      await daemon.stop();
    }
  } finally {
    await fleet.stop();
    workspace.remove();
  }

  const verdicts: TargetVerdict[] = results
    .filter((r) => r.targeted)
    .map((r) => ({
      name: `${r.what}, NODE_EXTRA_CA_CERTS ${r.certs}`,
      target: `< ${TARGET_MS} ms`,
      measured: `median ${fixed(r.wall.medianUs / 1000)} ms (load ${r.load})`,
      met: r.wall.medianUs / 1000 < TARGET_MS,
    }))
    .concat(executableVerdicts(results));
  console.log(formatVerdicts(verdicts) + '\n');
  const loadavgEnd = loadavg1();
  writeResults(options.json, loadavgEnd, { machine: { ...machine, loadavgEnd }, nodeExtraCaCerts: certsFile ?? null, options, results, inProcess: inProcessRows, phases: phaseColumns, importCosts, verdicts });
  return 0;
}

runBenchmark(main);
