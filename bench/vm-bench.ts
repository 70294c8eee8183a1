// `npm run bench:vm`: real virtio-serial through a booted guest (QEMU under TCG, ../shared/vm). Boot 1: a
// bare node peer on the host-to-guest port (bench/vm-port-peer.ts: echo, raw copies both ways). Boot 2: the
// negotiator guest daemon on the same port, driven by an RpcPeer on QEMU's socket (ping, execute true,
// `wc -c` reading N MiB of stdin, `dd` writing N MiB of zeros, `cat` both ways, forwarded streams to the services
// `sink` and `source` of bench/vm-stream-services.ts). One boot per contender set.
import { parseCount } from '../common/cli/options.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { executeRemote } from '../common/execute/client.js';
import { openStream } from '../common/streams/client.js';
import { METHODS } from '../common/wire/protocol.js';
import { RpcPeer } from '../common/wire/rpc-peer.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import { benchHostInfo } from './bench-agent.js';
import { LoadSampler, loadavg1 } from './proc-stats.js';
import { formatProfileTop, readCpuProfile } from './profile-top.js';
import { describeMachine, fixed, formatTable, runBenchmark, writeResults } from './report.js';
import { sampleLatencies, sampleTransfers } from './sampling.js';
import { MIB, round, summarizeLatencies, summarizeTransfers, type LatencySummary, type ThroughputSummary } from './stats.js';
import { downloadFrom, uploadTo } from './stream-services.js';
import { openBareVmClient } from './vm-bare-client.js';
import { REPO, VM_STREAM_SERVICES, bootBenchGuest, buildGuestImage, vmSkipReason, type BenchGuest } from './vm-guest.js';

const DEFAULT_JSON = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/results/vm.json');
const BOOT_TIMEOUT_MS = 240_000;
/** Transfers through an emulated guest are slow; the default 10 s deadline would cut the large ones. */
const TRANSFER_TIMEOUT_MS = 300_000;

// The guest daemon with a command directory of busybox applets (links named for the applet: busybox runs
// the one its argv[0] names) made in the guest's initramfs. Profiled (--guest-cpu-prof): under node
// --cpu-prof, and once it stopped (SIGTERM through the `kill` command) its profile is copied to the share.
// With `streams`, bench/vm-stream-services.ts starts beside it (its own console line says when it listens)
// and the daemon offers its two services.
const PROFILE_SHARE_DIR = 'dist/bench-vm-profile';
const PROFILE_SAVED = 'bench-vm-profile-saved';
const SERVICES_READY = /vm-stream-services ready/;
const START_SERVICES = 'mkdir -p /run && { node dist/bench/vm-stream-services.js & } && ';
function daemonCommand(profile: boolean, streams: boolean): string {
  const setup = 'mkdir -p /tmp/bench-commands /run/negotiator && for c in true wc dd cat kill; do ln -sf /bin/busybox /tmp/bench-commands/$c; done && ' + (streams ? START_SERVICES : '');
  let daemon = 'dist/guest/cli.js --daemon --no-builtin-commands --commands-dir /tmp/bench-commands';
  if (streams) daemon += ` --service sink=unix:${VM_STREAM_SERVICES.sink} --service source=unix:${VM_STREAM_SERVICES.source}`;
  if (!profile) return `${setup}exec node ${daemon}`;
  return `${setup}node --cpu-prof --cpu-prof-dir=/tmp/bench-prof ${daemon}; mkdir -p ${PROFILE_SHARE_DIR} && cp /tmp/bench-prof/*.cpuprofile ${PROFILE_SHARE_DIR}/ && echo ${PROFILE_SAVED}`;
}
// The bare peer, with the services beside it when streams are measured (its relays reach them).
const bareCommand = (streams: boolean): string => `${streams ? START_SERVICES : ''}exec node dist/bench/vm-port-peer.js`;

/** The transfers, as `--only` names them, and their direction. */
const TRANSFERS = { h2g: 'host -> guest', g2h: 'guest -> host', rtt: 'host -> guest -> host', 'stream-up': 'host -> guest', 'stream-down': 'guest -> host' } as const;
type Transfer = keyof typeof TRANSFERS;
type BareDirection = 'h2g' | 'g2h';
/** The bare copy each transfer of the daemon is held against; a round trip: the slower bare direction, the port copy it can at best reach. */
const BARE_COPY = { h2g: 'h2g', g2h: 'g2h', rtt: 'slower', 'stream-up': 'h2g', 'stream-down': 'g2h' } as const satisfies Record<Transfer, BareDirection | 'slower'>;
const STREAM_TRANSFERS: readonly Transfer[] = ['stream-up', 'stream-down'];

interface VmBenchOptions {
  pings: number;
  execs: number;
  sizes: number[];
  reps: number;
  /** The transfers to run (both boots: the bare copies that some of them are held against). */
  only: Transfer[];
  memory: number;
  /** Profile the guest daemon into this host directory (figures then carry the profiler's cost; no bare boot). */
  guestCpuProf: string | undefined;
  json: string;
  /** Offer binary frames to the guest daemon (false: base64 JSON lines, for A/B runs). */
  frames: boolean;
}

function parseTransfers(value: string): Transfer[] {
  return value.split(',').map((name) => {
    if (!Object.hasOwn(TRANSFERS, name)) throw new InvalidArgumentError(`Expected \`--only\` to list some of ${Object.keys(TRANSFERS).join(', ')}, got \`${name}\``);
    return name as Transfer;
  });
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
    .addOption(new Option('--only <transfers>', `transfers to run, comma-separated: some of ${Object.keys(TRANSFERS).join(', ')}`).default(Object.keys(TRANSFERS)).argParser(parseTransfers))
    .option('--no-frames', 'do not offer binary frames: bulk bytes go as base64 JSON lines (A/B)')
    .addOption(new Option('--guest-cpu-prof <dir>', 'run the guest daemon under node --cpu-prof and put its profile here (skips the bare boot)'))
    .addOption(new Option('--json <file>', 'where the machine-readable results go').default(DEFAULT_JSON))
    .parse([...argv])
    .opts<VmBenchOptions>();
  return Object.freeze(opts);
}

/** What one boot measured. */
interface BootResult {
  contender: string;
  bootToReadyMs: number;
  latency: Record<string, LatencySummary>;
  transfers: Array<{ mib: number; direction: Transfer; result: ThroughputSummary }>;
  load: string;
}

const ROWS = {
  echo: 'bare NDJSON echo (node peer on the port)',
  ping: 'rpc ping (negotiator-guest --daemon)',
  execute: 'rpc execute true (busybox true)',
  bareCopy: 'bare copy',
  slowerCopy: 'bare copy (the slower direction)',
  bareCat: 'bare cat: the bytes through busybox cat in the guest, no protocol',
  bareRelayUp: 'bare relay: the bytes to the sink service by the bare peer, no protocol',
  bareRelayDown: 'bare relay: the bytes from the source service by the bare peer, no protocol',
} as const;
/** The transfers also held against the bare peer doing the same work without the protocol, and that row's name. */
const BARE_EQUIVALENT = { rtt: ROWS.bareCat, 'stream-up': ROWS.bareRelayUp, 'stream-down': ROWS.bareRelayDown } as const;
/** The daemon's row of each transfer. */
const TRANSFER_ROWS = {
  h2g: 'execute wc -c, N MiB on stdin',
  g2h: 'execute dd if=/dev/zero bs=64k',
  rtt: 'execute cat, N MiB in and out',
  'stream-up': 'stream upload, openStream(sink)',
  'stream-down': 'stream download, openStream(source)',
} as const satisfies Record<Transfer, string>;

type TransferFunction = (bytes: number) => Promise<void>;

// The transfers named in `only`.
function selectTransfers(transfers: Record<string, TransferFunction>, only: readonly string[]): Record<string, TransferFunction> {
  return Object.fromEntries(Object.entries(transfers).filter(([name]) => only.includes(name)));
}

// Sample each size of `transfers` (after two unmeasured 1 MiB transfers of each), summarised per size and transfer.
async function measureTransfers(transfers: Record<string, TransferFunction>, options: VmBenchOptions, guest: BenchGuest, load: LoadSampler): Promise<BootResult['transfers']> {
  for (let i = 0; i < 2; i++) for (const transfer of Object.values(transfers)) await transfer(MIB);
  const results: BootResult['transfers'] = [];
  for (const mib of options.sizes) {
    const samples = await sampleTransfers(transfers, { bytes: mib * MIB, reps: options.reps, readServerCpuMs: async () => guest.readQemuCpuMs() });
    for (const [direction, runs] of Object.entries(samples)) results.push({ mib, direction: direction as Transfer, result: summarizeTransfers(mib * MIB, runs) });
    load.sample();
  }
  return results;
}

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
  const streams = options.only.some((t) => STREAM_TRANSFERS.includes(t));
  const { guest, bootToReadyMs } = await boot(work, 'bare', bareCommand(streams), /vm-port-peer ready on \S+/, options.memory);
  try {
    if (streams) await guest.waitForConsole(SERVICES_READY, BOOT_TIMEOUT_MS);
    const client = await openBareVmClient(guest.hostToGuestSocket);
    try {
      const qemuCpu = async (): Promise<number> => guest.readQemuCpuMs();
      load.sample();
      const pings = await sampleLatencies({ echo: client.echo }, { warmup: 100, count: options.pings, rounds: 5, readServerCpuMs: qemuCpu });
      load.sample();
      // The bare copies the selected transfers are held against.
      // The round trip and the streams are also held against the same bytes through the same command or
      // service without the protocol.
      const copies: string[] = (['h2g', 'g2h'] as const).filter((d) => options.only.some((t) => BARE_COPY[t] === d || BARE_COPY[t] === 'slower'));
      copies.push(...Object.keys(BARE_EQUIVALENT).filter((t) => options.only.includes(t as Transfer)));
      const equivalents = { rtt: client.cat, 'stream-up': client.relayToSink, 'stream-down': client.relayFromSource } satisfies Record<keyof typeof BARE_EQUIVALENT, TransferFunction>;
      const transfers = await measureTransfers(selectTransfers({ h2g: client.sink, g2h: client.source, ...equivalents }, copies), options, guest, load);
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
  const streams = options.only.some((t) => STREAM_TRANSFERS.includes(t));
  const { guest, bootToReadyMs } = await boot(work, 'daemon', daemonCommand(profile, streams), /negotiator-guest \S+ ready: control socket/, options.memory);
  try {
    if (streams) await guest.waitForConsole(SERVICES_READY, BOOT_TIMEOUT_MS);
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
      // Not `head -c N`: busybox's copies a byte at a time through stdio, 5 MiB/s in this guest even to a
      // bare reader; dd writes what it reads in 64 KiB blocks.
      const stdout = async (bytes: number): Promise<void> => {
        let received = 0;
        const result = await executeRemote(peer, { command: 'dd', args: ['if=/dev/zero', 'bs=65536', `count=${bytes / 65536}`], timeoutMs: TRANSFER_TIMEOUT_MS, stdout: (chunk) => void (received += chunk.length) });
        if (result.exitCode !== 0 || received !== bytes) throw new Error(`execute dd: exit ${result.exitCode}, ${received} bytes received, expected ${bytes}`);
      };
      // The issue-12 figure: both directions at once through one command, N MiB each way.
      const roundTrip = async (bytes: number): Promise<void> => {
        let received = 0;
        const result = await executeRemote(peer, { command: 'cat', stdin: Buffer.alloc(bytes, 0x61), timeoutMs: TRANSFER_TIMEOUT_MS, stdout: (chunk) => void (received += chunk.length) });
        if (result.exitCode !== 0 || received !== bytes) throw new Error(`execute cat: exit ${result.exitCode}, ${received} bytes back, expected ${bytes}`);
      };
      // The issue-12 stream figure: a stream to a guest service, opened on the same peer (what `--forward`
      // does for each connection); the services check the byte counts (bench/stream-services.ts).
      const stream = (service: keyof typeof VM_STREAM_SERVICES, transfer: (stream: Duplex, bytes: number) => Promise<void>) => async (bytes: number): Promise<void> =>
        transfer(await openStream(peer, { service, signal: AbortSignal.timeout(TRANSFER_TIMEOUT_MS) }), bytes);
      const transfers = await measureTransfers(
        selectTransfers({ h2g: stdin, g2h: stdout, rtt: roundTrip, 'stream-up': stream('sink', uploadTo), 'stream-down': stream('source', downloadFrom) }, options.only),
        options,
        guest,
        load,
      );
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

/** A transfer of the daemon beside the bare copy of the same size (boot 1) it is held against. */
interface Comparison {
  mib: number;
  transfer: Transfer;
  row: string;
  result: ThroughputSummary;
  bare?: { row: string; result: ThroughputSummary };
  /** Median MiB/s as a percentage of the bare copy's. */
  vsBarePercent?: number;
}

// Pair each transfer of the daemon with its bare copy, grouped by size and bare direction (each bare copy
// followed by what is held against it).
function compareTransfers(bare: BootResult | undefined, daemon: BootResult): Comparison[] {
  const comparisons: Comparison[] = [];
  const compare = (d: BootResult['transfers'][number], bareRow: Comparison['bare']): void => {
    comparisons.push({
      mib: d.mib,
      transfer: d.direction,
      row: `${d.mib} MiB ${TRANSFERS[d.direction]}: ${TRANSFER_ROWS[d.direction]}`,
      result: d.result,
      ...(bareRow ? { bare: bareRow, vsBarePercent: round((d.result.medianMiBps / bareRow.result.medianMiBps) * 100) } : {}),
    });
  };
  for (const mib of new Set(daemon.transfers.map((d) => d.mib))) {
    const copies = bare?.transfers.filter((x) => x.mib === mib && (x.direction === 'h2g' || x.direction === 'g2h')) ?? [];
    for (const against of ['h2g', 'g2h', 'slower'] as const) {
      const t = against === 'slower' ? [...copies].sort((a, b) => a.result.medianMiBps - b.result.medianMiBps)[0] : copies.find((x) => x.direction === against);
      const bareRow = t && { row: `${mib} MiB ${TRANSFERS[t.direction]}: ${against === 'slower' ? `${ROWS.slowerCopy}, ${TRANSFERS[t.direction]}` : ROWS.bareCopy}`, result: t.result };
      for (const d of daemon.transfers.filter((x) => x.mib === mib && BARE_COPY[x.direction] === against)) compare(d, bareRow);
    }
    // The round trip and the streams once more, against the bare peer's cat and relays (bench/vm-port-peer.ts).
    for (const [transfer, name] of Object.entries(BARE_EQUIVALENT) as Array<[Transfer, string]>) {
      const equivalent = bare?.transfers.find((x) => x.mib === mib && x.direction === transfer);
      if (!equivalent) continue;
      for (const d of daemon.transfers.filter((x) => x.mib === mib && x.direction === transfer)) compare(d, { row: `${mib} MiB ${TRANSFERS[transfer]}: ${name}`, result: equivalent.result });
    }
  }
  return comparisons;
}

function formatTransfers(comparisons: readonly Comparison[], bare: BootResult | undefined, daemon: BootResult): string {
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
  const rows: string[][] = [];
  let lastBare: string | undefined;
  for (const c of comparisons) {
    // Each bare copy once, above the transfers held against it.
    if (c.bare && c.bare.row !== lastBare) rows.push(row(c.bare.row, c.bare.result, bare!.load, ''));
    lastBare = c.bare?.row;
    rows.push(row(c.row, c.result, daemon.load, c.vsBarePercent === undefined ? '' : `${fixed(c.vsBarePercent)}%`));
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
  const comparisons = compareTransfers(bare, daemon);
  console.log(formatTransfers(comparisons, bare, daemon) + '\n');
  const loadavgEnd = loadavg1();
  writeResults(options.json, loadavgEnd, { machine: { ...machine, loadavgEnd }, options, bare, daemon, comparisons });
  return 0;
}

runBenchmark(main, async () => current?.kill());
