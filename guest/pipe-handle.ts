// The one internal Node binding this project uses, kept here alone: libuv's pipe handle from
// `process.binding('pipe_wrap')` (deprecated, DEP0111; a warning only under --pending-deprecation), opened
// on a virtio-serial port's fd so that epoll says when data comes. There is no public way: net.Socket
// refuses a character device (ERR_INVALID_FD_TYPE), tty.ReadStream needs a tty, and fs streams hold a
// threadpool thread per pending read (../shared/docs/virtio-serial.md).
//
// Checked on every Node line the project supports (20, 24, 26) by test/guest/port-channel.test.ts, which
// runs its cases through this handle and through the public fallback (readSync on a timer). A Node without
// the binding, or with a different shape, gets undefined from `loadPipeBinding` and the fallback.
//
// Hazards, found in the lab VM:
// - Not wrapped in net.Socket({ handle }): that closes the fd at the first 0-byte read, which libuv reports
//   early (POLLHUP after a short read) while the host's last bytes are still queued; it lost about half of
//   1 MiB the host sent just before leaving.
// - Only reading goes through the handle: a libuv write pending when the host leaves is retried on every
//   POLLHUP, a busy loop (100% CPU).
// - Start reading only after a read said EAGAIN (host there): with the host absent the fd reports POLLHUP
//   at once, every time, and a started handle would spin the same way.
import { getSystemErrorName } from 'node:util';

export interface EpollReader {
  /** Call onChunk as data comes; stops by itself (onEnd or onError) at a 0-byte read or an error. */
  start(): void;
  stop(): void;
  /** Closes the fd too. */
  close(callback: () => void): void;
}

export interface EpollCallbacks {
  onChunk(chunk: Buffer): void;
  /** A 0-byte read; reading has stopped. */
  onEnd(): void;
  onError(error: Error): void;
}

interface PipeHandle {
  open(fd: number): number;
  readStart(): number;
  readStop(): number;
  close(callback?: () => void): void;
  onread: ((arrayBuffer: ArrayBuffer | undefined) => void) | undefined;
}

interface PipeBinding {
  Pipe: new (type: number) => PipeHandle;
  pipeSocketType: number;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
}

// Whether this Node has a pipe handle of the shape this file relies on.
export function hasPipeHandle(): boolean {
  return loadPipeBinding() !== undefined;
}

// A reader on `fd` through the pipe handle, or undefined when this Node lacks it or libuv refuses the fd.
// On success the reader owns the fd (its close() closes it).
export function createEpollReader(fd: number, callbacks: EpollCallbacks): EpollReader | undefined {
  const binding = loadPipeBinding();
  if (!binding) return undefined;
  const { Pipe, pipeSocketType, streamBaseState, kReadBytesOrError, kArrayBufferOffset } = binding;
  const handle = new Pipe(pipeSocketType);
  if (handle.open(fd) !== 0) {
    handle.close();
    return undefined;
  }
  handle.onread = (arrayBuffer) => {
    const nread = streamBaseState[kReadBytesOrError] ?? 0;
    if (nread > 0 && arrayBuffer) {
      callbacks.onChunk(Buffer.from(arrayBuffer, streamBaseState[kArrayBufferOffset] ?? 0, nread));
    } else if (nread < 0) {
      handle.readStop();
      if (getSystemErrorName(nread) === 'EOF') callbacks.onEnd();
      else callbacks.onError(new Error(`${getSystemErrorName(nread)} (libuv ${nread})`));
    }
  };
  return {
    start: () => {
      const status = handle.readStart();
      if (status !== 0) callbacks.onError(new Error(`readStart failed: ${getSystemErrorName(status)}`));
    },
    stop: () => void handle.readStop(),
    close: (callback) => handle.close(callback),
  };
}

let pipeBinding: PipeBinding | null | undefined;

function loadPipeBinding(): PipeBinding | undefined {
  if (pipeBinding === undefined) pipeBinding = findPipeBinding() ?? null;
  return pipeBinding ?? undefined;
}

// process.binding('pipe_wrap'), checked for the shape used above; undefined when missing or different.
function findPipeBinding(): PipeBinding | undefined {
  const binding = (process as unknown as { binding?: (name: string) => unknown }).binding;
  if (typeof binding !== 'function') return undefined;
  try {
    const pipeWrap = binding.call(process, 'pipe_wrap') as Record<string, unknown>;
    const streamWrap = binding.call(process, 'stream_wrap') as Record<string, unknown>;
    const constants = pipeWrap.constants as Record<string, unknown> | undefined;
    const { streamBaseState, kReadBytesOrError, kArrayBufferOffset } = streamWrap;
    if (
      typeof pipeWrap.Pipe !== 'function' ||
      typeof constants?.SOCKET !== 'number' ||
      !(streamBaseState instanceof Int32Array) ||
      typeof kReadBytesOrError !== 'number' ||
      typeof kArrayBufferOffset !== 'number'
    ) {
      return undefined;
    }
    const Pipe = pipeWrap.Pipe as PipeBinding['Pipe'];
    if (typeof Pipe.prototype.open !== 'function' || typeof Pipe.prototype.readStart !== 'function') return undefined;
    return { Pipe, pipeSocketType: constants.SOCKET, streamBaseState, kReadBytesOrError, kArrayBufferOffset };
  } catch {
    // --throw-deprecation with --pending-deprecation lands here: the public fallback still works.
    return undefined;
  }
}
