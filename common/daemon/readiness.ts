// `agent.wait` on a daemon's control socket (`negotiator-host --wait GUEST`, `negotiator-guest --wait`):
// answer once the other agent has answered on every channel concerned, or fail at the deadline saying
// what is still missing. The daemon looks again every 200 ms, only while someone waits.
import { setTimeout as sleep } from 'node:timers/promises';
import { RpcError, TimeoutError } from '../wire/errors.js';
import { ERROR_CODES, METHODS, isRecord } from '../wire/protocol.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

const RECHECK_MS = 200;

/** Why the other side is not ready yet ('' or undefined: it is); may throw RpcError for bad params. */
export type ReadinessCheck = (params: Record<string, unknown>) => string | undefined;

// Register `agent.wait` on a control client's peer. Params: `timeoutMs` (0 = none; default 10 s), and what
// `notReady` reads (the host's `guest`). `what` names the awaited side in the timeout message.
export function registerAgentWait(peer: RpcPeer, what: (params: Record<string, unknown>) => string, notReady: ReadinessCheck): void {
  peer.handle(METHODS.agentWait, async (raw, context) => {
    const params = isRecord(raw) ? raw : {};
    const timeoutMs = typeof params.timeoutMs === 'number' && Number.isSafeInteger(params.timeoutMs) && params.timeoutMs >= 0 ? params.timeoutMs : 10_000;
    const started = Date.now();
    for (;;) {
      const missing = notReady(params);
      if (!missing) return { waitedMs: Date.now() - started };
      if (timeoutMs > 0 && Date.now() - started >= timeoutMs) throw new TimeoutError(`${what(params)} is not ready after ${timeoutMs / 1000} s: ${missing}`, timeoutMs);
      await sleep(RECHECK_MS, undefined, { signal: context.signal }).catch(() => {});
      if (context.signal.aborted) throw new RpcError(ERROR_CODES.requestCanceled, 'waiting was canceled');
    }
  });
}
