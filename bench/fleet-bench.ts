// `npm run bench:fleet`: one real host daemon process (`negotiator-host --daemon`, static --guest specs)
// with hundreds of simulated guests connected (bench/fleet-guests.ts, in a few processes of their own):
// its resident memory, its idle CPU, how soon a guest whose sockets appear can be used, and a burst of
// concurrent executes through its control socket (executeRemote over one control-socket RpcPeer).
import { parseCount } from '../common/cli/options.js';
import { Command, Option } from 'commander';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../common/wire/errors.js';
import { executeRemote } from '../common/execute/client.js';
import { METHODS } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import { startGuestFleet, type GuestFleet } from './guest-fleet.js';
import { connectControl, startHostDaemon, waitForConnectedGuests, type DaemonMemoryUsage, type HostDaemonProcess } from './host-daemon.js';
import { LoadSampler, loadavg1, readContextSwitches, readProcessCpuMs, readProcessMemory, type ProcessMemory } from './proc-stats.js';
import { describeMachine, fixed, formatTable, formatVerdicts, runBenchmark, writeResults, type TargetVerdict } from './report.js';
import { medianOf, summarizeLatencies, type LatencySummary } from './stats.js';
import { createWorkspace } from './workspace.js';

const DEFAULT_JSON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/results/fleet.json');
/** 150 MB (the target's unit) in MiB, as /proc reports memory. */
const RSS_TARGET_MIB = 150e6 / 1024 / 1024;
const IDLE_TARGET_PERCENT = 1;
const NEW_GUEST_TARGET_MS = 1000;
const SETTLE_MS = 5000;

interface FleetBenchOptions {
  guests: number;
  fleetProcesses: number;
  idleSeconds: number;
  newGuests: number;
  newDirGuests: number;
  executes: number;
  bursts: number;
  daemonNodeArgs: string[];
  json: string;
}

function parseOptions(argv: readonly string[]): Readonly<FleetBenchOptions> {
  const opts = new Command()
    .name('bench:fleet')
    .description('one host daemon with many simulated guests: memory, idle CPU, new-guest latency, concurrent executes')
    .addOption(new Option('--guests <n>', 'simulated guests connected').default(500).argParser(parseCount(false)))
    .addOption(new Option('--fleet-processes <n>', 'processes the simulated guests are spread over').default(2).argParser(parseCount(false)))
    .addOption(new Option('--idle-seconds <n>', 'length of the idle CPU window').default(30).argParser(parseCount(false)))
    .addOption(new Option('--new-guests <n>', 'guests started one at a time in directories that exist').default(10).argParser(parseCount(false)))
    .addOption(new Option('--new-dir-guests <n>', 'guests started one at a time with a new directory (each may take up to --rescan, 30 s)').default(4).argParser(parseCount(false)))
    .addOption(new Option('--executes <n>', 'concurrent executes per burst').default(1000).argParser(parseCount(false)))
    .addOption(new Option('--bursts <n>', 'bursts of concurrent executes').default(3).argParser(parseCount(false)))
    .addOption(
      new Option('--daemon-node-args <args>', 'node options for both host daemons, space-separated (e.g. "--max-semi-space-size=1")')
        .default([])
        .argParser((v) => v.split(' ').filter(Boolean)),
    )
    .addOption(new Option('--json <file>', 'where the machine-readable results go').default(DEFAULT_JSON))
    .parse([...argv])
    .opts<FleetBenchOptions>();
  return Object.freeze(opts);
}

const names = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(3, '0')}`);

/** How a new guest appears: in a directory the daemon already watches, or together with its directory. */
const NEW_GUEST_CASES = {
  existingDir: 'sockets created in an existing directory',
  newDir: 'directory and sockets created together',
} as const;
type NewGuestCase = keyof typeof NEW_GUEST_CASES;

interface NewGuestResult {
  latency: LatencySummary;
  /** Failed polls before the first success, median. */
  medianPolls: number;
  /** Distinct errors the polls saw (what the daemon said while it did not know the guest yet). */
  errors: string[];
  load: string;
}

// Start each guest in turn and poll `execute true` on it through the daemon until it succeeds; the time
// from its sockets listening to the success.
async function measureNewGuests(control: RpcPeer, fleet: GuestFleet, guests: readonly string[]): Promise<NewGuestResult> {
  const load = new LoadSampler();
  const latencies: number[] = [];
  const polls: number[] = [];
  const errors = new Set<string>();
  for (const name of guests) {
    load.sample();
    const appearedAt = await fleet.add(name);
    const deadline = performance.now() + 60_000;
    for (let failed = 0; ; failed++) {
      try {
        const result = await executeRemote(control, { command: 'true', guest: name, timeoutMs: 10_000 });
        if (result.exitCode === 0) {
          latencies.push(performance.timeOrigin + performance.now() - appearedAt);
          polls.push(failed);
          break;
        }
        errors.add(`exit code ${result.exitCode}`);
      } catch (error) {
        errors.add(errorMessage(error).replaceAll(name, 'NAME').replace(/known guests: .*/, 'known guests: ...'));
      }
      if (performance.now() > deadline) throw new Error(`guest ${name} was not usable within 60 s; errors: ${[...errors].join('; ')}`);
      await sleep(5);
    }
    await sleep(200);
  }
  return { latency: summarizeLatencies(latencies), medianPolls: medianOf(polls), errors: [...errors], load: load.describe() };
}

/** What a burst asks of every guest: `execute true`, or `commands.list` (the relay alone, nothing spawned). */
const BURST_KINDS = {
  execute: 'execute true',
  list: 'commands.list (relay only, no spawn)',
} as const;
type BurstKind = keyof typeof BURST_KINDS;

interface BurstResult {
  kind: BurstKind;
  executes: number;
  ok: number;
  errors: number;
  /** Distinct error messages, with counts. */
  errorKinds: Record<string, number>;
  wallMs: number;
  perSecond: number;
  latency: LatencySummary;
  daemonCpuMsPerExecute: number;
  fleetCpuMsPerExecute: number;
  load: number;
}

// `count` requests at once over one control connection, spread round-robin over `guests`.
async function runBurst(control: RpcPeer, daemon: HostDaemonProcess, fleet: GuestFleet, guests: readonly string[], count: number, kind: BurstKind): Promise<BurstResult> {
  const load = loadavg1();
  const daemonCpu = readProcessCpuMs(daemon.pid);
  const fleetCpu = fleet.readCpuMs();
  const latencies: number[] = [];
  const errorKinds: Record<string, number> = {};
  const started = performance.now();
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const start = performance.now();
      const guest = guests[i % guests.length]!;
      try {
        if (kind === 'execute') {
          const result = await executeRemote(control, { command: 'true', guest, timeoutMs: 120_000 });
          if (result.exitCode !== 0) throw new Error(`exit code ${result.exitCode}`);
        } else {
          await control.request(METHODS.listCommands, { guest }, { timeoutMs: 120_000 });
        }
        latencies.push(performance.now() - start);
      } catch (error) {
        const kind = errorMessage(error).slice(0, 160);
        errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
      }
    }),
  );
  const wallMs = performance.now() - started;
  const errors = count - latencies.length;
  return {
    kind,
    executes: count,
    ok: latencies.length,
    errors,
    errorKinds,
    wallMs,
    perSecond: (latencies.length / wallMs) * 1000,
    latency: summarizeLatencies(latencies),
    daemonCpuMsPerExecute: (readProcessCpuMs(daemon.pid) - daemonCpu) / count,
    fleetCpuMsPerExecute: (fleet.readCpuMs() - fleetCpu) / count,
    load,
  };
}

interface IdleResult {
  seconds: number;
  daemonPercent: number;
  daemonWakeupsPerSecond: number;
  fleetPercent: number;
  load: string;
}

// CPU of the daemon (and of the fleet) over a window in which nothing is asked of it.
async function measureIdle(daemon: HostDaemonProcess, fleet: GuestFleet, seconds: number): Promise<IdleResult> {
  const load = new LoadSampler();
  load.sample();
  const cpu = readProcessCpuMs(daemon.pid);
  const switches = readContextSwitches(daemon.pid).voluntary;
  const fleetCpu = fleet.readCpuMs();
  const started = performance.now();
  await sleep(seconds * 1000);
  const elapsedMs = performance.now() - started;
  load.sample();
  return {
    seconds,
    daemonPercent: ((readProcessCpuMs(daemon.pid) - cpu) / elapsedMs) * 100,
    daemonWakeupsPerSecond: ((readContextSwitches(daemon.pid).voluntary - switches) / elapsedMs) * 1000,
    fleetPercent: ((fleet.readCpuMs() - fleetCpu) / elapsedMs) * 100,
    load: load.describe(),
  };
}

interface MemoryRow {
  when: string;
  memory: ProcessMemory;
  usage: DaemonMemoryUsage;
  load: number;
}

function formatMemory(rows: readonly MemoryRow[], guests: number): string {
  const table = formatTable(
    ['host daemon', 'VmRSS MiB', 'VmRSS MB', 'VmHWM MiB', 'heap used', 'heap total', 'external', 'array buffers', '1-min load'],
    rows.map((r) => [
      r.when,
      fixed(r.memory.rssMiB),
      fixed((r.memory.rssMiB * 1024 * 1024) / 1e6),
      fixed(r.memory.peakMiB),
      fixed(r.usage.heapUsed),
      fixed(r.usage.heapTotal),
      fixed(r.usage.external),
      fixed(r.usage.arrayBuffers),
      String(r.load),
    ]),
  );
  const [empty, full] = rows;
  if (!empty || !full) return table;
  const perGuest = (a: number, b: number): string => fixed(((b - a) * 1024) / guests, 0);
  return `${table}\nper guest (connected minus no guests, / ${guests}): VmRSS ${perGuest(empty.memory.rssMiB, full.memory.rssMiB)} KiB, heap used ${perGuest(empty.usage.heapUsed, full.usage.heapUsed)} KiB, heap total ${perGuest(empty.usage.heapTotal, full.usage.heapTotal)} KiB (memoryUsage in MiB, through a SIGUSR2 preload)`;
}

async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  const machine = describeMachine();
  console.log(`negotiator fleet benchmark: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, ${machine.kernel}, 1-min load ${machine.loadavgStart}`);
  console.log(
    `host daemon: a real negotiator-host --daemon process (default options, log level info to a pipe${options.daemonNodeArgs.length > 0 ? `; node ${options.daemonNodeArgs.join(' ')}` : ''}); ${options.guests} simulated guests in ${options.fleetProcesses} other processes\n`,
  );
  const workspace = createWorkspace('negotiator-bench-fleet-');
  const root = path.join(workspace.dir, 'guests');
  const base = names('g', options.guests);
  const newGuests: Record<NewGuestCase, string[]> = { existingDir: names('a', options.newGuests), newDir: names('b', options.newDirGuests) };
  const memory: MemoryRow[] = [];
  const timings: Record<string, number> = {};
  let idle: IdleResult | undefined;
  const newGuestResults: Partial<Record<NewGuestCase, NewGuestResult>> = {};
  const bursts: BurstResult[] = [];
  try {
    // The same daemon with no guests: what the guests add.
    const empty = await startHostDaemon({ controlSocket: path.join(workspace.dir, 'empty.sock'), commandsDir: workspace.commandsDir, guests: [], nodeArgs: options.daemonNodeArgs });
    try {
      await sleep(SETTLE_MS);
      memory.push({ when: 'no guests, 5 s after ready', memory: readProcessMemory(empty.pid), usage: await empty.readMemoryUsage(), load: loadavg1() });
    } finally {
      await empty.stop();
    }

    mkdirSync(root, { recursive: true });
    for (const name of newGuests.existingDir) mkdirSync(path.join(root, name));
    const fleetStarted = performance.now();
    const fleet = await startGuestFleet(root, workspace.commandsDir, base, options.fleetProcesses);
    timings.fleetStartMs = performance.now() - fleetStarted;
    try {
      const daemon = await startHostDaemon({
        controlSocket: path.join(workspace.dir, 'host.sock'),
        commandsDir: workspace.commandsDir,
        guests: [...base, ...newGuests.existingDir, ...newGuests.newDir].map((name) => fleet.spec(name)),
        nodeArgs: options.daemonNodeArgs,
        startTimeoutMs: 180_000,
      });
      timings.daemonReadyMs = daemon.startMs;
      let control: RpcPeer | undefined;
      try {
        control = await connectControl(daemon.controlSocket, 180_000);
        timings.allConnectedAfterReadyMs = await waitForConnectedGuests(control, options.guests, 180_000);
        console.log(
          `daemon ready ${fixed(daemon.startMs / 1000, 2)} s after spawn; all ${options.guests} guests connected ${fixed(timings.allConnectedAfterReadyMs / 1000, 2)} s later (load ${loadavg1()})`,
        );
        await sleep(SETTLE_MS);
        memory.push({ when: `${options.guests} guests connected, 5 s later`, memory: readProcessMemory(daemon.pid), usage: await daemon.readMemoryUsage(), load: loadavg1() });

        idle = await measureIdle(daemon, fleet, options.idleSeconds);
        console.log(
          `idle ${options.idleSeconds} s: daemon ${fixed(idle.daemonPercent, 2)}% of a core, ${fixed(idle.daemonWakeupsPerSecond)} wake-ups/s; fleet processes ${fixed(idle.fleetPercent, 2)}% (load ${idle.load})\n`,
        );

        for (const kind of Object.keys(NEW_GUEST_CASES) as NewGuestCase[]) newGuestResults[kind] = await measureNewGuests(control, fleet, newGuests[kind]);
        console.log('a new guest: from both of its sockets listening to `execute true` on it succeeding through the daemon (polled every 5 ms):');
        console.log(
          formatTable(
            ['new guest', 'median ms', 'p99 ms', 'min..max ms', 'polls', 'n', '1-min load'],
            (Object.keys(NEW_GUEST_CASES) as NewGuestCase[]).map((kind) => {
              const r = newGuestResults[kind]!;
              return [NEW_GUEST_CASES[kind], fixed(r.latency.medianUs / 1000), fixed(r.latency.p99Us / 1000), `${fixed(r.latency.minUs / 1000)}..${fixed(r.latency.maxUs / 1000)}`, String(r.medianPolls), String(r.latency.count), r.load];
            }),
          ),
        );
        for (const kind of Object.keys(NEW_GUEST_CASES) as NewGuestCase[]) {
          if (newGuestResults[kind]!.errors.length > 0) console.log(`  polls meanwhile (${NEW_GUEST_CASES[kind]}): ${newGuestResults[kind]!.errors.join(' | ')}`);
        }
        console.log('');

        for (let i = 0; i < options.bursts; i++) {
          await sleep(3000);
          bursts.push(await runBurst(control, daemon, fleet, base, options.executes, 'execute'));
        }
        await sleep(3000);
        bursts.push(await runBurst(control, daemon, fleet, base, options.executes, 'list'));
        console.log(`${options.executes} concurrent requests through the daemon's control socket (one connection, executeRemote), ${Math.round(options.executes / options.guests)} per guest:`);
        console.log(
          formatTable(
            ['burst', 'request', 'per second', 'ok', 'errors', 'wall ms', 'median ms', 'p99 ms', 'daemon CPU ms/req', 'fleet CPU ms/req', '1-min load'],
            bursts.map((b, i) => [String(i + 1), BURST_KINDS[b.kind], fixed(b.perSecond), String(b.ok), String(b.errors), fixed(b.wallMs, 0), fixed(b.latency.medianUs / 1000), fixed(b.latency.p99Us / 1000), fixed(b.daemonCpuMsPerExecute, 2), fixed(b.fleetCpuMsPerExecute, 2), String(b.load)]),
          ),
        );
        for (const [i, b] of bursts.entries()) for (const [kind, n] of Object.entries(b.errorKinds)) console.log(`  burst ${i + 1}: ${n} x ${kind}`);
        console.log('');
        memory.push({ when: `after the bursts`, memory: readProcessMemory(daemon.pid), usage: await daemon.readMemoryUsage(), load: loadavg1() });
      } finally {
        await control?.close();
        await daemon.stop();
      }
    } finally {
      await fleet.stop();
    }
  } finally {
    workspace.remove();
  }

  console.log(formatMemory(memory, options.guests) + '\n');
  const connected = memory.find((m) => m.when.includes('guests connected'));
  const verdicts: TargetVerdict[] = [];
  if (connected) {
    verdicts.push({
      name: `daemon VmRSS, ${options.guests} guests connected`,
      target: '< 150 MB',
      measured: `${fixed(connected.memory.rssMiB)} MiB = ${fixed((connected.memory.rssMiB * 1024 * 1024) / 1e6)} MB (load ${connected.load})`,
      met: connected.memory.rssMiB < RSS_TARGET_MIB,
    });
  }
  if (idle) {
    verdicts.push({
      name: `daemon idle CPU over ${idle.seconds} s`,
      target: `< ${IDLE_TARGET_PERCENT}% of a core`,
      measured: `${fixed(idle.daemonPercent, 2)}% (load ${idle.load})`,
      met: idle.daemonPercent < IDLE_TARGET_PERCENT,
    });
  }
  for (const kind of Object.keys(NEW_GUEST_CASES) as NewGuestCase[]) {
    const r = newGuestResults[kind];
    if (!r) continue;
    verdicts.push({
      name: `new guest usable (${NEW_GUEST_CASES[kind]}), p99`,
      target: `< ${NEW_GUEST_TARGET_MS} ms`,
      measured: `p99 ${fixed(r.latency.p99Us / 1000)} ms, median ${fixed(r.latency.medianUs / 1000)} ms (load ${r.load})`,
      met: r.latency.p99Us / 1000 < NEW_GUEST_TARGET_MS,
    });
  }
  if (verdicts.length > 0) console.log(formatVerdicts(verdicts) + '\n');
  const loadavgEnd = loadavg1();
  writeResults(options.json, loadavgEnd, { machine: { ...machine, loadavgEnd }, options, timings, memory, idle, newGuests: newGuestResults, bursts, verdicts });
  return 0;
}

runBenchmark(main);
