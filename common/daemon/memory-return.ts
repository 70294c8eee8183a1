// Giving memory back after a burst. A daemon that goes quiet after a hostile or merely busy peer
// allocates nothing, so V8 never collects what the burst left behind, and the Buffers of that garbage
// hold their malloc'd memory. So: every `intervalMs`, when the resident size is over `factor` times the
// last settled size, one full collection runs. Freed Buffers then go back to the system when their
// allocations were mmap'd: the launchers and units fix glibc's mmap threshold (MALLOC_MMAP_THRESHOLD_),
// which otherwise rises after the first large free and keeps later buffers in the heap
// (docs/benchmarks.md, "The daemons favour memory now"). The settled size follows what a collection
// cannot free, so a daemon that simply holds more (many guests) is not collected again and again.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface MemoryReturnOptions {
  intervalMs?: number;
  /** Collect when RSS is over this many times the settled size. Default 1.2. */
  factor?: number;
  /** Test seams: the resident size in bytes, and the full collection. */
  rss?: () => number;
  collect?: () => void;
}

export interface MemoryReturn {
  /** The size that counts as settled, bytes. */
  readonly settledBytes: number;
  /** One check now (what the timer does). */
  check(): void;
  stop(): void;
}

// The engine's full collection, reachable without --expose-gc on the command line.
function fullCollection(): () => void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  setFlagsFromString('--no-expose-gc');
  return gc;
}

export function startMemoryReturn(options: MemoryReturnOptions = {}): MemoryReturn {
  const rss = options.rss ?? (() => process.memoryUsage.rss());
  const collect = options.collect ?? fullCollection();
  const factor = options.factor ?? 1.2;
  let settled = rss();
  const state: MemoryReturn = {
    get settledBytes() {
      return settled;
    },
    check() {
      if (rss() <= settled * factor) return;
      collect();
      settled = Math.max(settled, rss());
    },
    stop() {
      clearInterval(timer);
    },
  };
  const timer = setInterval(() => state.check(), options.intervalMs ?? 30_000);
  timer.unref();
  return state;
}
