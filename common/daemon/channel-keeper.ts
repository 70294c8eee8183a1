// Keeps one channel open for a daemon: opens it, runs an agent session on it, and when it closes or
// cannot be opened, tries again with backoff (500 ms doubling to 30 s) until stopped. Repeated identical
// failures are logged once, not at every retry.
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentSession } from './agent-session.js';
import type { ByteChannel } from '../wire/byte-channel.js';
import { ChannelClosedError, TimeoutError, errorMessage } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';
import { setLongTimeout } from '../base/long-timer.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

export interface ChannelKeeperOptions {
  label: string;
  logger: Logger;
  open: (signal: AbortSignal) => Promise<ByteChannel>;
  startSession: (channel: ByteChannel) => AgentSession;
  minDelayMs?: number;
  maxDelayMs?: number;
}

/** Lifecycle: starts at once; `stop()` is idempotent and ends the current session gracefully. */
export interface ChannelKeeper {
  readonly label: string;
  /** The session on the channel now open, if any (it may not have completed its handshake yet). */
  readonly session: AgentSession | undefined;
  /** The last reason the channel could not be opened, for status displays. */
  readonly lastError: string | undefined;
  /** The peer of the open channel (its handshake may still be under way), waiting up to `timeoutMs` for a channel. */
  waitForPeer(timeoutMs: number): Promise<RpcPeer>;
  stop(reason: string, graceMs: number): Promise<void>;
}

// Start keeping a channel open.
export function keepChannel(options: ChannelKeeperOptions): ChannelKeeper {
  const log = options.logger;
  const minDelay = options.minDelayMs ?? 500;
  const maxDelay = options.maxDelayMs ?? 30_000;
  const controller = new AbortController();
  let session: AgentSession | undefined;
  let lastError: string | undefined;
  let stopping: Promise<void> | undefined;
  const sessionWaiters = new Set<() => void>();

  const loop = async (): Promise<void> => {
    let delay = minDelay;
    while (!controller.signal.aborted) {
      let channel: ByteChannel;
      try {
        channel = await options.open(controller.signal);
      } catch (error) {
        if (controller.signal.aborted) return;
        const message = errorMessage(error);
        if (message !== lastError) log.warn(`${options.label}: ${message}; retrying every ${Math.round(maxDelay / 1000)} s at most`);
        lastError = message;
        await sleep(delay, undefined, { signal: controller.signal }).catch(() => {});
        delay = Math.min(delay * 2, maxDelay);
        continue;
      }
      if (lastError !== undefined) log.info(`${options.label}: channel open again`);
      lastError = undefined;
      const opened = Date.now();
      const closed = new Promise<void>((resolve) => channel.onClose(() => resolve()));
      session = options.startSession(channel);
      for (const wake of sessionWaiters) wake();
      await closed;
      session = undefined;
      if (controller.signal.aborted) return;
      log.info(`${options.label}: channel closed; reopening`);
      // A channel that stayed up a while earns a quick reconnect; one that flaps backs off.
      delay = Date.now() - opened > 10_000 ? minDelay : Math.min(delay * 2, maxDelay);
      await sleep(delay, undefined, { signal: controller.signal }).catch(() => {});
    }
  };
  void loop();

  return {
    label: options.label,
    get session() {
      return session;
    },
    get lastError() {
      return lastError;
    },
    async waitForPeer(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!session) {
        if (controller.signal.aborted) throw new ChannelClosedError(`${options.label}: the daemon is stopping`);
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new TimeoutError(`${options.label}: no channel within ${timeoutMs} ms${lastError ? ` (${lastError})` : ''}`, timeoutMs);
        }
        await new Promise<void>((resolve) => {
          const timer = setLongTimeout(resolve, left);
          const wake = (): void => (timer.clear(), sessionWaiters.delete(wake), resolve());
          sessionWaiters.add(wake);
        });
      }
      return session.peer;
    },
    stop(reason, graceMs) {
      stopping ??= (async () => {
        controller.abort();
        for (const wake of sessionWaiters) wake();
        await session?.stop(reason, graceMs);
      })();
      return stopping;
    },
  };
}
