// Features by capability (the protocol is additive, protocol.ts): before using a feature that a peer
// of an older release lacks, check its hello's capabilities and fail with a message that says which
// release the peer needs, instead of an `unknown method` from deep inside the exchange.
import { RpcError } from './errors.js';
import { ERROR_CODES, type AgentInfo } from './protocol.js';

/** What requireCapability reads: an RpcPeer, or anything with the peer's hello and a name for it. */
export interface CapabilityHolder {
  readonly peerInfo: AgentInfo | undefined;
  readonly options: { readonly label: string };
}

// Throw RpcError `peerTooOld` unless the connected peer offers `capability` (added in `release`).
// Call after the handshake (waitForReady); a peer not yet known is reported as such.
export function requireCapability(peer: CapabilityHolder, capability: string, release: string): void {
  const info = peer.peerInfo;
  if (!info) {
    throw new RpcError(ERROR_CODES.peerTooOld, `cannot check whether ${peer.options.label} offers \`${capability}\`: no handshake with it yet`);
  }
  if (info.capabilities.includes(capability)) return;
  throw new RpcError(
    ERROR_CODES.peerTooOld,
    `the ${info.side} agent on ${peer.options.label} (${info.name} ${info.version}) is too old: it does not offer \`${capability}\`, ` +
      `which needs negotiator ${release} or later; upgrade the ${info.side}'s negotiator to ${release} or later`,
    { capability, release, peerVersion: info.version },
  );
}

/** Does the connected peer offer `capability`? (False while no handshake is done.) */
export function peerOffers(peer: CapabilityHolder, capability: string): boolean {
  return peer.peerInfo?.capabilities.includes(capability) ?? false;
}
