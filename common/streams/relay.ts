// A daemon's control socket serving `stream.open` for local CLIs: each stream is opened upstream (on the
// other side's agent) and piped through, so any number of CLIs and forwards share the daemon's channel.
// Flow control holds end to end: each hop buffers at most a window per direction and stream.
import { openStream } from './client.js';
import { serveStreams, type StreamLimits } from './serve.js';
import type { Logger } from '../base/logger.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

export interface StreamRelayOptions extends StreamLimits {
  /** The peer to open on, from the raw params (the host daemon routes by `guest`); throw RpcError when none. */
  resolveUpstream: (params: Record<string, unknown>) => Promise<RpcPeer>;
  logger: Logger;
}

export function registerStreamRelay(downstream: RpcPeer, options: StreamRelayOptions): void {
  serveStreams(downstream, {
    maxStreams: options.maxStreams,
    idleTimeoutMs: options.idleTimeoutMs,
    logger: options.logger,
    open: async (params, _context, signal) => {
      const upstream = await options.resolveUpstream({ ...params });
      return openStream(upstream, { service: params.service, window: params.window, signal });
    },
  });
}
