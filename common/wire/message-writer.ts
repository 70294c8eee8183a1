// The sending half of a peer (vscode-jsonrpc's "writer"): messages become lines written to the channel in
// call order. It also owns the one defence against a peer that does not read: when our unsent bytes pass
// a limit we stop reading that peer (its requests are what makes our replies), and read again once half
// the backlog has drained.
import type { ByteChannel } from './byte-channel.js';
import { errorMessage } from './errors.js';
import { ERROR_CODES } from './protocol.js';
import type { Logger } from '../base/logger.js';

export interface MessageWriterOptions {
  /** Name of the channel / peer for log lines. */
  label: string;
  logger: Logger;
  /** Unsent bytes above which reading from the peer pauses. */
  maxWriteBacklogBytes: number;
  /** A write failed: the channel is unusable (called at most once per failure; the owner closes). */
  onWriteFailed(error: unknown): void;
}

/** Writes lines for one peer. Lifecycle: `stop()` once the peer is closed; later writes are dropped. */
export class MessageWriter {
  readonly #channel: ByteChannel;
  readonly #options: MessageWriterOptions;
  #stopped = false;
  #paused = false;

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
    return this.#channel.write(line).then(
      () => this.applyBackpressure(),
      (error: unknown) => this.#options.onWriteFailed(error),
    );
  }

  // Pause reading a peer whose replies pile up unsent; resume when the backlog is down to half.
  applyBackpressure(): void {
    const backlog = this.#channel.pendingWriteBytes;
    const limit = this.#options.maxWriteBacklogBytes;
    if (!this.#paused && backlog > limit) {
      this.#paused = true;
      this.#channel.pause();
      this.#options.logger.warn(`${this.#options.label} is not reading our messages (${backlog} bytes unsent): pausing reading from it`);
    } else if (this.#paused && backlog <= limit / 2) {
      this.#paused = false;
      this.#channel.resume();
    }
  }

  /** A new session starts: an old session's backlog says nothing about it, so read again. */
  resumeReading(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#channel.resume();
  }

  stop(): void {
    this.#stopped = true;
  }
}
