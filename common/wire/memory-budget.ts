// What a daemon holds for its peers, counted as it really costs, and the budget that bounds it (issue 14).
// A peer that sends requests and never reads our answers makes us queue one write per answer: counted in
// bytes alone, a 16 MiB backlog of 50-byte answers was 335,000 queued writes and 300 MiB of heap. So each
// queued write counts with its overhead, each request in flight with its own, and relay buffers as they
// grow; a connection over its share, or any connection holding more than a little while the daemon as a
// whole is over its budget, is not read until it drains (message-writer.ts applies it).

/** Heap one queued write costs besides its bytes and the request that caused it (bench:memory: ~1.4 KiB a ping in all). */
export const WRITE_OVERHEAD_BYTES = 1024;
/** Heap one incoming request in flight costs besides its params (context, abort handle, handler frame). */
export const REQUEST_OVERHEAD_BYTES = 1024;
/** A connection holding less than this is always read, even while the daemon is over its budget. */
export const BUDGET_FLOOR_BYTES = 256 * 1024;
/** Default budget of a process (a daemon): everything its peers hold together. */
export const DEFAULT_PROCESS_BUDGET_BYTES = 32 * 1024 * 1024;

export class MemoryBudget {
  readonly totalBytes: number;
  #held = 0;
  readonly #reliefListeners = new Set<() => void>();

  constructor(totalBytes: number) {
    this.totalBytes = totalBytes;
  }

  get heldBytes(): number {
    return this.#held;
  }
  get isOver(): boolean {
    return this.#held > this.totalBytes;
  }

  /** Account a change; below half the budget, connections paused for the daemon's sake are woken. */
  add(delta: number): void {
    const wasOver = this.#held > this.totalBytes / 2;
    this.#held += delta;
    if (delta < 0 && wasOver && this.#held <= this.totalBytes / 2) for (const listener of [...this.#reliefListeners]) listener();
  }

  /** Call `listener` when the budget has room again; returns the unsubscribe. */
  onRelief(listener: () => void): () => void {
    this.#reliefListeners.add(listener);
    return () => void this.#reliefListeners.delete(listener);
  }
}

let processBudget = new MemoryBudget(DEFAULT_PROCESS_BUDGET_BYTES);

/** The budget every peer of this process shares unless given its own. */
export function processMemoryBudget(): MemoryBudget {
  return processBudget;
}

/** Set the process budget (a daemon's option); peers made later use it. */
export function setProcessMemoryBudget(totalBytes: number): void {
  processBudget = new MemoryBudget(totalBytes);
}
