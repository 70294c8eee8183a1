// When a port channel reads its device next. Every read is a non-blocking readSync made by the channel;
// this module only decides when to make the next one:
// - `epoll`: libuv's pipe handle on the fd (./pipe-handle.ts) says when data comes while the host is there.
// - `poll`: the public fallback, for a Node without that handle: reads on a timer that backs off from 1 ms
//   to `pollIntervalMs` while the host is quiet.
// - Host absent (a read returned 0), either way: a read on a timer, `pollIntervalMs` at first, then further
//   apart (x1.5 a time, up to 4x `pollIntervalMs`): a host daemon that restarts is seen within about
//   `pollIntervalMs`, a host that stays away costs a wake-up every 2 s. The timers of every port are put on
//   one 250 ms grid, so the ports of a process wake together. The fd reports POLLHUP at once while the host
//   is away, so epoll cannot wait for it; the kernel does say when the host returns (SIGIO on an O_ASYNC
//   fd, a blocking write that completes), but neither is reachable from Node without native code.
//   `readWhenHostBack` is the one place that waits.
// Which way is in use is logged once per process at debug level.
import { close as closeFd } from 'node:fs';
import type { Logger } from '../common/base/logger.js';
import { createEpollReader, hasPipeHandle, type EpollReader } from './pipe-handle.js';

export const READ_MECHANISMS = ['epoll', 'poll'] as const;
export type ReadMechanism = (typeof READ_MECHANISMS)[number];

export interface ReadWakeupOptions {
  mechanism: 'auto' | ReadMechanism;
  pollIntervalMs: number;
  logger: Logger;
}

export interface ReadWakeupCallbacks {
  /** Read the device now. */
  read(): void;
  /** epoll only: libuv read these bytes itself. */
  onChunk(chunk: Buffer): void;
  onError(error: Error): void;
}

/** Owns the fd from creation: `close()` closes it. Every `readWhen...` replaces the previous wait. */
export interface ReadWakeup {
  readonly mechanism: ReadMechanism;
  /** On a later turn, not now: the channel's owner attaches its listeners first. */
  readSoon(): void;
  /** The last read left the device empty (EAGAIN) or stopped with bytes left: read when there is more. */
  readWhenReady(outcome: 'empty' | 'more'): void;
  /** The last read said the host is absent: read when it may be back. */
  readWhenHostBack(): void;
  /** A read brought data: the poll backoff starts again from 1 ms. */
  noteData(): void;
  stop(): void;
  close(callback: () => void): void;
}

// Choose the way to wait for `fd` and return it (`epoll` for `auto` when this Node has the pipe handle).
export function createReadWakeup(fd: number, options: ReadWakeupOptions, callbacks: ReadWakeupCallbacks): ReadWakeup {
  let watching = false;
  const epoll: EpollReader | undefined =
    options.mechanism === 'poll'
      ? undefined
      : createEpollReader(fd, {
          onChunk: callbacks.onChunk,
          // libuv saw a 0-byte read (it also reports one early, after a short read with POLLHUP): read on
          // to drain what may be left and to learn whether the host is gone.
          onEnd: () => {
            watching = false;
            callbacks.read();
          },
          onError: callbacks.onError,
        });
  const mechanism: ReadMechanism = epoll ? 'epoll' : 'poll';
  logMechanismOnce(mechanism, options);

  let timer: NodeJS.Timeout | undefined;
  let pollDelayMs = 1;
  let absentDelayMs = 0;
  const readLater = (delayMs: number): void => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      callbacks.read();
    }, delayMs);
  };
  const stop = (): void => {
    clearTimeout(timer);
    timer = undefined;
    if (watching) epoll?.stop();
    watching = false;
  };

  return {
    mechanism,
    readSoon: () => readLater(0),
    readWhenReady: (outcome) => {
      absentDelayMs = 0;
      if (epoll) {
        // Level-triggered: with bytes left ('more'), epoll reports the fd again on the next turn.
        if (!watching) epoll.start();
        watching = true;
      } else if (outcome === 'more') {
        readLater(0);
      } else {
        readLater(pollDelayMs);
        pollDelayMs = Math.min(pollDelayMs * 2, options.pollIntervalMs);
      }
    },
    readWhenHostBack: () => {
      stop();
      // Nothing wakes a process when the host comes back: this timer is the one cost of an idle channel.
      absentDelayMs = absentDelayMs === 0 ? options.pollIntervalMs : Math.min(Math.round(absentDelayMs * 1.5), options.pollIntervalMs * ABSENT_POLL_GROWTH_LIMIT);
      readLater(onGrid(absentDelayMs, Math.min(GRID_MS, options.pollIntervalMs)));
    },
    noteData: () => {
      pollDelayMs = 1;
      absentDelayMs = 0;
    },
    stop,
    close: (callback) => {
      stop();
      if (epoll) epoll.close(callback);
      else closeFd(fd, () => callback());
    },
  };
}

/** While the host stays away, reads drift apart up to this many times `pollIntervalMs`. */
export const ABSENT_POLL_GROWTH_LIMIT = 4;
const GRID_MS = 250;

// `delayMs`, stretched to end on a process-wide grid (250 ms, finer for shorter intervals): timers of
// several ports fire in one wake-up.
export function onGrid(delayMs: number, gridMs: number, now = Date.now()): number {
  return Math.ceil((now + delayMs) / gridMs) * gridMs - now;
}

const logged = new Set<ReadMechanism>();

// One debug line per process (not one per port), unless a later channel ends up with the other way.
function logMechanismOnce(mechanism: ReadMechanism, options: ReadWakeupOptions): void {
  if (logged.has(mechanism)) return;
  logged.add(mechanism);
  if (mechanism === 'epoll') {
    options.logger.debug("Ports are read when epoll says so (Node's internal pipe handle, process.binding('pipe_wrap')).");
  } else {
    const why =
      options.mechanism === 'poll'
        ? 'the `poll` read mechanism was asked for'
        : hasPipeHandle()
          ? "Node's internal pipe handle refused the device"
          : "this Node has no usable internal pipe handle (process.binding('pipe_wrap'))";
    options.logger.debug(`Ports are read on a timer, every ${options.pollIntervalMs} ms at most: ${why}.`);
  }
}
