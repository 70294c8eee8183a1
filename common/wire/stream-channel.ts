// The one adapter between node streams (UNIX/TCP sockets, in-memory pairs) and the ByteChannel seam.
import { chmod, chown, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import type { ByteChannel } from './byte-channel.js';
import { ChannelClosedError, ConfigError } from './errors.js';

// Wrap a connected Duplex (a net.Socket, one end of an in-memory pair) as a ByteChannel.
export function createStreamChannel(stream: Duplex, description: string): ByteChannel {
  const closeListeners: Array<(error?: Error) => void> = [];
  let closed = false;
  let closeError: Error | undefined;
  let closing: Promise<void> | undefined;
  const pendingDrains: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];
  // One promise for all the writes waiting on the same drain: a peer that does not read must not cost
  // a promise per queued message (memory-budget.ts).
  let drainWait: Promise<void> | undefined;

  const finish = (error?: Error): void => {
    if (closed) return;
    closed = true;
    closeError = error;
    drainWait = undefined;
    for (const waiter of pendingDrains.splice(0)) {
      waiter.reject(new ChannelClosedError(`channel ${description} closed${error ? `: ${error.message}` : ''}`));
    }
    for (const listener of closeListeners) listener(error);
  };
  stream.on('error', (error: Error) => finish(error));
  stream.on('close', () => finish());
  stream.on('end', () => {
    // The far end finished writing: a half-open channel is of no use to a request/response peer.
    stream.end();
    finish();
  });
  stream.on('drain', () => {
    drainWait = undefined;
    for (const waiter of pendingDrains.splice(0)) waiter.resolve();
  });

  // Corked, several pieces reach the socket as one writev (a frame's header, its payload and its newline
  // are not copied together first).
  const writeChunks = (chunks: readonly Buffer[]): Promise<void> => {
    if (closed) {
      return Promise.reject(new ChannelClosedError(`cannot write to ${description}: the channel is closed${closeError ? ` (${closeError.message})` : ''}`));
    }
    let room = true;
    if (chunks.length === 1) room = stream.write(chunks[0]!);
    else {
      stream.cork();
      for (const chunk of chunks) room = stream.write(chunk);
      stream.uncork();
    }
    if (room) return Promise.resolve();
    drainWait ??= new Promise((resolve, reject) => pendingDrains.push({ resolve, reject }));
    return drainWait;
  };

  return {
    description,
    onData(listener) {
      stream.on('data', (chunk: Buffer | string) => listener(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    },
    onClose(listener) {
      closeListeners.push(listener);
    },
    // A socket copies 256 KiB in a fraction of a millisecond: larger writes cost the control lines
    // behind them little and save a system call and a wake-up of the reader per 64 KiB.
    writeBatchBytes: 256 * 1024,
    write: (chunk) => writeChunks([chunk]),
    writev: writeChunks,
    get pendingWriteBytes() {
      return stream.writableLength;
    },
    pause() {
      stream.pause();
    },
    resume() {
      stream.resume();
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        if (closed || stream.destroyed) {
          finish();
          resolve();
          return;
        }
        stream.once('close', () => resolve());
        stream.end();
        // A peer that never reads must not hold our close forever.
        setTimeout(() => stream.destroy(), 2000).unref();
      });
      return closing;
    },
  };
}

// Connect to a UNIX socket path (or `host:port` for TCP) and wrap it, failing after `timeoutMs`.
export function connectChannel(target: string, timeoutMs: number): Promise<ByteChannel> {
  return new Promise((resolve, reject) => {
    const tcp = /^(?<host>\[[^\]]+\]|[^/:]+):(?<port>\d+)$/.exec(target);
    const socket = tcp?.groups
      ? net.connect({ host: tcp.groups.host!.replace(/^\[|\]$/g, ''), port: Number(tcp.groups.port) })
      : net.connect({ path: target });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ChannelClosedError(`connecting to ${target} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setNoDelay?.(true);
      resolve(createStreamChannel(socket, target));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(describeConnectError(target, error));
    });
  });
}

// Turn a connect errno into a message that says what to do.
export function describeConnectError(target: string, error: NodeJS.ErrnoException): Error {
  const hints: Record<string, string> = {
    ENOENT: 'the socket does not exist (is the guest running, and does it have the negotiator channels?)',
    ECONNREFUSED: 'nothing is listening on it (the guest or daemon is not running)',
    EACCES: 'permission denied: run as root or as a member of the group that owns the socket',
    EPERM: 'permission denied: run as root or as a member of the group that owns the socket',
  };
  const hint = (error.code && hints[error.code]) ?? error.message;
  return new ChannelClosedError(`cannot connect to ${target}: ${hint} (${error.code ?? 'error'})`, { cause: error });
}

export interface ListenOptions {
  /** File mode of the socket (default 0o600: owner only). */
  mode?: number;
  /** Group to give the socket (with mode 0o660, members of it may connect). */
  gid?: number;
}

/** A listening UNIX socket; `close()` stops accepting and removes the socket file. Idempotent. */
export interface ChannelListener {
  readonly path: string;
  close(): Promise<void>;
}

// Listen on a UNIX socket path, handing each connection over as a ByteChannel. A leftover socket file
// from a crashed process is replaced; one that still answers means another process serves it: refused.
export async function listenChannels(socketPath: string, options: ListenOptions, onChannel: (channel: ByteChannel) => void): Promise<ChannelListener> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  if (await socketAnswers(socketPath)) {
    throw new ConfigError(`another process already serves ${socketPath}: is a negotiator daemon already running? Stop it first, or choose another --control-socket`);
  }
  await unlink(socketPath).catch(() => {});
  let count = 0;
  const server = net.createServer((socket) => onChannel(createStreamChannel(socket, `${socketPath}#${++count}`)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // Created owner-only at once (umask), then opened up to the configured mode: no window of wider access.
    const umask = process.umask(0o177);
    try {
      server.listen(socketPath, () => resolve());
    } finally {
      process.umask(umask);
    }
  });
  if (options.gid !== undefined) await chown(socketPath, -1, options.gid);
  await chmod(socketPath, options.mode ?? 0o600);
  let closing: Promise<void> | undefined;
  return {
    path: socketPath,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        void unlink(socketPath).catch(() => {});
      });
      return closing;
    },
  };
}

// True when something accepts connections on the socket path (within 1 s).
function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    const done = (answer: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(false), 1000);
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
