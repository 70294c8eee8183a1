// How many commands an execute server runs at once: a slot per running command, a bounded queue of
// requests waiting for one (each leaves the queue when its request is aborted), and a way to wait until
// nothing runs or waits (the daemons' graceful stop).
import { CanceledError, RpcError } from '../wire/errors.js';
import { ERROR_CODES } from '../wire/protocol.js';

export class RunSlots {
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  readonly #queue: Array<() => void> = [];
  readonly #idleWaiters: Array<() => void> = [];
  #running = 0;

  constructor(maxConcurrent: number, maxQueued: number) {
    this.#maxConcurrent = maxConcurrent;
    this.#maxQueued = maxQueued;
  }

  get running(): number {
    return this.#running;
  }
  get queued(): number {
    return this.#queue.length;
  }

  // Wait for a slot; rejects `busy` when the queue is full, or with the abort reason.
  acquire(signal: AbortSignal): Promise<void> {
    if (this.#running < this.#maxConcurrent) {
      this.#running++;
      return Promise.resolve();
    }
    if (this.#queue.length >= this.#maxQueued) {
      return Promise.reject(new RpcError(ERROR_CODES.busy, `busy: ${this.#running} commands running and ${this.#queue.length} waiting (\`maxQueued\`); retry later`));
    }
    return new Promise((resolve, reject) => {
      const start = (): void => {
        signal.removeEventListener('abort', onAbort);
        this.#running++;
        resolve();
      };
      const onAbort = (): void => {
        const index = this.#queue.indexOf(start);
        if (index >= 0) this.#queue.splice(index, 1);
        reject(signal.reason instanceof Error ? signal.reason : new CanceledError('canceled while waiting to run'));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(start);
    });
  }

  /** Give a slot back (once per successful `acquire`). */
  release(): void {
    this.#running--;
    this.#queue.shift()?.();
    if (this.#running === 0 && this.#queue.length === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
  }

  /** Resolves true when nothing runs or waits, or false after `timeoutMs`. */
  idle(timeoutMs: number): Promise<boolean> {
    if (this.#running === 0 && this.#queue.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.#idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
