// Notices a peer that is gone without closing the channel: a SIGKILLed agent behind a QEMU socket, a
// hung one, a guest that reset. While requests we sent wait for answers, any byte from the peer proves
// it alive; after `intervalMs` of silence we send a `ping`, and after `peerTimeoutMs` of silence the
// peer is declared lost (the owner fails what it waits for). Nothing runs while no request is pending:
// an idle channel costs no timer and no traffic.
//
// Hazard: a live peer must never be declared lost for being slow. Only complete silence counts (a
// command's output, an answer to anything, a hello all reset the clock), and the default 15 s is ~20x
// the worst ping measured on a loaded TCG guest (docs/benchmarks.md, "keepalive").

export interface KeepaliveOptions {
  /** Silence while requests wait after which the peer is lost; 0 turns the keepalive off. */
  peerTimeoutMs: number;
  /** Silence after which we ping (then again at this interval); default a third of `peerTimeoutMs`. */
  intervalMs?: number;
  /** True while requests we sent (other than our pings) wait for answers. */
  hasPending(): boolean;
  /** Send a ping; the promise settles when it is answered or fails (either is fine). */
  ping(timeoutMs: number): Promise<unknown>;
  /** The peer said nothing for `silentMs` although `pings` pings went to it. */
  onLost(silentMs: number, pings: number): void;
}

/** Lifecycle: `heard()` on every chunk from the peer, `requestSent()` after each request written, `stop()` at the end. */
export class Keepalive {
  readonly #options: Required<KeepaliveOptions>;
  #lastHeard = 0;
  #pings = 0;
  #pingInFlight = false;
  #timer: NodeJS.Timeout | undefined;
  /** A timer chain runs (requests were pending at its last tick). */
  #watching = false;

  constructor(options: KeepaliveOptions) {
    this.#options = { intervalMs: Math.max(1, Math.floor(options.peerTimeoutMs / 3)), ...options };
  }

  get enabled(): boolean {
    return this.#options.peerTimeoutMs > 0;
  }

  /** The peer sent something: it is alive. */
  heard(): void {
    this.#lastHeard = Date.now();
    this.#pings = 0;
  }

  /** A request was written: watch the peer until nothing is pending any more. */
  requestSent(): void {
    if (!this.enabled || this.#watching) return;
    this.#watching = true;
    // The silence counts from now: the peer had nothing to say while nothing was asked.
    this.heard();
    this.#schedule();
  }

  /** The session ended or the channel closed: forget the peer. */
  stop(): void {
    clearTimeout(this.#timer);
    this.#watching = false;
    this.#pings = 0;
  }

  #schedule(): void {
    const { intervalMs, peerTimeoutMs } = this.#options;
    const silent = Date.now() - this.#lastHeard;
    const nextPing = this.#pingInFlight ? Infinity : intervalMs * (this.#pings + 1) - silent;
    const wait = Math.max(0, Math.min(nextPing, peerTimeoutMs - silent));
    this.#timer = setTimeout(() => this.#tick(), wait);
    // The requests that wait hold the process open by their own deadlines; this timer must not.
    this.#timer.unref();
  }

  #tick(): void {
    if (!this.#options.hasPending()) return this.stop();
    const silent = Date.now() - this.#lastHeard;
    if (silent >= this.#options.peerTimeoutMs) {
      const pings = this.#pings;
      this.stop();
      this.#options.onLost(silent, pings);
      return;
    }
    if (!this.#pingInFlight && silent >= this.#options.intervalMs * (this.#pings + 1)) {
      this.#pings++;
      this.#pingInFlight = true;
      void this.#options
        .ping(this.#options.peerTimeoutMs)
        .catch(() => {})
        .finally(() => (this.#pingInFlight = false));
    }
    this.#schedule();
  }
}
