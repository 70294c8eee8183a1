// Giving memory back after a burst. A daemon that goes quiet after a hostile or merely busy peer
// allocates nothing, so V8 never collects what the burst left behind, and the Buffers of that garbage
// hold their malloc'd memory. So: every `intervalMs` (10 s: one wake-up and a read of /proc/self/stat),
// when the resident size is over `factor` times what it was once the daemon had started, one full
// collection runs. Freed Buffers then go back to the system when their allocations were mmap'd: the
// launchers and units fix glibc's mmap threshold (MALLOC_MMAP_THRESHOLD_), which otherwise rises after
// the first large free and keeps later buffers in the heap (docs/benchmarks.md, "The daemons favour
// memory now"). A daemon that simply holds more (many guests, long commands with their input) is not
// collected at every check: after a collection that left it over the mark, the next ones come after
// 1, 2, 4 ... up to 64 skipped checks (about 11 minutes).
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
  /** The size measured at start, bytes. */
  readonly baselineBytes: number;
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

const MAX_SKIPPED_CHECKS = 64;

// Start once the daemon is up: its resident size then is the baseline.
export function startMemoryReturn(options: MemoryReturnOptions = {}): MemoryReturn {
  const rss = options.rss ?? (() => process.memoryUsage.rss());
  const collect = options.collect ?? fullCollection();
  const factor = options.factor ?? 1.2;
  const baseline = rss();
  let backoff = 0;
  let skip = 0;
  const state: MemoryReturn = {
    baselineBytes: baseline,
    check() {
      if (skip > 0) {
        skip--;
        return;
      }
      if (rss() <= baseline * factor) {
        backoff = 0;
        return;
      }
      collect();
      if (rss() <= baseline * factor) {
        backoff = 0;
      } else {
        backoff = Math.min(backoff === 0 ? 1 : backoff * 2, MAX_SKIPPED_CHECKS);
        skip = backoff;
      }
    },
    stop() {
      clearInterval(timer);
    },
  };
  const timer = setInterval(() => state.check(), options.intervalMs ?? 10_000);
  timer.unref();
  return state;
}
