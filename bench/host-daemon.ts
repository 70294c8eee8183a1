// The real host daemon for the end-to-end benchmarks: `node dist/host/cli.js --daemon` as its own process,
// and a control-socket client in this process (the same RpcPeer a CLI opens, kept for many requests).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectToDaemon } from '../common/cli/client.js';
import type { GuestStatus } from '../host/guest-model.js';
import { METHODS } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import { benchAgentInfo } from './bench-agent.js';

export const HOST_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'host', 'cli.js');
export const GUEST_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'guest', 'cli.js');

const READY = /ready: control socket/;
const LOG_TAIL_CHARS = 4000;

const MEMORY_MARK = '@@bench-memory ';
// Loaded before the daemon's own modules: on SIGUSR2 (unused by negotiator) it writes the daemon's memory
// split (process.memoryUsage: V8 heap, external, array buffers) as one line to stderr. Nothing else.
const MEMORY_PRELOAD = `process.on('SIGUSR2', () => process.stderr.write('${MEMORY_MARK}' + JSON.stringify(process.memoryUsage()) + '\\n'));`;
const MEMORY_PRELOAD_ARGS = ['--import', `data:text/javascript,${encodeURIComponent(MEMORY_PRELOAD)}`];

/** process.memoryUsage() of the daemon, MiB. */
export interface DaemonMemoryUsage {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** A running daemon; `stop()` (SIGTERM, SIGKILL after 10 s) is idempotent. */
export interface HostDaemonProcess {
  readonly pid: number;
  readonly controlSocket: string;
  /** ms from spawn to its ready line. */
  readonly startMs: number;
  /** The end of its log, for error messages. */
  logTail(): string;
  /** Ask the daemon for its process.memoryUsage() (through the SIGUSR2 preload). */
  readMemoryUsage(): Promise<DaemonMemoryUsage>;
  stop(): Promise<void>;
}

export interface HostDaemonSpec {
  controlSocket: string;
  commandsDir: string;
  /** `NAME=DIR` static guests. */
  guests: readonly string[];
  extraArgs?: readonly string[];
  /** node options for the daemon (`--max-semi-space-size=1`, ...). */
  nodeArgs?: readonly string[];
  startTimeoutMs?: number;
}

// Start `negotiator-host --daemon --no-libvirt` with static guests; resolves at its ready line.
export async function startHostDaemon(spec: HostDaemonSpec): Promise<HostDaemonProcess> {
  const args = [
    ...(spec.nodeArgs ?? []),
    ...MEMORY_PRELOAD_ARGS,
    HOST_CLI,
    '--daemon',
    '--no-libvirt',
    '--control-socket',
    spec.controlSocket,
    '--commands-dir',
    spec.commandsDir,
    ...spec.guests.flatMap((guest) => ['--guest', guest]),
    ...(spec.extraArgs ?? []),
  ];
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  let log = '';
  let ready = false;
  let onReady: (() => void) | undefined;
  const memoryWaiters: Array<(usage: DaemonMemoryUsage) => void> = [];
  let partial = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    for (let end = partial.indexOf('\n'); end !== -1; end = partial.indexOf('\n')) {
      const line = partial.slice(0, end);
      partial = partial.slice(end + 1);
      if (!line.startsWith(MEMORY_MARK)) continue;
      const bytes = JSON.parse(line.slice(MEMORY_MARK.length)) as Record<keyof DaemonMemoryUsage, number>;
      const mib = (key: keyof DaemonMemoryUsage): number => Math.round((bytes[key] / 1024 / 1024) * 10) / 10;
      memoryWaiters.shift()?.({ rss: mib('rss'), heapTotal: mib('heapTotal'), heapUsed: mib('heapUsed'), external: mib('external'), arrayBuffers: mib('arrayBuffers') });
    }
    log = (log + chunk).slice(-LOG_TAIL_CHARS * 4);
    if (!ready && READY.test(log)) {
      ready = true;
      onReady?.();
    }
  });
  const exited = once(child, 'exit');
  const timeoutMs = spec.startTimeoutMs ?? 60_000;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`the host daemon was not ready within ${timeoutMs} ms; its log:\n${log.slice(-LOG_TAIL_CHARS)}`)), timeoutMs);
    const fail = (error: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    onReady = () => (clearTimeout(timer), resolve());
    if (ready) onReady();
    void exited.then(([code, signal]) => {
      if (!ready) fail(new Error(`the host daemon exited (code ${code}, signal ${signal}) before it was ready:\n${log.slice(-LOG_TAIL_CHARS)}`));
    });
  });
  const startMs = performance.now() - started;
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid!,
    controlSocket: spec.controlSocket,
    startMs,
    logTail: () => log.slice(-LOG_TAIL_CHARS),
    readMemoryUsage() {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the host daemon did not report its memory within 5 s')), 5000);
        memoryWaiters.push((usage) => (clearTimeout(timer), resolve(usage)));
        child.kill('SIGUSR2');
      });
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

// Open a control-socket peer on a running daemon, handshake done (as negotiator-host --execute does).
export async function connectControl(controlSocket: string, requestTimeoutMs = 60_000): Promise<RpcPeer> {
  const peer = await connectToDaemon(controlSocket, { localInfo: benchAgentInfo('host'), requestTimeoutMs, groupHint: 'run the benchmark as root' });
  if (!peer) throw new Error(`no host daemon answers on ${controlSocket}`);
  await peer.waitForReady(10_000);
  return peer;
}

// The daemon's view of its guests (`--list-guests`).
export async function listGuests(control: RpcPeer): Promise<GuestStatus[]> {
  return ((await control.request(METHODS.listGuests, {})) as { guests: GuestStatus[] }).guests;
}

// Resolve once `count` guests have a guest agent connected; the time it took, ms.
export async function waitForConnectedGuests(control: RpcPeer, count: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const guests = await listGuests(control);
    const connected = guests.filter((guest) => guest.agent !== null).length;
    if (connected >= count) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error(`only ${connected} of ${count} guests connected after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
