// Credit-based flow control for one direction of one stream: at most `window` bytes sent and not yet
// acknowledged. Bounds memory on both ends per request without stalling the other requests that share
// the connection (pausing the socket would).
import { MAX_CHUNK_BYTES } from '../wire/protocol.js';

export class FlowWindow {
  readonly window: number;
  #inFlight = 0;
  #waiters: Array<() => void> = [];
  #closed = false;

  constructor(window: number) {
    this.window = window;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Largest piece a sender hands to `reserve`: one chunk, and never more than the window, so that the
   * receiver (which holds a window read ahead and a window in flight, and refuses more) never gets a piece
   * it must refuse, even one let through an empty window.
   */
  get maxPiece(): number {
    return Math.min(MAX_CHUNK_BYTES, this.window);
  }

  /** Wait until `bytes` more may be sent (always lets one chunk through an empty window), then count them. */
  async reserve(bytes: number): Promise<boolean> {
    while (!this.#closed && this.#inFlight > 0 && this.#inFlight + bytes > this.window) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#closed) return false;
    this.#inFlight += bytes;
    return true;
  }

  /** The receiver consumed `bytes`. Returns false when it acknowledged more than was sent (a bad peer). */
  ack(bytes: number): boolean {
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > this.#inFlight) return false;
    this.#inFlight -= bytes;
    this.#wake();
    return true;
  }

  /** Release every waiter; later reserves return false. */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}

/**
 * Bytes consumed before the receiving side acknowledges them: a quarter of the window, and never more
 * than the window less one largest chunk. A sender waits only while `inFlight + piece > window` with
 * `piece <= MAX_CHUNK_BYTES` (maxPiece), i.e. with more than `window - MAX_CHUNK_BYTES` unacknowledged;
 * a receiver that has consumed everything holds less than this unacknowledged, so a sender never waits
 * on an acknowledgement that is not coming. Tiny windows (up to one chunk) are acknowledged at every byte.
 */
export function ackThreshold(window: number): number {
  return Math.max(1, Math.min(Math.floor(window / 4), window - MAX_CHUNK_BYTES));
}

// The receiving side of a window: consumed bytes are acknowledged in batches of ackThreshold(window)
// (one message per 512 KiB of a 2 MiB window instead of one per chunk), never held past that.
export class AckBatch {
  readonly threshold: number;
  readonly #send: (bytes: number) => void;
  #pending = 0;

  constructor(window: number, send: (bytes: number) => void) {
    this.threshold = ackThreshold(window);
    this.#send = send;
  }

  /** Consumed and not yet acknowledged. */
  get pending(): number {
    return this.#pending;
  }

  /** `bytes` were consumed (written on, read): acknowledged once the batch reaches the threshold. */
  add(bytes: number): void {
    this.#pending += bytes;
    if (this.#pending >= this.threshold) this.flush();
  }

  /** Acknowledge what is pending now. */
  flush(): void {
    if (this.#pending === 0) return;
    const bytes = this.#pending;
    this.#pending = 0;
    this.#send(bytes);
  }
}
