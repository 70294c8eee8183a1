// Credit-based flow control for one direction of one stream: at most `window` bytes sent and not yet
// acknowledged. Bounds memory on both ends per request without stalling the other requests that share
// the connection (pausing the socket would).

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
