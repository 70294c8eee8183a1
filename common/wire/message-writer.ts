// The sending half of a peer (vscode-jsonrpc's "writer"): messages become lines written to the channel in
// call order. It also owns the one defence against a peer that does not read: when our unsent bytes pass
// a limit we stop reading that peer (its requests are what makes our replies), and read again once half
// the backlog has drained.
import type { ByteChannel } from './byte-channel.js';
import { errorMessage } from './errors.js';
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

  // Serialise one message and write it; a message that cannot be serialised is logged and dropped.
  write(message: object): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    let line: string;
    try {
      line = JSON.stringify(message) + '\n';
    } catch (error) {
      this.#options.logger.error(`cannot serialise a message for ${this.#options.label}: ${errorMessage(error)}`);
      return Promise.resolve();
    }
    return this.writeLine(Buffer.from(line, 'utf8'));
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
