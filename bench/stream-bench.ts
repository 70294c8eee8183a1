// Forwarded streams on the loopback against a bare UNIX-socket copy, in the same run (issue 12's target:
// >= 50% of the bare copy). The guest daemon (a separate process, the real built CLI) serves the
// services on a UNIX-socket channel; this process is the opener: a forward listener (as --forward
// runs it) and its peer, plus the client and the services. Bare: the client talks to the services
// directly. Upload: the client writes N MiB and half-closes, the sink answers with its count; download:
// the source writes N MiB and closes.
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
import { createWorkspace } from './workspace.js';

const GUEST_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'guest', 'cli.js');
const CHUNK = Buffer.alloc(256 * 1024, 0x5a);

function argument(argv: string[], name: string, fallback: number): number {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
}

async function listen(server: net.Server, file: string): Promise<void> {
  await new Promise<void>((resolve) => server.listen(file, resolve));
}

// Write `bytes` of CHUNKs to `socket` with its backpressure, then end it.
function writeAndEnd(socket: net.Socket, bytes: number): void {
  let sent = 0;
  const pump = (): void => {
    while (sent < bytes) {
      sent += CHUNK.length;
      if (!socket.write(CHUNK)) return void socket.once('drain', pump);
    }
    socket.end();
  };
  pump();
}

// Write `bytes` to the socket at `file`, half-close, wait for the sink's count. Resolves with MiB/s.
function upload(file: string, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = net.connect({ path: file, allowHalfOpen: true });
    let reply = '';
    socket.on('data', (chunk: Buffer) => (reply += chunk.toString()));
    socket.on('end', () => {
      if (Number(reply) !== bytes) return reject(new Error(`sink counted ${reply.trim()} of ${bytes} bytes`));
      resolve(bytes / 1024 / 1024 / (Number(process.hrtime.bigint() - started) / 1e9));
    });
    socket.on('error', reject);
    writeAndEnd(socket, bytes);
  });
}

// Read everything from the socket at `file` (the source writes `bytes`). Resolves with MiB/s.
function download(file: string, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const socket = net.connect({ path: file });
    let received = 0;
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.on('end', () => {
      if (received !== bytes) return reject(new Error(`received ${received} of ${bytes} bytes`));
      resolve(bytes / 1024 / 1024 / (Number(process.hrtime.bigint() - started) / 1e9));
    });
    socket.on('error', reject);
  });
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

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

  const sink = net.createServer({ allowHalfOpen: true }, (socket) => {
    let count = 0;
    socket.on('data', (chunk: Buffer) => (count += chunk.length));
    socket.on('end', () => socket.end(String(count)));
  });
  const source = net.createServer((socket) => {
    socket.on('error', () => {});
    writeAndEnd(socket, bytes);
  });
  await listen(sink, file('sink.sock'));
  await listen(source, file('source.sock'));

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
    const figures = { bareUp: [] as number[], fwdUp: [] as number[], bareDown: [] as number[], fwdDown: [] as number[] };
    // Interleaved, so that load from other processes falls on both alike.
    for (let rep = 0; rep < reps; rep++) {
      figures.bareUp.push(await upload(file('sink.sock'), bytes));
      figures.fwdUp.push(await upload(file('fwd-sink.sock'), bytes));
      figures.bareDown.push(await download(file('source.sock'), bytes));
      figures.fwdDown.push(await download(file('fwd-source.sock'), bytes));
    }
    await Promise.all(forwards.map((f) => f.close()));
    await peer.close();
    const up = median(figures.fwdUp) / median(figures.bareUp);
    const down = median(figures.fwdDown) / median(figures.bareDown);
    console.log(`forwarded stream vs bare UNIX-socket copy, ${mib} MiB, median of ${reps} (MiB/s); load ${machine.loadavgStart}\n`);
    console.log(
      formatTable(
        ['direction', 'bare', 'forwarded', 'ratio', 'runs (bare / forwarded)'],
        [
          ['upload (to the service)', fixed(median(figures.bareUp)), fixed(median(figures.fwdUp)), `${fixed(up * 100, 0)}%`, `${figures.bareUp.map((v) => fixed(v)).join(' ')} / ${figures.fwdUp.map((v) => fixed(v)).join(' ')}`],
          ['download (from it)', fixed(median(figures.bareDown)), fixed(median(figures.fwdDown)), `${fixed(down * 100, 0)}%`, `${figures.bareDown.map((v) => fixed(v)).join(' ')} / ${figures.fwdDown.map((v) => fixed(v)).join(' ')}`],
        ],
      ),
    );
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
    for (const server of [sink, source, channelServer]) server.close();
    work.remove();
  }
}

runBenchmark(main);
