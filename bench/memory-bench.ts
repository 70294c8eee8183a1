// bench:memory (issue 14): the hostile peers of the issue against both daemons over loopback, with the
// resident memory of each daemon (VmRSS from /proc/PID/status) at the start, its peak during each phase,
// and one minute after the hostile peers left. Phases, one at a time:
//   flood    a peer that sends pings as fast as the socket takes them and never reads the answers, on each
//            surface: each daemon's control socket, the guest daemon's channel (a hostile host), the host
//            daemon's channel (a hostile guest);
//   stdin    a local client pushing 150 MiB into a relayed command's stdin, ignoring the window, through
//            each daemon's control socket;
//   lines    55,000 malformed lines (not JSON, deep ids, deep params, wrong shapes, over-long lines).
// Targets: peak <= 2x start and <= 100 MiB; one minute after <= 1.3x start.
// Usage: npm run bench:memory [-- --phase-seconds 8 --settle-seconds 60 --json FILE]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as delay } from 'node:timers/promises';
import { startLoopbackVm, type LoopbackVm } from '../examples/demo/loopback-vm.js';
import { loadavg1, readProcessMemory } from './proc-stats.js';
import { rawPeer, type RawPeer } from './raw-peer.js';
import { describeMachine, fixed, formatTable, formatVerdicts, runBenchmark, writeResults, type TargetVerdict } from './report.js';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const COMMANDS = path.resolve(DIST, '..', 'test', 'fixtures', 'commands');
const CLI = { host: path.join(DIST, 'host', 'cli.js'), guest: path.join(DIST, 'guest', 'cli.js') };

interface Options {
  phaseSeconds: number;
  settleSeconds: number;
  json: string;
  nodeArgs: string[];
}

function parseOptions(argv: string[]): Options {
  // The daemons start as bin/ and the systemd units start them: young generation capped (--node-arg adds more).
  const options: Options = { phaseSeconds: 8, settleSeconds: 60, json: path.join(DIST, '..', 'bench', 'results', 'memory.json'), nodeArgs: ['--max-semi-space-size=1'] };
  for (let i = 2; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === '--phase-seconds') options.phaseSeconds = Number(value);
    else if (argv[i] === '--settle-seconds') options.settleSeconds = Number(value);
    else if (argv[i] === '--json') options.json = value!;
    else if (argv[i] === '--node-arg') options.nodeArgs.push(value!);
    else throw new Error(`unknown option ${argv[i]}`);
    i++;
  }
  return options;
}

interface Daemon {
  name: string;
  child: ChildProcess;
  output: string;
  startMiB: number;
  peaks: Record<string, number>;
}

function startDaemon(name: string, cli: string, args: string[], nodeArgs: string[]): Daemon {
  // The environment the launchers and units give a daemon (bin/negotiator-host).
  const env = { ...process.env, MALLOC_MMAP_THRESHOLD_: process.env.MALLOC_MMAP_THRESHOLD_ ?? '65536' };
  const child = spawn(process.execPath, [...nodeArgs, cli, '--daemon', '--commands-dir', COMMANDS, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const daemon: Daemon = { name, child, output: '', startMiB: 0, peaks: {} };
  const keep = (chunk: Buffer): void => void (daemon.output = (daemon.output + chunk.toString()).slice(-20_000));
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return daemon;
}

async function waitForOutput(daemon: Daemon, pattern: RegExp, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(daemon.output)) {
    if (Date.now() > deadline) throw new Error(`${daemon.name}: no ${pattern} within ${timeoutMs} ms; output:\n${daemon.output}`);
    await delay(100);
  }
}

const rss = (daemon: Daemon): number => readProcessMemory(daemon.child.pid!).rssMiB;

async function connect(socketPath: string, side: 'host' | 'guest'): Promise<RawPeer> {
  const socket = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const peer = rawPeer(socket, side);
  const deadline = Date.now() + 10_000;
  while (peer.peerNonce === undefined && Date.now() < deadline) await delay(20);
  await delay(100);
  return peer;
}

// Write `next()` lines as fast as the socket takes them, for `seconds` or until next() returns undefined.
async function pour(socket: net.Socket, seconds: number, next: () => string | undefined): Promise<number> {
  const until = Date.now() + seconds * 1000;
  let lines = 0;
  while (Date.now() < until && !socket.destroyed) {
    let batch = '';
    for (let i = 0; i < 500; i++) {
      const line = next();
      if (line === undefined) break;
      batch += line;
      lines++;
    }
    if (batch === '') break;
    if (!socket.write(batch)) {
      const drained = await Promise.race([new Promise((resolve) => socket.once('drain', () => resolve(true))), delay(Math.max(0, until - Date.now())).then(() => false)]);
      if (!drained) break;
    }
  }
  return lines;
}

// Run `hostile` while sampling every daemon's RSS; record the phase's peak per daemon.
async function phase(name: string, daemons: Daemon[], hostile: () => Promise<string>): Promise<string> {
  const peaks = new Map(daemons.map((d) => [d, rss(d)]));
  const sampler = setInterval(() => {
    for (const d of daemons) peaks.set(d, Math.max(peaks.get(d)!, rss(d)));
  }, 100);
  let what: string;
  try {
    what = await hostile();
    await delay(1000);
  } finally {
    clearInterval(sampler);
  }
  for (const d of daemons) d.peaks[name] = peaks.get(d)!;
  console.log(`${name}: ${what}; peaks ${daemons.map((d) => `${d.name} ${fixed(peaks.get(d)!)} MiB`).join(', ')}`);
  return what;
}

const ping = (id: number): string => `{"jsonrpc":"2.0","id":${id},"method":"ping","params":{}}\n`;

async function flood(socketPath: string, side: 'host' | 'guest', seconds: number): Promise<string> {
  const peer = await connect(socketPath, side);
  peer.socket.pause();
  let id = 0;
  const lines = await pour(peer.socket, seconds, () => ping(++id));
  peer.close();
  return `${lines} pings`;
}

async function stdinPush(socketPath: string, guest: string | undefined, seconds: number): Promise<string> {
  const peer = await connect(socketPath, 'host');
  const params = { command: 'hang-with-child', args: ['/dev/null'], stdin: true, timeoutMs: 120_000, window: 4 << 20, ...(guest ? { guest } : {}) };
  peer.send(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'execute', params })}\n`);
  await delay(500);
  const chunk = Buffer.alloc(256 * 1024, 7).toString('base64');
  const line = `{"jsonrpc":"2.0","method":"execute.input","params":{"id":1,"data":"${chunk}"}}\n`;
  let left = 600; // 150 MiB
  const lines = await pour(peer.socket, seconds, () => (left-- > 0 ? line : undefined));
  const answer = await peer.waitFor((m) => m.id === 1, 3000).catch(() => undefined);
  peer.close();
  return `${fixed((lines * 256) / 1024)} MiB of stdin sent; answer: ${answer ? JSON.stringify(answer).slice(0, 100) : 'none yet'}`;
}

async function malformed(socketPath: string, side: 'host' | 'guest', seconds: number): Promise<string> {
  const peer = await connect(socketPath, side);
  const deep = '['.repeat(20_000) + ']'.repeat(20_000);
  const kinds = [
    () => 'not json at all\n',
    (i: number) => `{"jsonrpc":"2.0","id":${deep},"method":"ping"}\n${ping(i)}`,
    (i: number) => `{"jsonrpc":"2.0","id":${i},"method":"execute","params":${deep}}\n`,
    (i: number) => `{"jsonrpc":"1.0","id":${i},"method":"ping"}\n`,
    () => `{"jsonrpc":"2.0","method":"execute.input","params":{"id":"x","data":"@@@"}}\n`,
    () => `{"jsonrpc":"2.0","id":7,"result":{"exitCode":"x"}}\n`,
    () => `${'x'.repeat(1_100_000)}\n`,
  ];
  let i = 0;
  const lines = await pour(peer.socket, seconds, () => (i < 55_000 ? kinds[i % kinds.length]!(++i) : undefined));
  const lastPing = peer.received.filter((m) => typeof m.id === 'number' && 'result' in m).length;
  peer.close();
  return `${lines} lines, ${lastPing} valid pings answered`;
}

async function main(argv: string[]): Promise<number> {
  const options = parseOptions(argv);
  const machine = describeMachine();
  const root = mkdtempSync(path.join(os.tmpdir(), 'negotiator-memory-'));
  const vms: Record<string, LoopbackVm> = {};
  for (const name of ['vm1', 'vm2', 'vm3']) vms[name] = await startLoopbackVm(path.join(root, name));
  const strip = (spec: string): string => spec.replace(/^unix:/, '');
  const guestArgs = (vm: LoopbackVm, name: string): string[] => ['--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', path.join(root, `${name}.sock`)];
  // vm1: both daemons; vm2: the guest daemon alone (the bench plays its host); vm3: the host daemon alone (the bench plays its guest).
  const host = startDaemon('host', CLI.host, ['--no-libvirt', '--guest', `vm1=${vms.vm1!.dir}`, '--guest', `vm3=${vms.vm3!.dir}`, '--control-socket', path.join(root, 'host.sock')], options.nodeArgs);
  const guest = startDaemon('guest', CLI.guest, guestArgs(vms.vm1!, 'guest1'), options.nodeArgs);
  const lonelyGuest = startDaemon('guest (vm2)', CLI.guest, guestArgs(vms.vm2!, 'guest2'), options.nodeArgs);
  const daemons = [host, guest, lonelyGuest];
  const cleanup = async (): Promise<void> => {
    for (const d of daemons) d.child.kill('SIGKILL');
    for (const vm of Object.values(vms)) await vm.close();
    rmSync(root, { recursive: true, force: true });
  };
  try {
    await waitForOutput(host, /guest vm1.*connected to the guest agent/);
    await waitForOutput(lonelyGuest, /ready: control socket/);
    await delay(3000);
    for (const d of daemons) d.startMiB = rss(d);
    console.log(`start: ${daemons.map((d) => `${d.name} ${fixed(d.startMiB)} MiB`).join(', ')}`);
    const s = options.phaseSeconds;
    const phases: Array<[string, () => Promise<string>]> = [
      ['flood host control socket', () => flood(path.join(root, 'host.sock'), 'host', s)],
      ['flood guest control socket', () => flood(path.join(root, 'guest1.sock'), 'guest', s)],
      ['flood guest channel (hostile host)', () => flood(path.join(vms.vm2!.dir, 'negotiator-host-to-guest.0'), 'host', s)],
      ['flood host channel (hostile guest)', () => flood(strip(vms.vm3!.guestChannels.guestToHost), 'guest', s)],
      ['150 MiB stdin via host control socket', () => stdinPush(path.join(root, 'host.sock'), 'vm1', s * 2)],
      ['150 MiB stdin via guest control socket', () => stdinPush(path.join(root, 'guest1.sock'), undefined, s * 2)],
      ['malformed lines, host control socket', () => malformed(path.join(root, 'host.sock'), 'host', s)],
      ['malformed lines, guest channel', () => malformed(path.join(vms.vm2!.dir, 'negotiator-host-to-guest.0'), 'host', s)],
    ];
    const phaseRecords: Array<{ name: string; what: string }> = [];
    for (const [name, hostile] of phases) phaseRecords.push({ name, what: await phase(name, daemons, hostile) });
    console.log(`hostile peers gone; waiting ${options.settleSeconds} s`);
    await delay(options.settleSeconds * 1000);
    const rows = daemons.map((d) => {
      const peak = Math.max(...Object.values(d.peaks));
      const end = rss(d);
      return { name: d.name, start: d.startMiB, peak, end, phases: d.peaks };
    });
    console.log(formatTable(['daemon', 'start MiB', 'peak MiB', `end MiB (+${options.settleSeconds} s)`], rows.map((r) => [r.name, fixed(r.start), fixed(r.peak), fixed(r.end)])));
    const verdicts: TargetVerdict[] = rows.flatMap((r) => [
      { name: `${r.name}: peak`, measured: `${fixed(r.peak)} MiB from ${fixed(r.start)}`, target: `<= ${fixed(Math.min(100, 2 * r.start))} MiB (2x start, 100 MiB)`, met: r.peak <= Math.min(100, 2 * r.start) },
      { name: `${r.name}: after`, measured: `${fixed(r.end)} MiB`, target: `<= ${fixed(1.3 * r.start)} MiB (1.3x start)`, met: r.end <= 1.3 * r.start },
    ]);
    console.log(formatVerdicts(verdicts));
    const loadavgEnd = loadavg1();
    writeResults(options.json, loadavgEnd, { machine: { ...machine, loadavgEnd }, options, phases: phaseRecords, rows, verdicts });
    return verdicts.every((v) => v.met) ? 0 : 1;
  } finally {
    await cleanup();
  }
}

runBenchmark(main);
