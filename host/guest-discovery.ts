// Guest discovery: the two sources (libvirt domains, `--guest` sockets) feeding one guest table.
// `createGuestDiscovery()` starts them; the daemon and `--list-guests` read the table.
import { ConfigError } from '../common/wire/errors.js';
import { silentLogger, type Logger } from '../common/base/logger.js';
import { GuestTable } from './guest-table.js';
import { LibvirtDiscovery, type LibvirtDiscoveryOptions } from './libvirt-discovery.js';
import { StaticGuestWatcher } from './static-guests.js';
import type { StaticGuestSpec } from './guest-specs.js';
import { createVirsh, type Virsh, type VirshOptions } from './virsh.js';

/** How to reach libvirt: a ready seam (`virsh`), or options to make one; plus the discovery's own knobs. */
export type GuestDiscoveryLibvirtOptions = VirshOptions & Omit<LibvirtDiscoveryOptions, 'sink' | 'logger' | 'virsh'> & { virsh?: Virsh };

export interface GuestDiscoveryOptions {
  /** Guests given with `--guest` (see guest-specs.ts). Default none. */
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
  readonly guests: GuestTable;
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
  const guests = new GuestTable(logger);
  // libvirt first: its constructor checks its options before any I/O, so a bad one leaves nothing running.
  const libvirtOptions = options.libvirt;
  const libvirt = libvirtOptions === false
    ? undefined
    : new LibvirtDiscovery({
        rescanIntervalMs,
        ...libvirtOptions,
        virsh: libvirtOptions?.virsh ?? createVirsh({ ...libvirtOptions, logger: logger.child('virsh') }),
        sink: guests,
        logger: logger.child('libvirt'),
      });
  const watcher = new StaticGuestWatcher({ specs: options.staticGuests ?? [], sink: guests, rescanIntervalMs, logger: logger.child('static') });
  const ready = Promise.all([watcher.ready, libvirt?.ready]).then(() => undefined);
  let closing: Promise<void> | undefined;
  return {
    guests,
    ready,
    close: () => (closing ??= Promise.all([watcher.close(), libvirt?.close()]).then(() => undefined)),
  };
}
