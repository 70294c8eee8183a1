// The host's model of a guest: the types that discovery (libvirt, --guest), the guest table and the
// connections share. A leaf of host/: it imports nothing back from host/, so every other module here
// may import it without a circle.
import { CHANNEL_NAMES, type AgentInfo } from '../common/wire/protocol.js';

/** The virtio-serial channel (port) names, the same in libvirt XML, QEMU `name=` and the guest's sysfs. */
export { CHANNEL_NAMES };
export type ChannelRole = keyof typeof CHANNEL_NAMES;
export const CHANNEL_ROLES: readonly ChannelRole[] = ['hostToGuest', 'guestToHost'];

export const GUEST_EVENTS = {
  up: 'guest-up',
  down: 'guest-down',
  changed: 'guest-changed',
} as const;
export type GuestEventName = (typeof GUEST_EVENTS)[keyof typeof GUEST_EVENTS];

export const GUEST_SOURCES = ['libvirt', 'static'] as const;
export type GuestSource = (typeof GUEST_SOURCES)[number];

/** The host end of one channel: a UNIX socket that QEMU listens on. */
export interface ChannelEndpoint {
  path: string;
  /** libvirt only, as of the last inspection: whether a guest process has the port open. */
  state?: 'connected' | 'disconnected';
}

/** A guest whose channel sockets are known. Frozen: the guest table hands out the same objects it keeps. */
export interface DiscoveredGuest {
  name: string;
  uuid?: string;
  /** libvirt's domain id: changes on every start of the domain. */
  id?: number;
  source: GuestSource;
  channels: { hostToGuest?: ChannelEndpoint; guestToHost?: ChannelEndpoint };
}

/**
 * Events of the guest table. `guest-up` and `guest-down` come in pairs per guest instance: a restarted
 * domain (new id or uuid) is a `guest-down` of the old instance and a `guest-up` of the new one, whose
 * socket paths differ. `guest-changed` is the same instance with other channels (hot-plug) or channel states.
 */
export interface GuestTableEvents {
  'guest-up': [guest: DiscoveredGuest];
  'guest-down': [guest: DiscoveredGuest];
  'guest-changed': [guest: DiscoveredGuest, previous: DiscoveredGuest];
}

/** Where sources report what they see; the guest table works out what changed. */
export interface GuestSink {
  /** The source sees this guest now. */
  set(guest: DiscoveredGuest): void;
  /** The source no longer sees a guest of this name. */
  delete(source: GuestSource, name: string): void;
}

/** What `negotiator-host --list-guests` shows of a guest. */
export interface GuestStatus {
  name: string;
  uuid: string | null;
  source: DiscoveredGuest['source'];
  /** The guest agent, when a channel has completed its handshake. */
  agent: AgentInfo | null;
  channels: Partial<Record<ChannelRole, { path: string; libvirtState: string | null; open: boolean; ready: boolean; error: string | null }>>;
}

// `host-to-guest` / `guest-to-host`, as log lines and labels name a channel.
export function describeRole(role: ChannelRole): string {
  return role === 'hostToGuest' ? 'host-to-guest' : 'guest-to-host';
}
