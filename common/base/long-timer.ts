// setTimeout for delays a user may give in seconds: node fires any delay over 2^31-1 ms (24.8 days) after
// 1 ms, with a TimeoutOverflowWarning (`--timeout 2500000` failed at once, issue 14). This chains timers
// of at most that length, so a long deadline is kept and never fires early.

/** The longest delay one node timer honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface LongTimer {
  clear(): void;
  /** Do not keep the process alive for this timer. */
  unref(): LongTimer;
}

export function setLongTimeout(callback: () => void, delayMs: number): LongTimer {
  let timer: NodeJS.Timeout | undefined;
  let referenced = true;
  const arm = (left: number): void => {
    const step = Math.min(Math.max(left, 0), MAX_TIMER_MS);
    timer = setTimeout(() => (left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : callback()), step);
    if (!referenced) timer.unref();
  };
  arm(delayMs);
  const handle: LongTimer = {
    clear: () => clearTimeout(timer),
    unref: () => {
      referenced = false;
      timer?.unref();
      return handle;
    },
  };
  return handle;
}
