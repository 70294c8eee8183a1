// "The peer is too old": a stream needs the `streams` capability on the other side (wire/capabilities.ts).
import { requireCapability } from '../wire/capabilities.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

/** The first release whose agents serve `stream.open`. */
export const STREAMS_RELEASE = '0.2.0';

// Throw peerTooOld unless the (handshaken) peer offers forwarded streams.
export function requireStreams(peer: RpcPeer): void {
  requireCapability(peer, 'streams', STREAMS_RELEASE);
}
