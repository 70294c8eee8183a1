// A ByteChannel over a virtio-serial port's character device, opened once and held for the daemon's life.
//
// How the device behaves (../shared/docs/virtio-serial.md): while the host side is not connected, read()
// returns 0 at once, forever, and poll() reports POLLHUP at once; closing the port discards bytes the host
// sent that we have not read; a read gives at most 4 KiB, a write takes at most 32 KiB. Hence:
// - The fd is O_NONBLOCK and every read and write is a synchronous syscall that returns at once (data,
//   0 or EAGAIN): no call ever waits in a libuv threadpool thread, so nothing can stall the rest of the
//   process or keep it from exiting.
// - When to read next is ./port-read-wakeup.ts: epoll through Node's internal pipe handle while the host is
//   there (./pipe-handle.ts), else a timer; a timer while the host is gone.
// - Host gone (a read returns 0) and back (a later read returns data or EAGAIN): the `onReset` listeners
//   run, then data flows again.
// - Writes (./port-write-queue.ts) while a read says the host is absent are dropped: the driver would
//   refuse them, and QEMU gives a new host a clean stream.
import { constants as fsConstants, readFileSync, readSync } from 'node:fs';
import type { ByteChannel } from '../common/wire/byte-channel.js';
import { ChannelClosedError, ConfigError, errorMessage } from '../common/wire/errors.js';
import { silentLogger, type Logger } from '../common/base/logger.js';
import { hasPipeHandle } from './pipe-handle.js';
import { createReadWakeup, READ_MECHANISMS, type ReadMechanism, type ReadWakeup } from './port-read-wakeup.js';
import { isWouldBlock, PortWriteQueue } from './port-write-queue.js';
import { openPortDevice } from './virtio-ports.js';

export { READ_MECHANISMS, type ReadMechanism };

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
  /** Runs each time a read finds the host gone (at start too, when it is absent then). */
  onAbsent(listener: () => void): void;
  /** What the last read said: undefined before the first read. */
  readonly hostConnected: boolean | undefined;
  readonly readMechanism: ReadMechanism;
}

type ResolvedOptions = Readonly<Required<Omit<PortChannelOptions, 'description' | 'openTimeoutMs'>>>;

// Reads gather into one buffer of this size and are delivered together, once per turn or when it is full:
// a port read gives at most 4 KiB, and every delivery costs the layers above (in an emulated guest, more
// than the bytes).
const GATHER_BYTES = 256 * 1024;
// Gathered bytes are delivered in the gather buffer itself when they fill at least this much of it (the
// buffer is then replaced), else copied out of it: a delivered chunk never holds more than 4x its size.
const HAND_OVER_BYTES = GATHER_BYTES / 4;
// A read is made while at least this much room is left (a port read's most).
const READ_ROOM_BYTES = 4096;
// Reads per event-loop turn before yielding to the rest of the process.
const READS_PER_TURN = 64;

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

/** How often a port is read while the host is absent, at first (then up to 4x; ./port-read-wakeup.ts). */
export const DEFAULT_POLL_INTERVAL_MS = 500;

function resolveOptions(options: PortChannelOptions): ResolvedOptions {
  const resolved = {
    pollIntervalMs: options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS,
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
  if (resolved.readMechanism === 'epoll' && !hasPipeHandle()) {
    throw new ConfigError("The `epoll` read mechanism needs Node's internal pipe handle, which this Node lacks: use `auto` or `poll`.");
  }
  return Object.freeze(resolved);
}

type DrainOutcome = 'empty' | 'gone' | 'more' | 'stopped';

class DeviceChannel implements PortChannel {
  readonly description: string;
  readonly readMechanism: ReadMechanism;
  #fd: number;
  #options: ResolvedOptions;
  #wakeup: ReadWakeup;
  #writes: PortWriteQueue;
  #gather = Buffer.allocUnsafeSlow(GATHER_BYTES);
  #gathered = 0;
  #dataListeners: Array<(chunk: Buffer) => void> = [];
  #closeListeners: Array<(error?: Error) => void> = [];
  #resetListeners: Array<() => void> = [];
  #absentListeners: Array<() => void> = [];
  #hostConnected: boolean | undefined;
  #paused = false;
  #held: Buffer[] = [];
  #closing: Promise<void> | undefined;

  constructor(fd: number, description: string, options: ResolvedOptions) {
    this.#fd = fd;
    this.description = description;
    this.#options = options;
    this.#writes = new PortWriteQueue(fd, description, options.writeHighWaterMark, (error) => this.#fail(error));
    this.#wakeup = createReadWakeup(
      fd,
      { mechanism: options.readMechanism, pollIntervalMs: options.pollIntervalMs, logger: options.logger },
      {
        read: () => this.#pump(),
        onChunk: (chunk) => {
          if (this.#paused || this.#closing) {
            this.#deliver(chunk);
            return this.#afterDrain('stopped');
          }
          this.#gatherChunk(chunk);
          // Paused meanwhile: the chunk waits in the gather buffer, ahead of the next read.
          this.#afterDrain(this.#paused || this.#closing ? 'stopped' : this.#drain());
        },
        onError: (error) => this.#fail(new Error(`Reading ${description} failed: ${error.message}`, { cause: error })),
      },
    );
    this.readMechanism = this.#wakeup.mechanism;
    this.#wakeup.readSoon();
  }

  get hostConnected(): boolean | undefined {
    return this.#hostConnected;
  }

  get pendingWriteBytes(): number {
    return this.#writes.pendingBytes;
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

  /** The host went away (a read returned 0): its peer stops being ready until `onReset`. */
  onAbsent(listener: () => void): void {
    this.#absentListeners.push(listener);
  }

  write(chunk: Buffer): Promise<void> {
    return this.writev([chunk]);
  }

  // The pieces go out in order, without being joined first (./port-write-queue.ts copies only small ones).
  writev(chunks: readonly Buffer[]): Promise<void> {
    if (this.#closing) return Promise.reject(new ChannelClosedError(`Cannot write to ${this.description}: the channel is closed.`));
    const pieces = chunks.filter((chunk) => chunk.length > 0);
    if (pieces.length === 0 || this.#hostConnected === false) return Promise.resolve();
    return this.#writes.pushAll(pieces);
  }

  pause(): void {
    this.#paused = true;
    // Keep looking for an absent host: the other side of a paused peer may be waiting for it.
    if (this.#hostConnected !== false) this.#wakeup.stop();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    while (!this.#paused && this.#held.length > 0) this.#deliver(this.#held.shift() as Buffer);
    if (this.#paused || this.#closing) return;
    this.#wakeup.stop();
    this.#pump();
  }

  close(): Promise<void> {
    return (this.#closing ??= this.#shutdown(undefined));
  }

  #pump(): void {
    const reading = !this.#closing && (!this.#paused || this.#hostConnected === false);
    this.#afterDrain(reading ? this.#drain() : 'stopped');
  }

  // Read until the device has nothing more for now, at most READS_PER_TURN times, and deliver what came
  // (before a change of the host's presence is reported: its bytes came before it).
  #drain(): DrainOutcome {
    for (let reads = 0; reads < READS_PER_TURN; reads++) {
      if (GATHER_BYTES - this.#gathered < READ_ROOM_BYTES && this.#deliverGathered()) return 'stopped';
      let bytesRead: number;
      try {
        bytesRead = readSync(this.#fd, this.#gather, this.#gathered, GATHER_BYTES - this.#gathered, null);
      } catch (error) {
        if (this.#deliverGathered()) return 'stopped';
        if (isWouldBlock(error)) {
          this.#setHostConnected(true);
          return this.#closing ? 'stopped' : 'empty';
        }
        this.#fail(new Error(`Reading ${this.description} failed: ${errorMessage(error)}`, { cause: error }));
        return 'stopped';
      }
      if (bytesRead === 0) {
        // Reported even if that delivery paused the channel: a paused channel still watches an absent host.
        this.#deliverGathered();
        this.#setHostConnected(false);
        return this.#closing ? 'stopped' : 'gone';
      }
      // Back after being absent: the reset listeners run before these bytes are delivered.
      if (this.#hostConnected !== true) this.#setHostConnected(true);
      this.#gathered += bytesRead;
      this.#wakeup.noteData();
    }
    return this.#deliverGathered() ? 'stopped' : 'more';
  }

  // A chunk libuv read (epoll): joins the gathered bytes.
  #gatherChunk(chunk: Buffer): void {
    if (this.#hostConnected !== true) this.#setHostConnected(true);
    this.#wakeup.noteData();
    // A large chunk (not from a port, whose reads are 4 KiB) goes as it is, after what was gathered.
    if (chunk.length >= HAND_OVER_BYTES || GATHER_BYTES - this.#gathered < chunk.length) this.#deliverGathered();
    if (chunk.length >= HAND_OVER_BYTES) return void this.#deliver(chunk);
    this.#gathered += chunk.copy(this.#gather, this.#gathered);
  }

  // Deliver the gathered bytes, if any; true when reading should stop (paused or closing by now).
  #deliverGathered(): boolean {
    if (this.#gathered > 0) {
      const gathered = this.#gather.subarray(0, this.#gathered);
      let chunk: Buffer;
      if (this.#gathered >= HAND_OVER_BYTES) {
        chunk = gathered;
        this.#gather = Buffer.allocUnsafeSlow(GATHER_BYTES);
      } else {
        chunk = Buffer.from(gathered);
      }
      this.#gathered = 0;
      this.#deliver(chunk);
    }
    return this.#paused || this.#closing !== undefined;
  }

  #afterDrain(outcome: DrainOutcome): void {
    if (outcome === 'gone') return this.#wakeup.readWhenHostBack();
    if (outcome === 'stopped' || this.#paused || this.#closing) return this.#wakeup.stop();
    this.#wakeup.readWhenReady(outcome);
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
    if (!connected) this.#writes.dropAll();
    if (connected && !cameBack) return;
    for (const listener of connected ? this.#resetListeners : this.#absentListeners) {
      try {
        listener();
      } catch (error) {
        this.#options.logger.error(`A ${connected ? 'reset' : 'absence'} listener of ${this.description} threw: ${errorMessage(error)}`);
      }
    }
    if (connected) this.#writes.flush();
  }

  #fail(error: Error): void {
    if (this.#closing) return;
    this.#options.logger.error(error.message);
    this.#closing = this.#shutdown(error);
  }

  async #shutdown(error: Error | undefined): Promise<void> {
    this.#wakeup.stop();
    this.#writes.rejectAll(new ChannelClosedError(`${this.description} closed before the bytes were sent.`, { cause: error }));
    await new Promise<void>((resolve) => this.#wakeup.close(resolve));
    for (const listener of this.#closeListeners) {
      try {
        listener(error);
      } catch (listenerError) {
        this.#options.logger.error(`A close listener of ${this.description} threw: ${errorMessage(listenerError)}`);
      }
    }
  }
}
