// The write side of a port channel: queued bytes written with non-blocking writeSync, so no write waits in a
// libuv threadpool thread (one blocked there keeps the process from exiting). Not through the pipe handle:
// a libuv write pending when the host leaves is retried on every POLLHUP, a busy loop (./pipe-handle.ts).
// EAGAIN means the host reads slowly (or has just gone): retry on a short backoff timer.
// Copies: a piece of at least a write's size is written from its own memory; smaller pieces (a frame's
// header, a line, a frame's tail and the next one's head) are gathered into one reused buffer and fill it
// up to a write's size. Not writev: the driver has no vectored write, so the kernel would make every piece
// its own write (and its own notification to QEMU). Fresh buffers cost a guest page faults; this one is
// allocated once (docs/benchmarks.md, "Through real virtio-serial").
import { writeSync } from 'node:fs';
import { errorMessage } from '../common/wire/errors.js';

// The virtio_console driver takes at most 32 KiB per write(); more would only be a partial write.
const WRITE_SIZE = 32 * 1024;
// Bytes written per event-loop turn before yielding to the rest of the process.
const WRITE_BYTES_PER_TURN = 1024 * 1024;
// A write retried after EAGAIN waits 1, 2, 4... ms, up to this (the host is there, only slow to read).
const WRITE_RETRY_MAX_MS = 50;

interface QueuedWrite {
  chunk: Buffer;
  offset: number;
  settled: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

const ignore = (): void => {};

/** Does not own the fd. After `rejectAll` it takes nothing more. */
export class PortWriteQueue {
  #fd: number;
  #description: string;
  #highWaterMark: number;
  #onError: (error: Error) => void;
  #queue: QueuedWrite[] = [];
  #pendingBytes = 0;
  #flushing = false;
  #stopped = false;
  #timer: NodeJS.Timeout | undefined;
  #delayMs = 1;
  /** Where small pieces gather into one write; allocated on first need, then reused. */
  #gather: Buffer | undefined;

  constructor(fd: number, description: string, highWaterMark: number, onError: (error: Error) => void) {
    this.#fd = fd;
    this.#description = description;
    this.#highWaterMark = highWaterMark;
    this.#onError = onError;
  }

  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  // Queue `chunk`; resolves once no more than the high-water mark of bytes waits ahead of and with it.
  push(chunk: Buffer): Promise<void> {
    return this.pushAll([chunk]);
  }

  // Queue `chunks` in order as one write: resolves as `push` does for the last of them. The caller must not
  // change them until then.
  pushAll(chunks: readonly Buffer[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const last = chunks.length - 1;
      chunks.forEach((chunk, index) => {
        const settlers = index === last ? { resolve, reject } : { resolve: ignore, reject: ignore };
        this.#queue.push({ chunk, offset: 0, settled: false, ...settlers });
        this.#pendingBytes += chunk.length;
      });
      this.flush();
    });
  }

  // The host is gone: there is no session to deliver to, and the rest of a half-sent message would only
  // confuse the next host. Every queued write resolves.
  dropAll(): void {
    for (const queued of this.#queue) if (!queued.settled) queued.resolve();
    this.#clear();
  }

  // The channel is closing: every write not yet resolved rejects with `error`.
  rejectAll(error: Error): void {
    this.#stopped = true;
    for (const queued of this.#queue) if (!queued.settled) queued.reject(error);
    this.#clear();
  }

  // Write queued bytes until the queue is empty or the device says EAGAIN.
  flush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    let budget = WRITE_BYTES_PER_TURN;
    while (this.#queue.length > 0 && !this.#stopped && !this.#timer) {
      if (budget <= 0) {
        this.#writeLater(0);
        break;
      }
      const chunk = this.#nextChunk();
      let written: number;
      try {
        written = writeSync(this.#fd, chunk, 0, chunk.length, null);
      } catch (error) {
        if (isWouldBlock(error)) {
          this.#writeLater(this.#delayMs);
          this.#delayMs = Math.min(this.#delayMs * 2, WRITE_RETRY_MAX_MS);
        } else {
          this.#onError(new Error(`Writing to ${this.#description} failed: ${errorMessage(error)}`, { cause: error }));
        }
        break;
      }
      this.#delayMs = 1;
      budget -= written;
      this.#consume(written);
    }
    this.#flushing = false;
    this.#settle();
  }

  #clear(): void {
    this.#queue = [];
    this.#pendingBytes = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#delayMs = 1;
  }

  #writeLater(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush();
    }, delayMs);
  }

  // The next write: the head piece's own bytes while a whole write's worth is left in it (or it is the
  // last piece), else the pieces from the head on copied into the gather buffer, up to a write's size.
  #nextChunk(): Buffer {
    const head = this.#queue[0] as QueuedWrite;
    const first = head.chunk.subarray(head.offset, head.offset + WRITE_SIZE);
    if (first.length === WRITE_SIZE || this.#queue.length === 1) return first;
    const gather = (this.#gather ??= Buffer.allocUnsafeSlow(WRITE_SIZE));
    let size = first.copy(gather, 0);
    for (let index = 1; index < this.#queue.length && size < WRITE_SIZE; index++) {
      size += (this.#queue[index] as QueuedWrite).chunk.copy(gather, size, 0, WRITE_SIZE - size);
    }
    return gather.subarray(0, size);
  }

  #consume(written: number): void {
    this.#pendingBytes -= written;
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
  #settle(): void {
    let queuedBytes = 0;
    for (const queued of this.#queue) {
      queuedBytes += queued.chunk.length - queued.offset;
      if (queuedBytes > this.#highWaterMark) return;
      if (!queued.settled) {
        queued.settled = true;
        queued.resolve();
      }
    }
  }
}

export function isWouldBlock(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK';
}
