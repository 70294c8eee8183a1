// For a CLI without a running daemon: find one guest's channel sockets now (a --guest spec, else
// `virsh dumpxml NAME`), with errors that say what is wrong and what to do.
import { RpcError } from '../common/wire/errors.js';
import { ERROR_CODES } from '../common/wire/protocol.js';
import type { DiscoveredGuest } from './guest-model.js';
import { findNegotiatorChannels, parseDomainXml } from './domain-xml.js';
import { staticGuestOf, type StaticGuestSpec } from './guest-specs.js';
import { VIRSH_FAILURES, VirshError, type Virsh } from './virsh.js';

// Locate a guest by name; throws RpcError unknownGuest (listing the known guests) when there is none.
export async function locateGuest(name: string, staticGuests: readonly StaticGuestSpec[], virsh: Virsh | undefined): Promise<DiscoveredGuest> {
  const spec = staticGuests.find((g) => g.name === name);
  if (spec) return staticGuestOf(spec);
  if (!virsh) throw await unknownGuest(name, staticGuests, undefined);
  let xml: string;
  try {
    xml = await virsh.dumpXml(name);
  } catch (error) {
    if (error instanceof VirshError && error.kind === VIRSH_FAILURES.noDomain) throw await unknownGuest(name, staticGuests, virsh);
    throw error;
  }
  const domain = parseDomainXml(xml);
  if (domain.id === undefined) {
    throw new RpcError(ERROR_CODES.unknownGuest, `guest \`${name}\` is not running: start it (virsh start ${name})`, { guest: name });
  }
  const { channels, problems } = findNegotiatorChannels(domain);
  if (!channels.hostToGuest && !channels.guestToHost) {
    throw new RpcError(
      ERROR_CODES.unknownGuest,
      problems.length > 0
        ? `guest \`${name}\`: ${problems.join('; ')}`
        : `guest \`${name}\` has no negotiator channels: add them to its domain (see libvirt/ and the README), then stop and start it`,
      { guest: name },
    );
  }
  return { name: domain.name, ...(domain.uuid ? { uuid: domain.uuid } : {}), id: domain.id, source: 'libvirt', channels };
}

async function unknownGuest(name: string, staticGuests: readonly StaticGuestSpec[], virsh: Virsh | undefined): Promise<RpcError> {
  const known = staticGuests.map((g) => g.name);
  let libvirtNote = '';
  if (virsh) {
    try {
      known.push(...(await virsh.listDomains()).map((d) => d.name));
    } catch (error) {
      libvirtNote = ` (libvirt did not answer: ${(error as Error).message})`;
    }
  } else {
    libvirtNote = ' (libvirt lookups are off)';
  }
  return new RpcError(
    ERROR_CODES.unknownGuest,
    `unknown guest \`${name}\`; running guests: ${[...new Set(known)].sort().join(', ') || '(none)'}${libvirtNote}`,
    { guest: name, known },
  );
}
