// Forwarded streams on the loopback against a bare UNIX-socket copy, in the same run (issue 12's target:
// >= 50% of the bare copy). This process is the client and the services, and nothing else, for every
// contender, so that each does the same work here (one write and one read per byte):
//   - bare socket copy: the client talks to the services directly;
//   - forwarded stream: the client connects to a forward listener held by the host side
//     (bench/stream-host.ts, a process of its own, as a host daemon's `--forward` is), whose peer talks over
//     a UNIX-socket channel to the guest daemon (the real built CLI), which opens the service;
//   - bare relay: the same two processes and three socket hops with no protocol: a relay process pipes each
//     connection to a second one (over the channel's place), which pipes it to the service;
//   - bare relay in C (when socat is installed): the same, two socat processes with 256 KiB buffers.
// Upload: the client writes N MiB and half-closes, the sink answers with its count; download: the client
// asks the source for N MiB, which writes them and closes (bench/stream-services.ts).
// CPU per MiB counts this process and the contender's two others (host side and guest daemon, or relays).
// Until 2026-12-05 the host side ran in this process, beside the client and the services: a forward then
// cost this process twice the bare copy's work whatever the protocol did (docs/benchmarks.md).
// Usage: node dist/bench/stream-bench.js [--mib N] [--reps N] [--daemon-cpu-prof DIR]
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeMachine, fixed, formatTable, formatVerdicts, runBenchmark, writeResults, type TargetVerdict } from './report.js';
import { readProcessCpuMs } from './proc-stats.js';
import { downloadFrom, startStreamServices, uploadTo } from './stream-services.js';
import { createWorkspace } from './workspace.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const GUEST_CLI = path.resolve(HERE, '..', 'guest', 'cli.js');
const HOST_SIDE = path.join(HERE, 'stream-host.js');

function argument(argv: string[], name: string, fallback: number): number {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
}

// Run `transfer` (bench/stream-services.ts) on a new connection to `file`, connecting included. Resolves with MiB/s.
async function timed(file: string, bytes: number, transfer: (socket: net.Socket, bytes: number) => Promise<void>): Promise<number> {
  const started = process.hrtime.bigint();
  await transfer(net.connect({ path: file, allowHalfOpen: true }), bytes);
  return bytes / 1024 / 1024 / (Number(process.hrtime.bigint() - started) / 1e9);
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

// A relay process of the bare relay: each connection on a listening path piped to a target path.
const RELAY_SCRIPT = `
const net = require('node:net');
const [, ...pairs] = process.argv;
for (let i = 0; i < pairs.length; i += 2) {
  net.createServer({ allowHalfOpen: true }, (socket) => {
    const target = net.connect({ path: pairs[i + 1], allowHalfOpen: true });
    socket.pipe(target).pipe(socket);
    socket.on('error', () => target.destroy());
    target.on('error', () => socket.destroy());
  }).listen(pairs[i], () => process.stdout.write('listening\\n'));
}`;

type Child = ReturnType<typeof execa>;

// Resolve once `child` has printed `word` `times` times on its stdout (rejects if it exits first).
function said(child: Child, word: string, times = 1): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (chunk: Buffer) => (text += chunk.toString()).split(word).length > times && resolve());
    void child.then((result) => reject(new Error(`${result.command} exited (${result.exitCode ?? result.signal}) before saying \`${word}\``)));
  });
}

// A relay process: each `[listen, target]` pair piped. (Wrapped: the process is itself a promise.)
async function startRelay(pairs: ReadonlyArray<readonly [string, string]>): Promise<{ relay: Child }> {
  const relay = execa(process.execPath, ['-e', RELAY_SCRIPT, '--', ...pairs.flat()], { reject: false, stdin: 'ignore', stderr: 'inherit' });
  await said(relay, 'listening', pairs.length);
  return { relay };
}

// The bare relay in C, when socat is installed: the same two processes and hops with 256 KiB reads and
// writes, a process forked per connection (its CPU is not counted: NaN). What the machine's kernel and
// cores allow two relaying processes; the Node relay above is what Node's socket path allows.
async function startSocatRelays(pairs: ReadonlyArray<readonly [string, string]>): Promise<{ relays: Child[] } | undefined> {
  const probe = await execa('socat', ['-V'], { reject: false, stdin: 'ignore' });
  if (probe.exitCode !== 0) return undefined;
  const relays = pairs.map(([listen, target]) => execa('socat', ['-b', String(256 * 1024), `UNIX-LISTEN:${listen},fork`, `UNIX-CONNECT:${target}`], { reject: false, stdin: 'ignore', stderr: 'inherit' }));
  // socat says nothing once it listens: wait for the socket files.
  for (const [listen] of pairs) {
    for (let waited = 0; !existsSync(listen); waited += 20) {
      if (waited > 5000) {
        for (const relay of relays) relay.kill('SIGTERM');
        throw new Error(`socat did not listen on ${listen} within 5 s`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  return { relays };
}

interface Run {
  mibps: number;
  /** CPU of this process and of the contender's other processes, ms per MiB. */
  cpuMsPerMiB: number;
}

// One transfer with the CPU it cost this process and `otherPids` (host side and daemon, or the relays).
async function measure(transfer: () => Promise<number>, mib: number, otherPids: ReadonlyArray<number | undefined>): Promise<Run> {
  const others = (): number => otherPids.reduce<number>((sum, pid) => sum + (pid === undefined ? NaN : readProcessCpuMs(pid)), 0);
  const before = others();
  const own = process.cpuUsage();
  const mibps = await transfer();
  const used = process.cpuUsage(own);
  return { mibps, cpuMsPerMiB: ((used.user + used.system) / 1000 + others() - before) / mib };
}

async function main(argv: string[]): Promise<number> {
  const mib = argument(argv, '--mib', 256);
  const reps = argument(argv, '--reps', 3);
  // CPU profiles (node --cpu-prof) of the host side and the guest daemon, for finding where their time goes;
  // this process's: run it with --cpu-prof.
  const profileAt = argv.indexOf('--daemon-cpu-prof');
  const profile = profileAt >= 0 ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(argv[profileAt + 1] ?? '.')}`] : [];
  const bytes = mib * 1024 * 1024;
  const machine = describeMachine();
  const work = createWorkspace('negotiator-stream-bench-');
  const file = (name: string): string => path.join(work.dir, name);
  const services = ['sink', 'source'];

  const closeServices = await startStreamServices({ sink: file('sink.sock'), source: file('source.sock') });
  // The host side listens on the channel socket (as QEMU's chardev does); the guest daemon connects to it
  // and serves its services.
  const host = execa(process.execPath, [...profile, HOST_SIDE, '--channel', file('channel.sock'), ...services.flatMap((s) => ['--forward', `unix:${file(`fwd-${s}.sock`)}:${s}`])], {
    reject: false, stdin: 'pipe', stderr: 'inherit',
  });
  const children: Child[] = [host];
  try {
    await said(host, 'listening');
    const guest = execa(process.execPath, [
      ...profile, GUEST_CLI, '--daemon', '-q',
      '--host-to-guest', `unix:${file('channel.sock')}`, '--guest-to-host', 'none',
      '--control-socket', file('guest-control.sock'),
      '--service', `sink=unix:${file('sink.sock')}`, '--service', `source=unix:${file('source.sock')}`,
    ], { reject: false, stdin: 'ignore', stdout: 'inherit', stderr: 'inherit' });
    children.push(guest);
    await Promise.race([said(host, 'ready'), guest.then((result) => Promise.reject(new Error(`the guest daemon exited (${result.exitCode ?? result.signal}) before the host side was ready`)))]);
    // The bare relay: relay A -> relay B -> the service.
    const { relay: relayB } = await startRelay(services.map((s) => [file(`relay-b-${s}.sock`), file(`${s}.sock`)] as const));
    const { relay: relayA } = await startRelay(services.map((s) => [file(`bare-relay-${s}.sock`), file(`relay-b-${s}.sock`)] as const));
    children.push(relayA, relayB);
    const socat = await startSocatRelays(services.flatMap((s) => [[file(`socat-b-${s}.sock`), file(`${s}.sock`)], [file(`socat-${s}.sock`), file(`socat-b-${s}.sock`)]] as const));
    children.push(...(socat?.relays ?? []));
    const contenders: Array<{ name: string; prefix: string; pids: Array<number | undefined> }> = [
      { name: 'bare socket copy', prefix: '', pids: [] },
      ...(socat ? [{ name: 'bare relay in C (socat, 256 KiB)', prefix: 'socat-', pids: [undefined] }] : []),
      { name: 'bare relay (2 processes, no protocol)', prefix: 'bare-relay-', pids: [relayA.pid!, relayB.pid!] },
      { name: 'forwarded stream', prefix: 'fwd-', pids: [host.pid!, guest.pid!] },
    ];
    const runs = new Map<string, Run[]>(contenders.flatMap((c) => ['upload', 'download'].map((d) => [`${c.name}/${d}`, [] as Run[]])));
    // Interleaved, so that load from other processes falls on all alike.
    for (let rep = 0; rep < reps; rep++) {
      for (const c of contenders) runs.get(`${c.name}/upload`)!.push(await measure(() => timed(file(`${c.prefix}sink.sock`), bytes, uploadTo), mib, c.pids));
      for (const c of contenders) runs.get(`${c.name}/download`)!.push(await measure(() => timed(file(`${c.prefix}source.sock`), bytes, downloadFrom), mib, c.pids));
    }
    const mibps = (name: string, direction: string): number => median(runs.get(`${name}/${direction}`)!.map((r) => r.mibps));
    const rows: string[][] = [];
    for (const direction of ['upload', 'download']) {
      const bare = mibps('bare socket copy', direction);
      for (const c of contenders) {
        const list = runs.get(`${c.name}/${direction}`)!;
        rows.push([
          direction, c.name, fixed(mibps(c.name, direction)), fixed(median(list.map((r) => r.cpuMsPerMiB)), 2),
          `${fixed((mibps(c.name, direction) / bare) * 100, 0)}%`, list.map((r) => fixed(r.mibps)).join(' '),
        ]);
      }
    }
    console.log(`forwarded stream vs bare UNIX-socket copy, ${mib} MiB, median of ${reps}; load ${machine.loadavgStart}\n`);
    console.log(formatTable(['direction', 'contender', 'MiB/s', 'CPU ms/MiB', 'vs bare copy', 'runs (MiB/s)'], rows));
    const up = mibps('forwarded stream', 'upload') / mibps('bare socket copy', 'upload');
    const down = mibps('forwarded stream', 'download') / mibps('bare socket copy', 'download');
    const figures = Object.fromEntries(runs);
    const verdicts: TargetVerdict[] = [
      { name: 'forwarded stream, UNIX-socket loopback, upload', measured: `${fixed(up * 100, 0)}% of the bare copy`, target: '>= 50%', met: up >= 0.5 },
      { name: 'forwarded stream, UNIX-socket loopback, download', measured: `${fixed(down * 100, 0)}% of the bare copy`, target: '>= 50%', met: down >= 0.5 },
    ];
    console.log(`\n${formatVerdicts(verdicts)}`);
    writeResults(path.join('bench', 'results', 'streams.json'), (await import('node:os')).loadavg()[0]!, { machine, mib, reps, figures, verdicts });
    return verdicts.every((v) => v.met) ? 0 : 1;
  } finally {
    // The host side ends when its stdin closes; the rest on SIGTERM.
    host.stdin!.end();
    for (const child of children.slice(1)) child.kill('SIGTERM');
    await Promise.all(children);
    closeServices();
    work.remove();
  }
}

runBenchmark(main);
