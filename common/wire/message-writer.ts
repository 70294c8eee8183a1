// The sending half of a peer (vscode-jsonrpc's "writer"): messages become lines written to the channel in
// call order. It also owns the defence against a peer that does not read: what we hold for it (unsent
// bytes, each queued write's overhead, requests in flight, relay buffers; memory-budget.ts) is counted,
// and past its share, or while the whole process is over its budget, we stop reading that peer (its
// requests are what makes our replies) until half of it has drained.
import type { ByteChannel } from './byte-channel.js';
import { errorMessage } from './errors.js';
import { BUDGET_FLOOR_BYTES, WRITE_OVERHEAD_BYTES, type MemoryBudget } from './memory-budget.js';
import { ERROR_CODES } from './protocol.js';
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

/** Writes lines for one peer. Lifecycle: `stop()` once the peer is closed; later writes are dropped. */
export class MessageWriter {
  readonly #channel: ByteChannel;
  readonly #options: MessageWriterOptions;
  #stopped = false;
  #paused = false;
  /** Writes handed to the channel whose promise has not settled. */
  #queuedWrites = 0;
  /** Held for this peer outside the writer (requests in flight, relay buffers). */
  #otherHeld = 0;
  /** What this connection last reported to the budget. */
  #reported = 0;
  #unsubscribe: (() => void) | undefined;

  constructor(channel: ByteChannel, options: MessageWriterOptions) {
    this.#channel = channel;
    this.#options = options;
  }

  /** Bytes accepted and not yet handed to the OS. */
  get pendingBytes(): number {
    return this.#channel.pendingWriteBytes;
  }

  // Serialise one message and write it. An answer that cannot be serialised (a relayed value nested too
  // deep) goes out as an internal error instead, so the request it answers still settles; anything else
  // unserialisable is logged and dropped.
  write(message: object): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    const line = this.encode(message);
    if (line) return this.writeLine(line);
    const record = message as Record<string, unknown>;
    if ('id' in record && ('result' in record || 'error' in record)) {
      const error = { code: ERROR_CODES.internalError, message: 'internal error: the answer could not be serialised' };
      return this.writeLine(Buffer.from(`${JSON.stringify({ jsonrpc: '2.0', id: record.id, error })}\n`, 'utf8'));
    }
    return Promise.resolve();
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

  /** Bytes held for this peer: unsent bytes, queued writes with their overhead, and what the peer added. */
  get heldBytes(): number {
    return this.#channel.pendingWriteBytes + this.#queuedWrites * WRITE_OVERHEAD_BYTES + this.#otherHeld;
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

  /** The peer is closed: nothing is written any more, and what it held is no longer counted. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unsubscribe?.();
    this.#options.budget.add(-this.#reported);
    this.#reported = 0;
  }
}
