// "The peer is too old": a stream needs the `streams` capability on the other side. One small function,
// to be replaced by the wire layer's requireCapability(peer, capability, release) when it lands.
import { RpcError } from '../wire/errors.js';
import { ERROR_CODES } from '../wire/protocol.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

/** The first release whose agents serve `stream.open`. */
export const STREAMS_RELEASE = '0.2.0';

// Throw peerTooOld unless the (handshaken) peer offers forwarded streams.
export function requireStreams(peer: RpcPeer): void {
  const info = peer.peerInfo;
  if (!info || info.capabilities.includes('streams')) return;
  throw new RpcError(
    ERROR_CODES.peerTooOld,
    `the ${info.side} agent on ${info.os.hostname || peer.options.label} runs negotiator ${info.version}, which is too old for forwarded streams: it needs release ${STREAMS_RELEASE} or later; upgrade it`,
    { capability: 'streams', release: STREAMS_RELEASE, version: info.version },
  );
}
