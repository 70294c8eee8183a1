// A ByteChannel over a virtio-serial port's character device, opened once and held for the daemon's life.
//
// How the device behaves (../shared/docs/virtio-serial.md): while the host side is not connected, read()
// returns 0 at once, forever, and poll() reports POLLHUP at once; closing the port discards bytes the host
// sent that we have not read; a read gives at most 4 KiB, a write takes at most 32 KiB. Hence:
// - The fd is O_NONBLOCK and every read and write is a synchronous syscall that returns at once (data,
//   0 or EAGAIN): no call ever waits in a libuv threadpool thread, so nothing can stall the rest of the
//   process or keep it from exiting.
// - Host there: epoll says when data comes (libuv's internal pipe handle, the only way Node polls a
//   character device; see createEpollReader). Without it, reads poll with a backoff up to `pollIntervalMs`.
// - Host gone (a read returns 0): one read every `pollIntervalMs` until it returns data or EAGAIN, which
//   means the host is back: the `onReset` listeners run, then data flows again. Nothing in the kernel
//   wakes a process when the host comes back, so this timer is the one cost of an idle channel.
// - Writes: EAGAIN (the host reads slowly) retries on a short backoff timer. Writes while a read says the
//   host is absent are dropped: the driver would refuse them, and QEMU gives a new host a clean stream.
import { close as closeFd, constants as fsConstants, readFileSync, readSync, writeSync } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import type { ByteChannel } from '../common/wire/byte-channel.js';
import { ChannelClosedError, ConfigError, errorMessage } from '../common/wire/errors.js';
import { silentLogger, type Logger } from '../common/base/logger.js';
import { openPortDevice } from './virtio-ports.js';

export const READ_MECHANISMS = ['epoll', 'poll'] as const;
export type ReadMechanism = (typeof READ_MECHANISMS)[number];

export interface PortChannelOptions {
  /** For logs and errors. Default: the device path. */
  description?: string;
  /** `openPortChannel`: how long to retry while another process holds the port (EBUSY). Default 10000. */
  openTimeoutMs?: number;
  /**
   * The longest wait between two reads when nothing wakes us: while the host is absent (it has no way to
   * say it is back), and with the `poll` mechanism while it is quiet. Default 500.
   */
  pollIntervalMs?: number;
  /** `write()` resolves at once while no more than this many bytes wait to be sent. Default 65536. */
  writeHighWaterMark?: number;
  /** `auto` (default): `epoll` when this Node has the internal pipe handle, else `poll`. */
  readMechanism?: 'auto' | ReadMechanism;
  logger?: Logger;
}

/**
 * A ByteChannel on a device held open until `close()`.
 *
 * The host can go away and come back. While a read says it is absent, bytes written and not yet sent are
 * discarded and their `write()`s resolve: there is no session to deliver them to. `onReset` listeners
 * run when a read finds the host back after a read found it absent (at start too). While paused, the
 * channel reads nothing, except that it keeps looking for an absent host (holding what that read brings).
 */
export interface PortChannel extends ByteChannel {
  onReset(listener: () => void): void;
  /** What the last read said: undefined before the first read. */
  readonly hostConnected: boolean | undefined;
  readonly readMechanism: ReadMechanism;
}

type ResolvedOptions = Readonly<Required<Omit<PortChannelOptions, 'description' | 'openTimeoutMs'>>>;

const READ_SIZE = 64 * 1024;
// Reads per event-loop turn before yielding to the rest of the process (a port read gives at most 4 KiB).
const READS_PER_TURN = 64;
// The virtio_console driver takes at most 32 KiB per write(); more would only be a partial write.
const WRITE_SIZE = 32 * 1024;
const WRITE_BYTES_PER_TURN = 1024 * 1024;
// A write retried after EAGAIN waits 1, 2, 4... ms, up to this (the host is there, only slow to read).
const WRITE_RETRY_MAX_MS = 50;

// Open `devicePath` (retrying while another process holds it) and hold it in a PortChannel.
export async function openPortChannel(devicePath: string, options: PortChannelOptions = {}): Promise<PortChannel> {
  const resolved = resolveOptions(options);
  const description = options.description ?? devicePath;
  const fd = await openPortDevice(devicePath, { openTimeoutMs: options.openTimeoutMs, description, logger: resolved.logger });
  return new DeviceChannel(fd, description, resolved);
}

// Hold an fd the caller opened with O_NONBLOCK in a PortChannel, which now owns it and closes it.
export function createDeviceChannel(fd: number, options: PortChannelOptions = {}): PortChannel {
  const resolved = resolveOptions(options);
  assertNonBlocking(fd);
  return new DeviceChannel(fd, options.description ?? `fd ${fd}`, resolved);
}

// A blocking fd would make reads wait in the event loop itself: refuse one (Linux shows the flags in fdinfo).
function assertNonBlocking(fd: number): void {
  let info: string;
  try {
    info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  } catch {
    return;
  }
  const flags = /^flags:\s+([0-7]+)$/m.exec(info)?.[1];
  if (flags !== undefined && (Number.parseInt(flags, 8) & fsConstants.O_NONBLOCK) === 0) {
    throw new ConfigError(`Expected fd ${fd} to be open with \`O_NONBLOCK\` (add \`fs.constants.O_NONBLOCK\` to the open flags).`);
  }
}

function resolveOptions(options: PortChannelOptions): ResolvedOptions {
  const resolved = {
    pollIntervalMs: options.pollIntervalMs ?? 500,
    writeHighWaterMark: options.writeHighWaterMark ?? 64 * 1024,
    readMechanism: options.readMechanism ?? 'auto',
    logger: options.logger ?? silentLogger,
  };
  if (!Number.isInteger(resolved.pollIntervalMs) || resolved.pollIntervalMs <= 0) {
    throw new ConfigError(`Expected the \`pollIntervalMs\` option to be a positive integer, got \`${resolved.pollIntervalMs}\`.`);
  }
  if (!Number.isInteger(resolved.writeHighWaterMark) || resolved.writeHighWaterMark < 0) {
    throw new ConfigError(`Expected the \`writeHighWaterMark\` option to be a non-negative integer, got \`${resolved.writeHighWaterMark}\`.`);
  }
  if (!['auto', ...READ_MECHANISMS].includes(resolved.readMechanism)) {
    throw new ConfigError(`Expected the \`readMechanism\` option to be auto, epoll or poll, got \`${resolved.readMechanism}\`.`);
  }
  if (resolved.readMechanism === 'epoll' && !loadPipeBinding()) {
    throw new ConfigError("The `epoll` read mechanism needs Node's internal pipe handle, which this Node lacks: use `auto` or `poll`.");
  }
  return Object.freeze(resolved);
}

type DrainOutcome = 'empty' | 'gone' | 'more' | 'stopped';

interface QueuedWrite {
  chunk: Buffer;
  offset: number;
  settled: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

class DeviceChannel implements PortChannel {
  readonly description: string;
  readonly readMechanism: ReadMechanism;
  #fd: number;
  #options: ResolvedOptions;
  #epoll: EpollReader | undefined;
  #watching = false;
  #readTimer: NodeJS.Timeout | undefined;
  #readBuffer = Buffer.allocUnsafe(READ_SIZE);
  #pollDelayMs = 1;
  #dataListeners: Array<(chunk: Buffer) => void> = [];
  #closeListeners: Array<(error?: Error) => void> = [];
  #resetListeners: Array<() => void> = [];
  #hostConnected: boolean | undefined;
  #paused = false;
  #held: Buffer[] = [];
  #queue: QueuedWrite[] = [];
  #pendingWriteBytes = 0;
  #flushing = false;
  #writeTimer: NodeJS.Timeout | undefined;
  #writeDelayMs = 1;
  #closing: Promise<void> | undefined;

  constructor(fd: number, description: string, options: ResolvedOptions) {
    this.#fd = fd;
    this.description = description;
    this.#options = options;
    this.#epoll =
      options.readMechanism === 'poll'
        ? undefined
        : createEpollReader(fd, {
            onChunk: (chunk) => {
              this.#deliver(chunk);
              this.#afterDrain(this.#paused || this.#closing ? 'stopped' : this.#drain());
            },
            // libuv saw a 0-byte read (it also reports one early, after a short read with POLLHUP): read on
            // to drain what may be left and to learn whether the host is gone.
            onEnd: () => {
              this.#watching = false;
              this.#pump();
            },
            onError: (error) => this.#fail(new Error(`Reading ${description} failed: ${error.message}`, { cause: error })),
          });
    this.readMechanism = this.#epoll ? 'epoll' : 'poll';
    // Not now: the caller attaches its listeners first.
    this.#readLater(0);
  }

  get hostConnected(): boolean | undefined {
    return this.#hostConnected;
  }

  get pendingWriteBytes(): number {
    return this.#pendingWriteBytes;
  }

  onData(listener: (chunk: Buffer) => void): void {
    this.#dataListeners.push(listener);
  }

  onClose(listener: (error?: Error) => void): void {
    this.#closeListeners.push(listener);
  }

  onReset(listener: () => void): void {
    this.#resetListeners.push(listener);
  }

  write(chunk: Buffer): Promise<void> {
    if (this.#closing) return Promise.reject(new ChannelClosedError(`Cannot write to ${this.description}: the channel is closed.`));
    if (chunk.length === 0 || this.#hostConnected === false) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ chunk, offset: 0, settled: false, resolve, reject });
      this.#pendingWriteBytes += chunk.length;
      this.#flush();
    });
  }

  pause(): void {
    this.#paused = true;
    // Keep looking for an absent host: the other side of a paused peer may be waiting for it.
    if (this.#hostConnected !== false) this.#stopReading();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    while (!this.#paused && this.#held.length > 0) this.#deliver(this.#held.shift() as Buffer);
    if (this.#paused || this.#closing) return;
    this.#stopReading();
    this.#pump();
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#shutdown(undefined));
  }

  #pump(): void {
    this.#readTimer = undefined;
    const reading = !this.#closing && (!this.#paused || this.#hostConnected === false);
    this.#afterDrain(reading ? this.#drain() : 'stopped');
  }

  // Read until the device has nothing more for now, at most READS_PER_TURN times.
  #drain(): DrainOutcome {
    for (let reads = 0; reads < READS_PER_TURN; reads++) {
      let bytesRead: number;
      try {
        bytesRead = readSync(this.#fd, this.#readBuffer, 0, READ_SIZE, null);
      } catch (error) {
        if (isWouldBlock(error)) {
          this.#setHostConnected(true);
          return this.#closing ? 'stopped' : 'empty';
        }
        this.#fail(new Error(`Reading ${this.description} failed: ${errorMessage(error)}`, { cause: error }));
        return 'stopped';
      }
      if (bytesRead === 0) {
        this.#setHostConnected(false);
        return this.#closing ? 'stopped' : 'gone';
      }
      this.#setHostConnected(true);
      this.#pollDelayMs = 1;
      this.#deliver(Buffer.from(this.#readBuffer.subarray(0, bytesRead)));
      if (this.#paused || this.#closing) return 'stopped';
    }
    return 'more';
  }

  #afterDrain(outcome: DrainOutcome): void {
    if (outcome === 'gone') {
      this.#stopReading();
      return this.#readLater(this.#options.pollIntervalMs);
    }
    if (outcome === 'stopped' || this.#paused || this.#closing) return this.#stopReading();
    if (this.#epoll) {
      // Level-triggered: with bytes left ('more'), epoll reports the fd again on the next turn.
      if (!this.#watching) this.#epoll.start();
      this.#watching = true;
    } else if (outcome === 'more') {
      this.#readLater(0);
    } else {
      this.#readLater(this.#pollDelayMs);
      this.#pollDelayMs = Math.min(this.#pollDelayMs * 2, this.#options.pollIntervalMs);
    }
  }

  #readLater(delayMs: number): void {
    clearTimeout(this.#readTimer);
    this.#readTimer = setTimeout(() => this.#pump(), delayMs);
  }

  #stopReading(): void {
    clearTimeout(this.#readTimer);
    this.#readTimer = undefined;
    if (this.#watching) this.#epoll?.stop();
    this.#watching = false;
  }

  #deliver(chunk: Buffer): void {
    if (this.#paused) {
      this.#held.push(chunk);
      return;
    }
    for (const listener of this.#dataListeners) {
      try {
        listener(chunk);
      } catch (error) {
        this.#options.logger.error(`A data listener of ${this.description} threw: ${errorMessage(error)}`);
      }
    }
  }

  #setHostConnected(connected: boolean): void {
    if (this.#hostConnected === connected) return;
    const cameBack = this.#hostConnected === false;
    this.#hostConnected = connected;
    this.#options.logger.debug(`${this.description}: host ${connected ? 'connected' : 'not connected'}`);
    if (!connected) {
      // No session to deliver to; the rest of a half-sent message would only confuse the next host.
      for (const queued of this.#queue) if (!queued.settled) queued.resolve();
      this.#queue = [];
      this.#pendingWriteBytes = 0;
      clearTimeout(this.#writeTimer);
      this.#writeTimer = undefined;
      this.#writeDelayMs = 1;
      return;
    }
    if (!cameBack) return;
    for (const listener of this.#resetListeners) {
      try {
        listener();
      } catch (error) {
        this.#options.logger.error(`A reset listener of ${this.description} threw: ${errorMessage(error)}`);
      }
    }
    this.#flush();
  }

  // Write queued bytes until the queue is empty or the device says EAGAIN.
  #flush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    let budget = WRITE_BYTES_PER_TURN;
    while (this.#queue.length > 0 && !this.#closing && !this.#writeTimer) {
      if (budget <= 0) {
        this.#writeLater(0);
        break;
      }
      const chunk = this.#nextWriteChunk();
      let written: number;
      try {
        written = writeSync(this.#fd, chunk, 0, chunk.length, null);
      } catch (error) {
        if (isWouldBlock(error)) {
          // The host reads slowly, or has just gone: back off.
          this.#writeLater(this.#writeDelayMs);
          this.#writeDelayMs = Math.min(this.#writeDelayMs * 2, WRITE_RETRY_MAX_MS);
        } else {
          this.#fail(new Error(`Writing to ${this.description} failed: ${errorMessage(error)}`, { cause: error }));
        }
        break;
      }
      this.#writeDelayMs = 1;
      budget -= written;
      this.#consume(written);
    }
    this.#flushing = false;
    this.#settleWrites();
  }

  #writeLater(delayMs: number): void {
    this.#writeTimer = setTimeout(() => {
      this.#writeTimer = undefined;
      this.#flush();
    }, delayMs);
  }

  #nextWriteChunk(): Buffer {
    const head = this.#queue[0] as QueuedWrite;
    const first = head.chunk.subarray(head.offset, head.offset + WRITE_SIZE);
    if (first.length === WRITE_SIZE || this.#queue.length === 1) return first;
    const pieces = [first];
    let size = first.length;
    for (let index = 1; index < this.#queue.length && size < WRITE_SIZE; index++) {
      const piece = (this.#queue[index] as QueuedWrite).chunk.subarray(0, WRITE_SIZE - size);
      pieces.push(piece);
      size += piece.length;
    }
    return Buffer.concat(pieces, size);
  }

  #consume(written: number): void {
    this.#pendingWriteBytes -= written;
    while (written > 0) {
      const head = this.#queue[0] as QueuedWrite;
      const taken = Math.min(written, head.chunk.length - head.offset);
      head.offset += taken;
      written -= taken;
      if (head.offset === head.chunk.length) {
        this.#queue.shift();
        if (!head.settled) head.resolve();
      }
    }
  }

  // Resolve the writes that fit under the high-water mark, oldest first.
  #settleWrites(): void {
    let queuedBytes = 0;
    for (const queued of this.#queue) {
      queuedBytes += queued.chunk.length - queued.offset;
      if (queuedBytes > this.#options.writeHighWaterMark) return;
      if (!queued.settled) {
        queued.settled = true;
        queued.resolve();
      }
    }
  }

  #fail(error: Error): void {
    if (this.#closing) return;
    this.#options.logger.error(error.message);
    this.#closing = this.#shutdown(error);
  }

  async #shutdown(error: Error | undefined): Promise<void> {
    this.#stopReading();
    clearTimeout(this.#writeTimer);
    const closed = new ChannelClosedError(`${this.description} closed before the bytes were sent.`, { cause: error });
    for (const queued of this.#queue) if (!queued.settled) queued.reject(closed);
    this.#queue = [];
    this.#pendingWriteBytes = 0;
    await new Promise<void>((resolve) => (this.#epoll ? this.#epoll.close(resolve) : closeFd(this.#fd, () => resolve())));
    for (const listener of this.#closeListeners) {
      try {
        listener(error);
      } catch (listenerError) {
        this.#options.logger.error(`A close listener of ${this.description} threw: ${errorMessage(listenerError)}`);
      }
    }
  }
}

interface EpollReader {
  start(): void;
  stop(): void;
  /** Closes the fd too. */
  close(callback: () => void): void;
}

interface EpollCallbacks {
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

// The one internal binding this project uses, kept here alone: libuv's pipe handle opened on the device's fd,
// so that epoll says when data comes (net.Socket refuses a character device with ERR_INVALID_FD_TYPE). Not
// wrapped in net.Socket({ handle }): that closes the fd at the first 0-byte read, which libuv reports early
// (POLLHUP after a short read) while the host's last bytes are still queued; measured in the lab VM, it lost
// about half of 1 MiB the host sent just before leaving. Only reading goes through the handle: a libuv write
// pending when the host leaves is retried on every POLLHUP, a busy loop (measured: 100% CPU). The handle is
// only started after a read said EAGAIN, so the fd is one epoll supports. Returns undefined when this Node
// lacks the binding; the caller then polls with readSync, a public API.
function createEpollReader(fd: number, callbacks: EpollCallbacks): EpollReader | undefined {
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

interface PipeBinding {
  Pipe: new (type: number) => PipeHandle;
  pipeSocketType: number;
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
}

let pipeBinding: PipeBinding | null | undefined;

// process.binding('pipe_wrap'), checked for the shape this file relies on; undefined when missing or different.
function loadPipeBinding(): PipeBinding | undefined {
  if (pipeBinding === undefined) pipeBinding = findPipeBinding() ?? null;
  return pipeBinding ?? undefined;
}

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
    return undefined;
  }
}

function isWouldBlock(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK';
}

