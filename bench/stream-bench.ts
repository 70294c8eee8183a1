// Forwarded streams on the loopback against a bare UNIX-socket copy, in the same run (issue 12's target:
// >= 50% of the bare copy). The guest daemon (a separate process, the real built CLI) serves the
// services on a UNIX-socket channel; this process is the opener: a forward listener (as --forward
// runs it) and its peer, plus the client and the services. Bare: the client talks to the services
// directly. Upload: the client writes N MiB and half-closes, the sink answers with its count; download:
// the client asks the source for N MiB, which writes them and closes (bench/stream-services.ts). A third
// contender, the bare relay, has the forward's topology with no protocol: a listener here pipes each
// connection to a second node process over a UNIX socket (the channel's place), which pipes it to the
// service: the limit of two processes and three socket hops.
// CPU per MiB counts this process and the other one (the daemon or the relay).
// Usage: node dist/bench/stream-bench.js [--mib N] [--reps N] [--daemon-cpu-prof DIR]
import { execa } from 'execa';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseForwardSpec } from '../common/streams/address.js';
import { openStream } from '../common/streams/client.js';
import { startForwarder } from '../common/streams/forward.js';
import { silentLogger } from '../common/base/logger.js';
import { readLocalAgentInfo } from '../common/wire/agent-info.js';
import { RpcPeer } from '../common/wire/rpc-peer.js';
import { createStreamChannel } from '../common/wire/stream-channel.js';
import { describeMachine, fixed, formatTable, formatVerdicts, runBenchmark, writeResults, type TargetVerdict } from './report.js';
import { readProcessCpuMs } from './proc-stats.js';
import { downloadFrom, startStreamServices, uploadTo } from './stream-services.js';
import { createWorkspace } from './workspace.js';

const GUEST_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'guest', 'cli.js');

function argument(argv: string[], name: string, fallback: number): number {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
}

async function listen(server: net.Server, file: string): Promise<void> {
  await new Promise<void>((resolve) => server.listen(file, resolve));
}

// Run `transfer` (bench/stream-services.ts) on a new connection to `file`, connecting included. Resolves with MiB/s.
async function timed(file: string, bytes: number, transfer: (socket: net.Socket, bytes: number) => Promise<void>): Promise<number> {
  const started = process.hrtime.bigint();
  await transfer(net.connect({ path: file, allowHalfOpen: true }), bytes);
  return bytes / 1024 / 1024 / (Number(process.hrtime.bigint() - started) / 1e9);
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

// The relay process of the bare relay: each connection on a listening path piped to a service path.
const RELAY_SCRIPT = `
const net = require('node:net');
const [, ...pairs] = process.argv;
for (let i = 0; i < pairs.length; i += 2) {
  net.createServer({ allowHalfOpen: true }, (socket) => {
    const service = net.connect({ path: pairs[i + 1], allowHalfOpen: true });
    socket.pipe(service).pipe(socket);
    socket.on('error', () => service.destroy());
    service.on('error', () => socket.destroy());
  }).listen(pairs[i], () => process.stdout.write('listening\\n'));
}`;

// This process's listener of the bare relay: each connection piped to `upstream` (the relay process).
function pipeTo(upstream: string): net.Server {
  return net.createServer({ allowHalfOpen: true }, (socket) => {
    const relay = net.connect({ path: upstream, allowHalfOpen: true });
    socket.pipe(relay).pipe(socket);
    socket.on('error', () => relay.destroy());
    relay.on('error', () => socket.destroy());
  });
}

interface Run {
  mibps: number;
  /** CPU of this process and of `otherPid`, ms per MiB. */
  cpuMsPerMiB: number;
}

// One transfer with the CPU it cost this process and `otherPid` (the daemon or the relay).
async function measure(transfer: () => Promise<number>, mib: number, otherPid: number | undefined): Promise<Run> {
  const other = otherPid === undefined ? 0 : readProcessCpuMs(otherPid);
  const own = process.cpuUsage();
  const mibps = await transfer();
  const used = process.cpuUsage(own);
  const otherUsed = otherPid === undefined ? 0 : readProcessCpuMs(otherPid) - other;
  return { mibps, cpuMsPerMiB: ((used.user + used.system) / 1000 + otherUsed) / mib };
}

async function main(argv: string[]): Promise<number> {
  const mib = argument(argv, '--mib', 256);
  const reps = argument(argv, '--reps', 3);
  // The daemon's CPU profile (node --cpu-prof) for finding where its time goes; this process's: run it with --cpu-prof.
  const profileAt = argv.indexOf('--daemon-cpu-prof');
  const profile = profileAt >= 0 ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(argv[profileAt + 1] ?? '.')}`] : [];
  const bytes = mib * 1024 * 1024;
  const machine = describeMachine();
  const work = createWorkspace('negotiator-stream-bench-');
  const file = (name: string): string => path.join(work.dir, name);

  const closeServices = await startStreamServices({ sink: file('sink.sock'), source: file('source.sock') });

  // The channel: the guest daemon connects to our socket (as to a chardev) and serves its services.
  const channelServer = net.createServer();
  await listen(channelServer, file('channel.sock'));
  const accepted = new Promise<net.Socket>((resolve) => channelServer.once('connection', resolve));
  const guest = execa(process.execPath, [
    ...profile, GUEST_CLI, '--daemon', '-q',
    '--host-to-guest', `unix:${file('channel.sock')}`, '--guest-to-host', 'none',
    '--control-socket', file('guest-control.sock'),
    '--service', `sink=unix:${file('sink.sock')}`, '--service', `source=unix:${file('source.sock')}`,
  ], { reject: false, stdin: 'ignore', stdout: 'inherit', stderr: 'inherit' });
  try {
    const peer = new RpcPeer(createStreamChannel(await accepted, 'guest'), { localInfo: await readLocalAgentInfo('host'), label: 'guest' });
    peer.start();
    await peer.waitForReady(20_000);
    const forwards = await Promise.all(
      ['sink', 'source'].map((service) =>
        startForwarder({ spec: parseForwardSpec(`unix:${file(`fwd-${service}.sock`)}:${service}`, false), logger: silentLogger, target: service, open: (signal) => openStream(peer, { service, signal }) }),
      ),
    );
    // The bare relay: this process's listener -> the relay process -> the service.
    const relay = execa(process.execPath, ['-e', RELAY_SCRIPT, '--', file('relay-sink.sock'), file('sink.sock'), file('relay-source.sock'), file('source.sock')], { reject: false, stdin: 'ignore', stderr: 'inherit' });
    let said = '';
    await new Promise<void>((resolve) => relay.stdout!.on('data', (chunk: Buffer) => (said += chunk.toString()).split('listening').length > 2 && resolve()));
    const relayListeners = [pipeTo(file('relay-sink.sock')), pipeTo(file('relay-source.sock'))];
    await listen(relayListeners[0]!, file('bare-relay-sink.sock'));
    await listen(relayListeners[1]!, file('bare-relay-source.sock'));
    const contenders = [
      { name: 'bare socket copy', prefix: '', pid: undefined },
      { name: 'bare relay (2 processes, no protocol)', prefix: 'bare-relay-', pid: relay.pid },
      { name: 'forwarded stream', prefix: 'fwd-', pid: guest.pid },
    ];
    const runs = new Map<string, Run[]>(contenders.flatMap((c) => ['upload', 'download'].map((d) => [`${c.name}/${d}`, [] as Run[]])));
    // Interleaved, so that load from other processes falls on all alike.
    for (let rep = 0; rep < reps; rep++) {
      for (const c of contenders) runs.get(`${c.name}/upload`)!.push(await measure(() => timed(file(`${c.prefix}sink.sock`), bytes, uploadTo), mib, c.pid));
      for (const c of contenders) runs.get(`${c.name}/download`)!.push(await measure(() => timed(file(`${c.prefix}source.sock`), bytes, downloadFrom), mib, c.pid));
    }
    await Promise.all(forwards.map((f) => f.close()));
    await peer.close();
    for (const server of relayListeners) server.close();
    relay.kill('SIGTERM');
    await relay;
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
    guest.kill('SIGTERM');
    await guest;
    closeServices();
    channelServer.close();
    work.remove();
  }
}

runBenchmark(main);
