// Rate-limited warnings: a peer that sends garbage in a loop must not flood the log (or the disk).
import type { Logger } from './logger.js';

// Return a warn function that logs at most `limit` lines per `windowMs`, then one summary line.
export function createWarningLimiter(logger: Logger, limit: number, windowMs: number): (message: string) => void {
  let windowStart = 0;
  let count = 0;
  let suppressed = 0;
  return (message) => {
    const now = Date.now();
    if (now - windowStart >= windowMs) {
      if (suppressed > 0) logger.warn(`${suppressed} similar warning(s) suppressed in the last ${Math.round(windowMs / 1000)} s`);
      windowStart = now;
      count = 0;
      suppressed = 0;
    }
    if (count < limit) {
      count++;
      logger.warn(message);
    } else {
      suppressed++;
    }
  };
}
