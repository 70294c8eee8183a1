// `npm run bench:vm`: real virtio-serial through a booted guest (QEMU under TCG, ../shared/vm). Boot 1: a
// bare node peer on the host-to-guest port (bench/vm-port-peer.ts: echo, raw copies both ways). Boot 2: the
// negotiator guest daemon on the same port, driven by an RpcPeer on QEMU's socket (ping, execute true,
// `wc -c` reading N MiB of stdin, `head -c N /dev/zero` writing N MiB). One boot per contender set.
import { parseCount } from '../common/cli/options.js';
import { Command, Option } from 'commander';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { executeRemote } from '../common/execute/client.js';
import { METHODS } from '../common/wire/protocol.js';
import { RpcPeer } from '../common/wire/rpc-peer.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import { benchHostInfo } from './bench-agent.js';
import { LoadSampler, loadavg1 } from './proc-stats.js';
import { formatProfileTop, readCpuProfile } from './profile-top.js';
import { describeMachine, fixed, formatTable, runBenchmark, writeResults } from './report.js';
import { sampleLatencies, sampleTransfers } from './sampling.js';
import { MIB, summarizeLatencies, summarizeTransfers, type LatencySummary, type ThroughputSummary } from './stats.js';
import { openBareVmClient } from './vm-bare-client.js';
import { REPO, bootBenchGuest, buildGuestImage, vmSkipReason, type BenchGuest } from './vm-guest.js';

const DEFAULT_JSON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/results/vm.json');
const BOOT_TIMEOUT_MS = 240_000;
/** Transfers through an emulated guest are slow; the default 10 s deadline would cut the large ones. */
const TRANSFER_TIMEOUT_MS = 300_000;

// The guest daemon with a command directory of busybox applets (links named for the applet: busybox runs
// the one its argv[0] names) made in the guest's initramfs. Profiled (--guest-cpu-prof): under node
// --cpu-prof, and once it stopped (SIGTERM through the `kill` command) its profile is copied to the share.
const PROFILE_SHARE_DIR = 'dist/bench-vm-profile';
const PROFILE_SAVED = 'bench-vm-profile-saved';
function daemonCommand(profile: boolean): string {
  const setup = 'mkdir -p /tmp/bench-commands /run/negotiator && for c in true wc head cat kill; do ln -sf /bin/busybox /tmp/bench-commands/$c; done && ';
  const daemon = 'dist/guest/cli.js --daemon --no-builtin-commands --commands-dir /tmp/bench-commands';
  if (!profile) return `${setup}exec node ${daemon}`;
  return `${setup}node --cpu-prof --cpu-prof-dir=/tmp/bench-prof ${daemon}; mkdir -p ${PROFILE_SHARE_DIR} && cp /tmp/bench-prof/*.cpuprofile ${PROFILE_SHARE_DIR}/ && echo ${PROFILE_SAVED}`;
}
const BARE_COMMAND = 'exec node dist/bench/vm-port-peer.js';

interface VmBenchOptions {
  pings: number;
  execs: number;
  sizes: number[];
  reps: number;
  memory: number;
  /** Profile the guest daemon into this host directory (figures then carry the profiler's cost; no bare boot). */
  guestCpuProf: string | undefined;
  json: string;
  /** Offer binary frames to the guest daemon (false: base64 JSON lines, for A/B runs). */
  frames: boolean;
}

function parseOptions(argv: readonly string[]): Readonly<VmBenchOptions> {
  const opts = new Command()
    .name('bench:vm')
    .description('ping and throughput through real virtio-serial ports of a booted guest: the negotiator guest daemon vs a bare node peer')
    .addOption(new Option('--pings <n>', 'measured round trips per contender').default(1000).argParser(parseCount(false)))
    .addOption(new Option('--execs <n>', 'measured `execute true` calls').default(50).argParser(parseCount(false)))
    .addOption(new Option('--sizes <mib>', 'transfer sizes in MiB, comma-separated').default([1, 16]).argParser((v) => v.split(',').map(parseCount(false))))
    .addOption(new Option('--reps <n>', 'transfers per size, direction and contender').default(5).argParser(parseCount(false)))
    .addOption(new Option('--memory <mb>', 'guest memory').default(1024).argParser(parseCount(false)))
    .option('--no-frames', 'do not offer binary frames: bulk bytes go as base64 JSON lines (A/B)')
    .addOption(new Option('--guest-cpu-prof <dir>', 'run the guest daemon under node --cpu-prof and put its profile here (skips the bare boot)'))
    .addOption(new Option('--json <file>', 'where the machine-readable results go').default(DEFAULT_JSON))
    .parse([...argv])
    .opts<VmBenchOptions>();
  return Object.freeze(opts);
}

const DIRECTIONS = { h2g: 'host -> guest', g2h: 'guest -> host', rtt: 'host -> guest -> host' } as const;
type Direction = keyof typeof DIRECTIONS;

/** What one boot measured. */
interface BootResult {
  contender: string;
  bootToReadyMs: number;
  latency: Record<string, LatencySummary>;
  transfers: Array<{ mib: number; direction: Direction; result: ThroughputSummary }>;
  load: string;
}

const ROWS = {
  echo: 'bare NDJSON echo (node peer on the port)',
  ping: 'rpc ping (negotiator-guest --daemon)',
  execute: 'rpc execute true (busybox true)',
  sink: 'bare copy',
  stdin: 'execute wc -c, N MiB on stdin',
  source: 'bare copy',
  stdout: 'execute head -c N /dev/zero',
  roundTrip: 'execute cat, N MiB in and out',
  slowerCopy: 'bare copy (the slower direction)',
} as const;

let current: BenchGuest | undefined;

async function boot(work: string, name: string, command: string, ready: RegExp, memoryMb: number): Promise<{ guest: BenchGuest; bootToReadyMs: number }> {
  const started = performance.now();
  current = await bootBenchGuest({ sockDir: path.join(work, name), command, memoryMb });
  await current.waitForConsole(ready, BOOT_TIMEOUT_MS);
  return { guest: current, bootToReadyMs: performance.now() - started };
}

async function measureBare(work: string, options: VmBenchOptions): Promise<BootResult> {
  const load = new LoadSampler();
  load.sample();
  const { guest, bootToReadyMs } = await boot(work, 'bare', BARE_COMMAND, /vm-port-peer ready on \S+/, options.memory);
  try {
    const client = await openBareVmClient(guest.hostToGuestSocket);
    try {
      const qemuCpu = async (): Promise<number> => guest.readQemuCpuMs();
      load.sample();
      const pings = await sampleLatencies({ echo: client.echo }, { warmup: 100, count: options.pings, rounds: 5, readServerCpuMs: qemuCpu });
      load.sample();
      for (let i = 0; i < 2; i++) (await client.sink(MIB), await client.source(MIB));
      const transfers: BootResult['transfers'] = [];
      for (const mib of options.sizes) {
        const samples = await sampleTransfers({ h2g: client.sink, g2h: client.source }, { bytes: mib * MIB, reps: options.reps, readServerCpuMs: qemuCpu });
        for (const direction of Object.keys(samples) as Direction[]) transfers.push({ mib, direction, result: summarizeTransfers(mib * MIB, samples[direction]!) });
        load.sample();
      }
      return { contender: 'bare', bootToReadyMs, latency: { [ROWS.echo]: summarizeLatencies(pings.echo!.times, pings.echo!.cpuMs) }, transfers, load: load.describe() };
    } finally {
      client.close();
    }
  } finally {
    await guest.kill();
  }
}

async function measureDaemon(work: string, options: VmBenchOptions): Promise<BootResult> {
  const load = new LoadSampler();
  load.sample();
  const profile = options.guestCpuProf !== undefined;
  const { guest, bootToReadyMs } = await boot(work, 'daemon', daemonCommand(profile), /negotiator-guest \S+ ready: control socket/, options.memory);
  try {
    const peer = new RpcPeer(await connectChannel(guest.hostToGuestSocket, 5000), { localInfo: benchHostInfo(options.frames), label: 'bench guest', requestTimeoutMs: 60_000 });
    peer.start();
    try {
      await peer.waitForReady(60_000);
      const qemuCpu = async (): Promise<number> => guest.readQemuCpuMs();
      load.sample();
      const pings = await sampleLatencies({ ping: async () => void (await peer.request(METHODS.ping, undefined)) }, { warmup: 100, count: options.pings, rounds: 5, readServerCpuMs: qemuCpu });
      load.sample();
      const executeTrue = async (): Promise<void> => {
        const result = await executeRemote(peer, { command: 'true', timeoutMs: 60_000 });
        if (result.exitCode !== 0) throw new Error(`execute true in the guest: exit ${result.exitCode}`);
      };
      const executes = await sampleLatencies({ execute: executeTrue }, { warmup: 5, count: options.execs, rounds: 5, readServerCpuMs: qemuCpu });
      load.sample();
      const stdin = async (bytes: number): Promise<void> => {
        let output = '';
        const result = await executeRemote(peer, { command: 'wc', args: ['-c'], stdin: Buffer.alloc(bytes), timeoutMs: TRANSFER_TIMEOUT_MS, stdout: (chunk) => void (output += chunk.toString()) });
        if (result.exitCode !== 0 || output.trim() !== String(bytes)) throw new Error(`execute wc -c: exit ${result.exitCode}, said ${JSON.stringify(output)}, expected ${bytes}`);
      };
      const stdout = async (bytes: number): Promise<void> => {
        let received = 0;
        const result = await executeRemote(peer, { command: 'head', args: ['-c', String(bytes), '/dev/zero'], timeoutMs: TRANSFER_TIMEOUT_MS, stdout: (chunk) => void (received += chunk.length) });
        if (result.exitCode !== 0 || received !== bytes) throw new Error(`execute head: exit ${result.exitCode}, ${received} bytes received, expected ${bytes}`);
      };
      // The issue-12 figure: both directions at once through one command, N MiB each way.
      const roundTrip = async (bytes: number): Promise<void> => {
        let received = 0;
        const result = await executeRemote(peer, { command: 'cat', stdin: Buffer.alloc(bytes, 0x61), timeoutMs: TRANSFER_TIMEOUT_MS, stdout: (chunk) => void (received += chunk.length) });
        if (result.exitCode !== 0 || received !== bytes) throw new Error(`execute cat: exit ${result.exitCode}, ${received} bytes back, expected ${bytes}`);
      };
      for (let i = 0; i < 2; i++) (await stdin(MIB), await stdout(MIB), await roundTrip(MIB));
      const transfers: BootResult['transfers'] = [];
      for (const mib of options.sizes) {
        const samples = await sampleTransfers({ h2g: stdin, g2h: stdout, rtt: roundTrip }, { bytes: mib * MIB, reps: options.reps, readServerCpuMs: qemuCpu });
        for (const direction of Object.keys(samples) as Direction[]) transfers.push({ mib, direction, result: summarizeTransfers(mib * MIB, samples[direction]!) });
        load.sample();
      }
      if (options.guestCpuProf) await collectGuestProfile(peer, guest, options.guestCpuProf);
      return {
        contender: profile ? 'daemon (profiled)' : 'daemon',
        bootToReadyMs,
        latency: {
          [ROWS.ping]: summarizeLatencies(pings.ping!.times, pings.ping!.cpuMs),
          [ROWS.execute]: summarizeLatencies(executes.execute!.times, executes.execute!.cpuMs),
        },
        transfers,
        load: load.describe(),
      };
    } finally {
      await peer.close();
    }
  } finally {
    await guest.kill();
  }
}

// Stop the profiled guest daemon (SIGTERM through its own `kill` command: it exits cleanly and node writes
// the profile), wait for the guest to copy it to the share, move it to `dir` and print its top frames.
async function collectGuestProfile(peer: RpcPeer, guest: BenchGuest, dir: string): Promise<void> {
  const pid = peer.peerInfo?.pid;
  if (pid === undefined) throw new Error('the guest daemon did not say its pid');
  // The answer may be lost as the daemon closes its channels; the console says whether the profile came.
  await executeRemote(peer, { command: 'kill', args: ['-TERM', String(pid)], timeoutMs: 60_000 }).catch(() => undefined);
  await guest.waitForConsole(new RegExp(PROFILE_SAVED), 120_000, { afterExit: true });
  const shared = path.join(REPO, PROFILE_SHARE_DIR);
  mkdirSync(dir, { recursive: true });
  for (const file of readdirSync(shared)) {
    renameSync(path.join(shared, file), path.join(dir, file));
    console.log(`guest daemon profile: ${path.join(dir, file)}\n${formatProfileTop(readCpuProfile(path.join(dir, file)), 30)}\n`);
  }
  rmSync(shared, { recursive: true, force: true });
}

function formatLatency(bare: BootResult | undefined, daemon: BootResult): string {
  const echo = bare?.latency[ROWS.echo];
  const rows = [...Object.entries(bare?.latency ?? {}).map(([name, s]) => [name, s, bare!.load] as const), ...Object.entries(daemon.latency).map(([name, s]) => [name, s, daemon.load] as const)];
  return formatTable(
    ['round trip', 'median us', 'p99 us', 'vs echo median', 'CPU us/call', 'n', '1-min load'],
    rows.map(([name, s, load]) => [
      name,
      fixed(s.medianUs),
      fixed(s.p99Us),
      name === ROWS.echo || !echo ? '' : `${fixed(s.medianUs / echo.medianUs, 2)}x`,
      s.cpuUsPerCall === undefined ? '' : fixed(s.cpuUsPerCall),
      String(s.count),
      load,
    ]),
  );
}

function formatTransfers(bare: BootResult | undefined, daemon: BootResult): string {
  const rows: string[][] = [];
  for (const d of daemon.transfers) {
    // A round trip is held against the slower bare direction: the port copy it can at best reach.
    const t =
      d.direction === 'rtt'
        ? bare?.transfers.filter((x) => x.mib === d.mib).sort((a, b) => a.result.medianMiBps - b.result.medianMiBps)[0]
        : bare?.transfers.find((x) => x.mib === d.mib && x.direction === d.direction);
    const label = `${d.mib} MiB ${DIRECTIONS[d.direction]}`;
    const row = (name: string, s: ThroughputSummary, load: string, share: string): string[] => [
      name,
      fixed(s.medianMiBps),
      `${fixed(s.minMiBps)}..${fixed(s.maxMiBps)}`,
      fixed(s.medianMs),
      fixed(s.cpuMsPerMiB, 2),
      share,
      String(s.reps),
      load,
    ];
    const bareName = d.direction === 'rtt' ? `${ROWS.slowerCopy}, ${DIRECTIONS[t?.direction ?? 'h2g']}` : t?.direction === 'h2g' ? ROWS.sink : ROWS.source;
    if (t) rows.push(row(`${label}: ${bareName}`, t.result, bare!.load, ''));
    rows.push(row(`${label}: ${d.direction === 'h2g' ? ROWS.stdin : d.direction === 'g2h' ? ROWS.stdout : ROWS.roundTrip}`, d.result, daemon.load, t ? `${fixed((d.result.medianMiBps / t.result.medianMiBps) * 100)}%` : ''));
  }
  return formatTable(['transfer', 'MiB/s median', 'min..max', 'ms median', 'CPU ms/MiB', 'vs bare', 'reps', '1-min load'], rows);
}

async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  const skip = vmSkipReason();
  if (skip) {
    console.log(`bench:vm skipped: ${skip}`);
    return 0;
  }
  const machine = describeMachine();
  console.log(`negotiator virtio-serial benchmark: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, ${machine.kernel}, 1-min load ${machine.loadavgStart}`);
  console.log(`guest: ../shared/vm/boot-guest.sh, QEMU under TCG, 1 vCPU, ${options.memory} MB; all traffic on the host-to-guest port; CPU = this process + QEMU (the whole guest)\n`);
  buildGuestImage();
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-bench-vm-'));
  const onSignal = (): void => void (current?.kill() ?? Promise.resolve()).finally(() => process.exit(130));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let bare: BootResult | undefined;
  let daemon: BootResult;
  try {
    if (!options.guestCpuProf) {
      bare = await measureBare(work, options);
      console.log(`boot 1 (bare peer): ready ${fixed(bare.bootToReadyMs / 1000, 1)} s after QEMU started; 1-min load ${bare.load}`);
    }
    daemon = await measureDaemon(work, options);
    console.log(`boot 2 (guest daemon): ready ${fixed(daemon.bootToReadyMs / 1000, 1)} s after QEMU started; 1-min load ${daemon.load}\n`);
  } finally {
    await current?.kill();
    rmSync(work, { recursive: true, force: true });
  }
  console.log(formatLatency(bare, daemon) + '\n');
  console.log(formatTransfers(bare, daemon) + '\n');
  const loadavgEnd = loadavg1();
  writeResults(options.json, loadavgEnd, { machine: { ...machine, loadavgEnd }, options, bare, daemon });
  return 0;
}

runBenchmark(main, async () => current?.kill());
