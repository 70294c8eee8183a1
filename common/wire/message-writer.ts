// The sending half of a peer (vscode-jsonrpc's "writer"): messages become lines (and, negotiated, bulk
// frames) written to the channel. It also owns the defence against a peer that does not read: what we
// hold for it (unsent bytes, each queued write's overhead, requests in flight, relay buffers;
// memory-budget.ts) is counted, and past its share, or while the whole process is over its budget, we
// stop reading that peer (its requests are what makes our replies) until half of it has drained.
//
// Scheduling: control lines go to the channel at once; bulk messages (a command's or a stream's bytes)
// wait in one queue per request / stream id and are handed to the channel one chunk at a time, taking
// the ids in turn. So the channel never holds more than about one chunk of bulk ahead of a ping, and
// one big transfer does not starve another. Hazard: a message about an id (a response, an eof, a
// stream's end) must not overtake that id's queued bytes, so it joins the id's queue instead.
import { encodeBulkLine } from './bulk-line.js';
import { DEFAULT_WRITE_BATCH_BYTES, type ByteChannel } from './byte-channel.js';
import { errorMessage } from './errors.js';
import { FRAME_END, FRAME_MAX_PAYLOAD, encodeFrameHeader } from './frame-codec.js';
import { BUDGET_FLOOR_BYTES, WRITE_OVERHEAD_BYTES, type MemoryBudget } from './memory-budget.js';
import type { BulkMessage } from './peer-options.js';
import { ERROR_CODES, isRecord } from './protocol.js';
import type { Logger } from '../base/logger.js';

export interface MessageWriterOptions {
  /** Name of the channel / peer for log lines. */
  label: string;
  logger: Logger;
  /** Bytes held for this peer (see memory-budget.ts) above which reading from it pauses. */
  maxWriteBacklogBytes: number;
  /** The process-wide budget this connection's holdings count against. */
  budget: MemoryBudget;
  /** A write failed: the channel is unusable (called at most once per failure; the owner closes). */
  onWriteFailed(error: unknown): void;
}

/**
 * Bulk an id may have queued before its sender's next sendBulk waits for the writing: one largest chunk
 * (MAX_CHUNK_BYTES, protocol.ts), so a sender handing over a socket read or a pipe read at a time keeps
 * one queued while the previous is written, instead of waiting for each.
 */
export const BULK_AHEAD_BYTES = 256 * 1024;

interface QueuedWrite {
  /** Written together, in order: a line; or a frame's header, its payload (the sender's buffer) and FRAME_END. */
  parts: readonly Buffer[];
  bytes: number;
  /** Settles the caller's promise once the bytes are handed to the channel (or dropped). */
  done?: () => void;
}

/** One id's queued bulk and the bytes it holds. */
interface IdQueue {
  items: QueuedWrite[];
  bytes: number;
}

/** Writes lines for one peer. Lifecycle: `stop()` once the peer is closed; later writes are dropped. */
export class MessageWriter {
  readonly #channel: ByteChannel;
  readonly #options: MessageWriterOptions;
  #stopped = false;
  #paused = false;
  #frames = false;
  /** Bulk waiting to be written, by id key, in the order the ids take turns. */
  readonly #queues = new Map<string, IdQueue>();
  #queuedBytes = 0;
  #pumping = false;
  /** Writes handed to the channel whose promise has not settled. */
  #queuedWrites = 0;
  /** Held for this peer outside the writer (requests in flight, relay buffers). */
  #otherHeld = 0;
  /** What this connection last reported to the budget. */
  #reported = 0;
  #unsubscribe: (() => void) | undefined;
  /** A write gathers queued pieces up to about this size (fewer system calls, fewer wake-ups of the reader). */
  readonly #batchBytes: number;

  constructor(channel: ByteChannel, options: MessageWriterOptions) {
    this.#channel = channel;
    this.#options = options;
    this.#batchBytes = channel.writeBatchBytes ?? DEFAULT_WRITE_BATCH_BYTES;
  }

  /** Bytes accepted and not yet handed to the OS (queued bulk included). */
  get pendingBytes(): number {
    return this.#channel.pendingWriteBytes + this.#queuedBytes;
  }

  /** Send bulk as binary frames (the peer offered them in its hello) or as JSON lines. */
  setFrames(enabled: boolean): void {
    this.#frames = enabled;
  }

  // Serialise one message and write it. An answer that cannot be serialised (a relayed value nested too
  // deep) goes out as an internal error instead, so the request it answers still settles; anything else
  // unserialisable is logged and dropped.
  write(message: object): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    let bytes = this.encode(message);
    const record = message as Record<string, unknown>;
    if (!bytes) {
      if (!('id' in record && ('result' in record || 'error' in record))) return Promise.resolve();
      const error = { code: ERROR_CODES.internalError, message: 'internal error: the answer could not be serialised' };
      bytes = Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: record.id, error })}\n`, 'utf8');
    }
    const key = orderKeyOf(message);
    const queue = key === undefined ? undefined : this.#queues.get(key);
    if (queue) {
      this.#queuedBytes += bytes.length;
      queue.bytes += bytes.length;
      const line = bytes;
      return new Promise((resolve) => queue.items.push({ parts: [line], bytes: line.length, done: resolve }));
    }
    return this.writeLine(bytes);
  }

  /** One message as a line, or undefined (logged) when it cannot be serialised. */
  encode(message: object): Buffer | undefined {
    try {
      return Buffer.from(`${JSON.stringify(message)}\n`, 'utf8');
    } catch (error) {
      this.#options.logger.error(`cannot serialise a message for ${this.#options.label}: ${errorMessage(error)}`);
      return undefined;
    }
  }

  /**
   * Queue a bulk message: frames of at most FRAME_MAX_PAYLOAD bytes, or one JSON line for a peer without
   * frames. Resolves at once while its id has at most BULK_AHEAD_BYTES queued (so small chunks, such as a
   * command's 4 KiB pipe writes, gather and go out in one write), else when its last byte is handed to
   * the channel: a sender that awaits each call is held back there. A frame's payload is `data` itself,
   * not a copy: the caller must not change it afterwards.
   */
  writeBulk(message: BulkMessage): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    const key = JSON.stringify(message.id);
    let queue = this.#queues.get(key);
    if (!queue) this.#queues.set(key, (queue = { items: [], bytes: 0 }));
    const { method, id, stream, data } = message;
    const pieces: QueuedWrite[] = [];
    if (!this.#frames) {
      const line = encodeBulkLine(method, id, stream, data);
      pieces.push({ parts: [line], bytes: line.length });
    }
    for (let at = 0; this.#frames && (at < data.length || at === 0); at += FRAME_MAX_PAYLOAD) {
      const payload = data.subarray(at, at + FRAME_MAX_PAYLOAD);
      const header = encodeFrameHeader(method, id, stream, payload.length);
      pieces.push({ parts: [header, payload, FRAME_END], bytes: header.length + payload.length + 1 });
    }
    const ahead = queue.bytes;
    for (const piece of pieces) {
      queue.items.push(piece);
      queue.bytes += piece.bytes;
      this.#queuedBytes += piece.bytes;
    }
    let written: Promise<void> = Promise.resolve();
    if (ahead + data.length > BULK_AHEAD_BYTES) {
      const last = pieces[pieces.length - 1]!;
      written = new Promise<void>((resolve) => (last.done = resolve));
    }
    void this.#pump();
    return written;
  }

  // Hand queued bulk to the channel, the ids in turn, a piece each, gathered into writes of about
  // the channel's batch size; control lines written meanwhile go straight to the channel, ahead of what is queued here.
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (!this.#stopped && this.#queues.size > 0) {
        const batch: QueuedWrite[] = [];
        const parts: Buffer[] = [];
        let size = 0;
        while (size < this.#batchBytes && this.#queues.size > 0) {
          const [key, queue] = this.#queues.entries().next().value as [string, IdQueue];
          const item = queue.items.shift()!;
          queue.bytes -= item.bytes;
          this.#queues.delete(key);
          // Re-inserted at the end: the next id takes its turn.
          if (queue.items.length > 0) this.#queues.set(key, queue);
          batch.push(item);
          parts.push(...item.parts);
          size += item.bytes;
        }
        this.#queuedBytes -= size;
        this.#queuedWrites++;
        try {
          const channel = this.#channel;
          await (parts.length === 1 ? channel.write(parts[0]!) : channel.writev ? channel.writev(parts) : channel.write(Buffer.concat(parts, size)));
        } catch (error) {
          for (const item of batch) item.done?.();
          this.#options.onWriteFailed(error);
          return;
        } finally {
          this.#queuedWrites--;
        }
        for (const item of batch) item.done?.();
        this.applyBackpressure();
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** A session ended: its queued bulk (and what waits behind it) is never sent; callers are released. */
  dropQueued(): void {
    for (const queue of this.#queues.values()) for (const item of queue.items) item.done?.();
    this.#queues.clear();
    this.#queuedBytes = 0;
  }

  // Write bytes that are already one or more complete lines.
  writeLine(line: Buffer): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    this.#queuedWrites++;
    const written = this.#channel.write(line).then(
      () => {
        this.#queuedWrites--;
        this.applyBackpressure();
      },
      (error: unknown) => {
        this.#queuedWrites--;
        this.#options.onWriteFailed(error);
      },
    );
    this.applyBackpressure();
    return written;
  }

  /** Bytes held for this peer: unsent and queued bytes, queued writes with their overhead, and what the peer added. */
  get heldBytes(): number {
    return this.pendingBytes + this.#queuedWrites * WRITE_OVERHEAD_BYTES + this.#otherHeld;
  }

  /** Count (or, negative, release) memory held for this peer elsewhere: requests in flight, relay buffers. */
  adjustHeld(delta: number): void {
    this.#otherHeld += delta;
    this.applyBackpressure();
  }

  // Pause reading a peer that holds more than its share, or more than a little while the process is over
  // its budget; resume when it is down to half its share (and the process has room, or it holds little).
  applyBackpressure(): void {
    if (this.#stopped) return;
    const held = this.heldBytes;
    const { budget, maxWriteBacklogBytes: limit } = this.#options;
    budget.add(held - this.#reported);
    this.#reported = held;
    const overall = budget.isOver && held > BUDGET_FLOOR_BYTES;
    if (!this.#paused && (held > limit || overall)) {
      this.#paused = true;
      this.#channel.pause();
      this.#unsubscribe ??= budget.onRelief(() => this.applyBackpressure());
      const why = held > limit ? `${held} bytes held for it, over its ${limit}` : `the process holds ${budget.heldBytes} bytes for its peers, over its ${budget.totalBytes}`;
      this.#options.logger.warn(`${this.#options.label} is not reading our messages (${why}): pausing reading from it`);
    } else if (this.#paused && held <= limit / 2 && !overall) {
      this.#resume();
    }
  }

  #resume(): void {
    this.#paused = false;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#channel.resume();
  }

  /** A new session starts: an old session's backlog says nothing about it, so read again. */
  resumeReading(): void {
    if (this.#paused) this.#resume();
  }

  /** The peer is closed: nothing is written any more, queued bulk is dropped, and what it held is no longer counted. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.dropQueued();
    this.#unsubscribe?.();
    this.#options.budget.add(-this.#reported);
    this.#reported = 0;
  }
}

// The id whose queued bulk a control message must not overtake: a response's id, a notification's params.id.
function orderKeyOf(message: object): string | undefined {
  const record = message as Record<string, unknown>;
  if (typeof record.method === 'string') {
    if ('id' in record || !isRecord(record.params) || record.params.id === undefined) return undefined;
    return JSON.stringify(record.params.id);
  }
  return record.id === undefined || record.id === null ? undefined : JSON.stringify(record.id);
}
