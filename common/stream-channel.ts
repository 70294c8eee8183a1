// The one adapter between node streams (UNIX/TCP sockets, in-memory pairs) and the ByteChannel seam.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ByteChannel } from './byte-channel.js';
import { ChannelClosedError } from './errors.js';

// Wrap a connected Duplex (a net.Socket, one end of an in-memory pair) as a ByteChannel.
export function createStreamChannel(stream: Duplex, description: string): ByteChannel {
  const closeListeners: Array<(error?: Error) => void> = [];
  let closed = false;
  let closeError: Error | undefined;
  let closing: Promise<void> | undefined;
  const pendingDrains: Array<{ resolve: () => void; reject: (error: Error) => void }> = [];

  const finish = (error?: Error): void => {
    if (closed) return;
    closed = true;
    closeError = error;
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
    for (const waiter of pendingDrains.splice(0)) waiter.resolve();
  });

  return {
    description,
    onData(listener) {
      stream.on('data', (chunk: Buffer | string) => listener(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
    },
    onClose(listener) {
      closeListeners.push(listener);
    },
    write(chunk) {
      if (closed) {
        return Promise.reject(new ChannelClosedError(`cannot write to ${description}: the channel is closed${closeError ? ` (${closeError.message})` : ''}`));
      }
      if (stream.write(chunk)) return Promise.resolve();
      return new Promise((resolve, reject) => pendingDrains.push({ resolve, reject }));
    },
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
