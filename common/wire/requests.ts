// The two request tables of a peer. Outgoing: our requests waiting for an answer, each with its deadline
// and abort signal, settled exactly once. Incoming: the peer's requests our handlers are running, each
// with a lazily made abort controller, plus cancels that arrived before their request.
import { CanceledError, ChannelClosedError, PeerRestartedError, RpcError, TimeoutError } from './errors.js';
import type { RequestId } from './protocol.js';

export interface StartedRequest {
  id: number;
  response: Promise<unknown>;
}

/** Listeners of the notifications that name a request by its id (`params.id`), by method. */
export type RequestNotificationHandlers = Readonly<Record<string, (params: Record<string, unknown>) => void>>;

interface Pending {
  method: string;
  notifications: RequestNotificationHandlers | undefined;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  sent: boolean;
  cleanup: () => void;
}

export interface OutgoingRequestsOptions {
  label: string;
  /** Deadline of the wait for the handshake of a request that has none of its own (timeout 0). */
  handshakeTimeoutMs: number;
  /** Tell the serving side to stop a request nobody will read (only for requests already sent). */
  cancelRemote(id: number): void;
}

/** Our requests, by id. Every entry leaves through `settle` or `fail`, which clear its timer and listener. */
export class OutgoingRequests {
  readonly #pending = new Map<number, Pending>();
  readonly #options: OutgoingRequestsOptions;
  /** Methods some request listened to: one naming a request that is over is late, not unknown. */
  readonly #scopedMethods = new Set<string>();
  #nextId = 1;

  constructor(options: OutgoingRequestsOptions) {
    this.#options = options;
  }

  // Register a request; it fails on its own at the deadline (0 = none) or when `signal` aborts.
  add(method: string, timeoutMs: number, signal: AbortSignal | undefined, notifications?: RequestNotificationHandlers): StartedRequest {
    for (const name of Object.keys(notifications ?? {})) this.#scopedMethods.add(name);
    const id = this.#nextId++;
    const response = new Promise<unknown>((resolve, reject) => {
      const onAbort = (): void => this.fail(id, new CanceledError(`request \`${method}\` to ${this.#options.label} was canceled`));
      const handshakeMs = this.#options.handshakeTimeoutMs;
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              const hint = this.#pending.get(id)?.sent ? 'the peer did not answer in time' : 'the handshake with the peer did not complete (is its agent running?)';
              this.fail(id, new TimeoutError(`request \`${method}\` to ${this.#options.label} timed out after ${timeoutMs} ms: ${hint}`, timeoutMs));
            }, timeoutMs)
          : // No deadline of its own: it still may not wait for ever for a handshake (an agent that is not there).
            handshakeMs > 0
            ? setTimeout(() => {
                if (this.#pending.get(id)?.sent !== false) return;
                this.fail(id, new TimeoutError(`no answer to the handshake from ${this.#options.label} within ${handshakeMs} ms: is the negotiator agent running on the other side?`, handshakeMs));
              }, handshakeMs)
            : undefined;
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      this.#pending.set(id, { method, notifications, resolve, reject, sent: false, cleanup });
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
    return { id, response };
  }

  /** Mark a request as written; returns its method, or undefined when it is settled or already sent. */
  takeForSending(id: number): string | undefined {
    const pending = this.#pending.get(id);
    if (!pending || pending.sent) return undefined;
    pending.sent = true;
    return pending.method;
  }

  /**
   * Hand a notification naming one of our requests to that request's listener. 'late': the method is one
   * requests listen to, but this request is over (or unknown); 'none': not a request's notification.
   */
  deliver(method: string, params: Record<string, unknown>): 'delivered' | 'late' | 'none' {
    if (!this.#scopedMethods.has(method)) return 'none';
    const listener = typeof params.id === 'number' ? this.#pending.get(params.id)?.notifications?.[method] : undefined;
    if (!listener) return 'late';
    listener(params);
    return 'delivered';
  }

  /** Settle a request from the peer's response; false when no such request is waiting. */
  settle(id: unknown, message: Record<string, unknown>): boolean {
    const pending = typeof id === 'number' ? this.#pending.get(id) : undefined;
    if (!pending) return false;
    this.#pending.delete(id as number);
    pending.cleanup();
    if ('error' in message) pending.reject(RpcError.fromWire(message.error));
    else pending.resolve(message.result);
    return true;
  }

  fail(id: number, error: Error): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    pending.cleanup();
    if (pending.sent && !(error instanceof PeerRestartedError) && !(error instanceof ChannelClosedError)) this.#options.cancelRemote(id);
    pending.reject(error);
  }

  /** The session ended: fail the requests already sent (unsent ones wait for the next session). */
  failSent(error: Error): void {
    for (const [id, pending] of this.#pending) if (pending.sent) this.fail(id, error);
  }

  failAll(error: Error): void {
    for (const id of [...this.#pending.keys()]) this.fail(id, error);
  }
}

// An AbortController made only when a handler asks for its signal: most requests (ping, list) never do,
// and making one for each was a measurable share of a ping's cost (docs/benchmarks.md).
class LazyAbort {
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** The abort handle of one running incoming request. */
export interface RunningRequest {
  readonly signal: AbortSignal;
  abort(reason: unknown): void;
}

const MAX_EARLY_CANCELS = 1024;

/** The peer's requests being handled, by id, and cancels that arrived before their request. */
export class IncomingRequests {
  readonly #running = new Map<RequestId, LazyAbort>();
  readonly #earlyCancels = new Set<RequestId>();

  get size(): number {
    return this.#running.size;
  }
  has(id: RequestId): boolean {
    return this.#running.has(id);
  }
  /** Consume a cancel that came before this request. */
  takeEarlyCancel(id: RequestId): boolean {
    return this.#earlyCancels.delete(id);
  }
  begin(id: RequestId): RunningRequest {
    const running = new LazyAbort();
    this.#running.set(id, running);
    return running;
  }
  end(id: RequestId, running: RunningRequest): void {
    if (this.#running.get(id) === running) this.#running.delete(id);
  }
  // Abort a running request, or remember the cancel (bounded) for a request not yet seen.
  cancel(id: RequestId, reason: Error): void {
    const running = this.#running.get(id);
    if (running) running.abort(reason);
    else if (this.#earlyCancels.size < MAX_EARLY_CANCELS) this.#earlyCancels.add(id);
  }
  abortAll(reason: Error): void {
    for (const running of this.#running.values()) running.abort(reason);
    this.#running.clear();
    this.#earlyCancels.clear();
  }
}
