// A QEMU guest agent (qemu-ga) run without a VM on a UNIX socket, and a minimal QMP-style client for it:
// `guest-sync-delimited` once, then one `{"execute": ...}` line per request and one reply line each.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LineClient } from './line-socket.js';

const QGA_CANDIDATES = ['/usr/sbin/qemu-ga', '/usr/bin/qemu-ga', '/usr/local/bin/qemu-ga', '/usr/local/sbin/qemu-ga'];
const START_TIMEOUT_MS = 5000;
/** The byte qemu-ga's `guest-sync-delimited` puts before its reply (and that resets its parser). */
const SYNC_DELIMITER = 0xff;

// The qemu-ga binary, or undefined when it is not installed.
export function findQemuGa(): string | undefined {
  return QGA_CANDIDATES.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** A running qemu-ga. `stop()` is idempotent. */
export interface QemuGaProcess {
  socketPath: string;
  /** qemu-ga's own CPU time so far (user + system), ms, from /proc. */
  readCpuMs(): Promise<number>;
  stop(): Promise<void>;
}

// Start `qemu-ga -m unix-listen` with its socket and state in `dir`; resolves once it accepts connections.
export async function startQemuGa(binary: string, dir: string): Promise<QemuGaProcess> {
  const socketPath = path.join(dir, 'qga.sock');
  const stateDir = path.join(dir, 'qga-state');
  mkdirSync(stateDir, { recursive: true });
  const child = spawn(binary, ['-m', 'unix-listen', '-p', socketPath, '-t', stateDir, '-f', path.join(stateDir, 'qemu-ga.pid')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`qemu-ga exited at start-up: ${stderr.trim()}`);
    try {
      const probe = await connectUnix(socketPath);
      probe.destroy();
      break;
    } catch (error) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`qemu-ga did not listen on ${socketPath} within ${START_TIMEOUT_MS} ms: ${String(error)}; stderr: ${stderr.trim()}`);
      }
      await sleep(20);
    }
  }
  let stopping: Promise<void> | undefined;
  return {
    socketPath,
    async readCpuMs() {
      // /proc/PID/stat fields 14 and 15: utime and stime in clock ticks (100 per second on Linux).
      const fields = (await readFile(`/proc/${child.pid}/stat`, 'utf8')).replace(/^.*\) /, '').split(' ');
      return (Number(fields[11]) + Number(fields[12])) * 10;
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

function connectUnix(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: socketPath });
    socket.once('connect', () => (socket.off('error', reject), resolve(socket)));
    socket.once('error', reject);
  });
}

/** An error reply of qemu-ga: `{"error": {"class", "desc"}}`. */
export class QgaError extends Error {
  override readonly name = 'QgaError';
}

/** One client connection to qemu-ga, synchronised. One request at a time. */
export interface QgaClient {
  /** Send `{"execute": command, "arguments": args}` and resolve with its `return` value. */
  call(command: string, args?: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

// Connect and synchronise with `guest-sync-delimited` (whatever an earlier client left is skipped).
export async function connectQemuGa(socketPath: string): Promise<QgaClient> {
  const socket = await connectUnix(socketPath);
  const syncId = Math.floor(Math.random() * 2 ** 31);
  const reply = await new Promise<Buffer>((resolve, reject) => {
    let held = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      held = Buffer.concat([held, chunk]);
      const start = held.indexOf(SYNC_DELIMITER);
      const end = start === -1 ? -1 : held.indexOf(0x0a, start);
      if (end === -1) return;
      socket.off('data', onData);
      socket.off('error', reject);
      socket.pause();
      if (end + 1 < held.length) socket.unshift(held.subarray(end + 1));
      resolve(held.subarray(start + 1, end));
    };
    socket.on('data', onData);
    socket.once('error', reject);
    // The leading 0xFF makes qemu-ga drop any half message (it answers it with a parse error, skipped above).
    socket.write(Buffer.concat([Buffer.from([SYNC_DELIMITER]), Buffer.from(JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id: syncId } }) + '\n')]));
  });
  const synced = (JSON.parse(reply.toString('utf8')) as { return?: unknown }).return;
  if (synced !== syncId) throw new Error(`qemu-ga answered guest-sync-delimited with ${JSON.stringify(synced)}, expected ${syncId}`);
  const lines = new LineClient(socket, 'qemu-ga');
  return {
    async call(command, args) {
      const line = await lines.request(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }));
      const message = JSON.parse(line.toString('utf8')) as { return?: unknown; error?: { class?: string; desc?: string } };
      if (message.error) throw new QgaError(`qemu-ga ${command}: ${message.error.class ?? 'error'}: ${message.error.desc ?? ''}`);
      return message.return;
    },
    close: () => lines.close(),
  };
}
