// The host's table of the guests it can talk to (not to be confused with the command registry): fed by
// the sources (libvirt domains and `--guest` options) through the GuestSink interface, announcing
// `guest-up`, `guest-down` and `guest-changed`. guest-discovery.ts wires the sources to one.
import { EventEmitter } from 'node:events';
import { silentLogger, type Logger } from '../common/base/logger.js';
import type { DiscoveredGuest, GuestSink, GuestSource, GuestTableEvents } from './guest-model.js';

// Keeps the latest guest of each name per source; a static guest hides a libvirt domain of the same name.
export class GuestTable extends EventEmitter<GuestTableEvents> implements GuestSink {
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
