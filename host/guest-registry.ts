// The host's list of guests it can talk to, fed by two sources (libvirt domains and `--guest` options),
// announcing `guest-up`, `guest-down` and `guest-changed`. `createGuestDiscovery()` wires the sources in.
import { EventEmitter } from 'node:events';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';
import { ConfigError } from '../common/wire/errors.js';
import { silentLogger, type Logger } from '../common/base/logger.js';
import { LibvirtDiscovery, type LibvirtDiscoveryOptions } from './libvirt-discovery.js';
import { StaticGuestWatcher, type StaticGuestSpec } from './static-guests.js';
import { createVirsh, type Virsh, type VirshOptions } from './virsh.js';

/** The virtio-serial channel (port) names, the same in libvirt XML, QEMU `name=` and the guest's sysfs. */
export { CHANNEL_NAMES };
export type ChannelRole = keyof typeof CHANNEL_NAMES;

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

/** A guest whose channel sockets are known. Frozen: the registry hands out the same objects it keeps. */
export interface DiscoveredGuest {
  name: string;
  uuid?: string;
  /** libvirt's domain id: changes on every start of the domain. */
  id?: number;
  source: GuestSource;
  channels: { hostToGuest?: ChannelEndpoint; guestToHost?: ChannelEndpoint };
}

/**
 * Events. `guest-up` and `guest-down` come in pairs per guest instance: a restarted domain (new id or
 * uuid) is a `guest-down` of the old instance and a `guest-up` of the new one, whose socket paths differ.
 * `guest-changed` is the same instance with other channels (hot-plug) or channel states.
 */
export interface GuestRegistryEvents {
  'guest-up': [guest: DiscoveredGuest];
  'guest-down': [guest: DiscoveredGuest];
  'guest-changed': [guest: DiscoveredGuest, previous: DiscoveredGuest];
}

/** Where sources report what they see; the registry works out what changed. */
export interface GuestSink {
  /** The source sees this guest now. */
  set(guest: DiscoveredGuest): void;
  /** The source no longer sees a guest of this name. */
  delete(source: GuestSource, name: string): void;
}

// Keeps the latest guest of each name per source; a static guest hides a libvirt domain of the same name.
export class GuestRegistry extends EventEmitter<GuestRegistryEvents> implements GuestSink {
  readonly #bySource: Record<GuestSource, Map<string, DiscoveredGuest>> = { libvirt: new Map(), static: new Map() };
  readonly #logger: Logger;
  readonly #shadowWarned = new Set<string>();

  constructor(logger: Logger = silentLogger) {
    super();
    this.#logger = logger;
  }

  get(name: string): DiscoveredGuest | undefined {
    return this.#bySource.static.get(name) ?? this.#bySource.libvirt.get(name);
  }

  list(): DiscoveredGuest[] {
    const names = new Set([...this.#bySource.static.keys(), ...this.#bySource.libvirt.keys()]);
    return [...names].sort().flatMap((name) => this.get(name) ?? []);
  }

  set(guest: DiscoveredGuest): void {
    this.#change(guest.name, () => this.#bySource[guest.source].set(guest.name, freezeGuest(guest)));
    if (this.#bySource.static.has(guest.name) && this.#bySource.libvirt.has(guest.name) && !this.#shadowWarned.has(guest.name)) {
      this.#shadowWarned.add(guest.name);
      this.#logger.warn(`guest name \`${guest.name}\` is both a --guest option and a libvirt domain; using the --guest one (rename it to reach the domain)`);
    }
  }

  delete(source: GuestSource, name: string): void {
    this.#change(name, () => this.#bySource[source].delete(name));
  }

  // Apply one update and emit what it changed in the visible guest of that name.
  #change(name: string, update: () => void): void {
    const before = this.get(name);
    update();
    const after = this.get(name);
    if (before === after) return;
    if (before && after && isSameInstance(before, after)) {
      if (!isEqualGuest(before, after)) this.emit('guest-changed', after, before);
      return;
    }
    if (before) this.emit('guest-down', before);
    if (after) this.emit('guest-up', after);
  }
}

function isSameInstance(a: DiscoveredGuest, b: DiscoveredGuest): boolean {
  return a.source === b.source && a.uuid === b.uuid && a.id === b.id;
}

function isEqualGuest(a: DiscoveredGuest, b: DiscoveredGuest): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

// A copy with a fixed key order (so equality is a string compare), frozen all the way down.
function freezeGuest(guest: DiscoveredGuest): DiscoveredGuest {
  const channels: DiscoveredGuest['channels'] = {};
  for (const role of ['hostToGuest', 'guestToHost'] as const) {
    const endpoint = guest.channels[role];
    if (endpoint) {
      channels[role] = Object.freeze(endpoint.state === undefined ? { path: endpoint.path } : { path: endpoint.path, state: endpoint.state });
    }
  }
  return Object.freeze({
    name: guest.name,
    ...(guest.uuid === undefined ? {} : { uuid: guest.uuid }),
    ...(guest.id === undefined ? {} : { id: guest.id }),
    source: guest.source,
    channels: Object.freeze(channels),
  });
}

/** How to reach libvirt: a ready seam (`virsh`), or options to make one; plus the discovery's own knobs. */
export type GuestDiscoveryLibvirtOptions = VirshOptions & Omit<LibvirtDiscoveryOptions, 'sink' | 'logger' | 'virsh'> & { virsh?: Virsh };

export interface GuestDiscoveryOptions {
  /** Guests given with `--guest` (see static-guests.ts). Default none. */
  staticGuests?: readonly StaticGuestSpec[];
  /** libvirt discovery; `false` turns it off. Default on, `qemu:///system`. */
  libvirt?: false | GuestDiscoveryLibvirtOptions;
  /** Safety-net rescan period of both sources in ms; default 30000. */
  rescanIntervalMs?: number;
  logger?: Logger;
}

/**
 * A running discovery. Call `close()` when done (idempotent): it stops watchers and kills virsh; it
 * does not emit `guest-down` for the guests still known.
 */
export interface GuestDiscovery {
  readonly registry: GuestRegistry;
  /** Resolves once both sources have made their first full pass (libvirt may have failed: it retries). */
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

// Start discovering guests from libvirt and from the static specs.
export function createGuestDiscovery(options: GuestDiscoveryOptions = {}): GuestDiscovery {
  const logger = options.logger ?? silentLogger;
  const rescanIntervalMs = options.rescanIntervalMs ?? 30_000;
  if (!Number.isSafeInteger(rescanIntervalMs) || rescanIntervalMs <= 0) {
    throw new ConfigError(`Expected the \`rescanIntervalMs\` option to be a positive integer, got \`${String(rescanIntervalMs)}\``);
  }
  const registry = new GuestRegistry(logger);
  // libvirt first: its constructor checks its options before any I/O, so a bad one leaves nothing running.
  const libvirtOptions = options.libvirt;
  const libvirt = libvirtOptions === false
    ? undefined
    : new LibvirtDiscovery({
        rescanIntervalMs,
        ...libvirtOptions,
        virsh: libvirtOptions?.virsh ?? createVirsh({ ...libvirtOptions, logger: logger.child('virsh') }),
        sink: registry,
        logger: logger.child('libvirt'),
      });
  const watcher = new StaticGuestWatcher({ specs: options.staticGuests ?? [], sink: registry, rescanIntervalMs, logger: logger.child('static') });
  const ready = Promise.all([watcher.ready, libvirt?.ready]).then(() => undefined);
  let closing: Promise<void> | undefined;
  return {
    registry,
    ready,
    close: () => (closing ??= Promise.all([watcher.close(), libvirt?.close()]).then(() => undefined)),
  };
}
