// Where a CLI's request for a guest goes (the host daemon's execute relay asks): the host-to-guest
// channel of the guest the request names, once its agent has answered the handshake; or an error that
// says what to do.
import { RpcError } from '../common/wire/errors.js';
import { ERROR_CODES } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import type { GuestConnections } from './guest-connections.js';

// The guest's outbound peer for a relayed request's params (`guest`), within `timeoutMs`.
export async function resolveGuestPeer(connections: GuestConnections, params: Record<string, unknown>, timeoutMs: number): Promise<RpcPeer> {
  const name = params.guest;
  if (typeof name !== 'string' || name === '') {
    throw new RpcError(ERROR_CODES.invalidParams, 'which guest? pass its name (negotiator-host --execute CMD GUEST)');
  }
  const connection = connections.get(name);
  if (!connection) {
    const known = connections.list().map((c) => c.guest.name);
    throw new RpcError(ERROR_CODES.unknownGuest, `unknown guest \`${name}\`; known guests: ${known.join(', ') || '(none: is libvirt reachable, or pass --guest NAME=...?)'}`, { guest: name, known });
  }
  if (!connection.outbound) {
    throw new RpcError(ERROR_CODES.unknownGuest, `guest \`${name}\` has no negotiator channels: add them to its domain (see libvirt/ and the README), then stop and start it`, { guest: name });
  }
  return connection.outbound.waitForPeer(timeoutMs);
}
