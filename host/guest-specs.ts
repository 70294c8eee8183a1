// `--guest NAME=SPEC`: guests that are not libvirt's (plain QEMU `-chardev socket,server=on`, tests, the
// demo). Parsing only: the CLI needs it without loading the watcher (static-guests.ts) and chokidar.
import { join, resolve } from 'node:path';
import { ConfigError } from '../common/wire/errors.js';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';
import type { ChannelRole, DiscoveredGuest } from './guest-model.js';

/** A guest given on the command line; paths are absolute. At least one channel is set. */
export interface StaticGuestSpec {
  name: string;
  hostToGuest?: string;
  guestToHost?: string;
}

const SPEC_HELP = 'NAME=DIR (a directory holding the sockets negotiator-host-to-guest.0 and negotiator-guest-to-host.0) or NAME=h2g=PATH,g2h=PATH';
const GUEST_NAME = /^[\w.:@+-]{1,128}$/;
const KEYS: Record<string, ChannelRole> = { h2g: 'hostToGuest', g2h: 'guestToHost' };

// Parse one `--guest` value; relative paths are taken from `cwd`. Pure: the sockets need not exist yet.
export function parseGuestSpec(option: string, cwd: string = process.cwd()): StaticGuestSpec {
  const equals = option.indexOf('=');
  const name = option.slice(0, Math.max(equals, 0));
  const spec = option.slice(equals + 1);
  if (equals < 0 || spec.trim() === '') throw new ConfigError(`Expected \`--guest\` to be ${SPEC_HELP}, got \`${option}\``);
  if (!GUEST_NAME.test(name)) {
    throw new ConfigError(`\`--guest ${option}\`: the guest name \`${name}\` must be 1-128 letters, digits or . _ : @ + -`);
  }
  if (!/^(?:h2g|g2h)=/.test(spec)) {
    const directory = resolve(cwd, spec);
    return { name, hostToGuest: join(directory, CHANNEL_NAMES.hostToGuest), guestToHost: join(directory, CHANNEL_NAMES.guestToHost) };
  }
  const guest: StaticGuestSpec = { name };
  // Split only before something like a key, so a path may hold commas (but not `,word=`).
  for (const part of spec.split(/,(?=[\w-]+=)/)) {
    const [key = '', ...rest] = part.split('=');
    const path = rest.join('=');
    const role = KEYS[key];
    if (role === undefined) throw new ConfigError(`\`--guest ${option}\`: unknown key \`${key}\`; use h2g=PATH and/or g2h=PATH`);
    if (path === '') throw new ConfigError(`\`--guest ${option}\`: \`${key}=\` needs a socket path`);
    if (guest[role] !== undefined) throw new ConfigError(`\`--guest ${option}\`: \`${key}\` is given twice`);
    guest[role] = resolve(cwd, path);
  }
  return guest;
}

// Parse every `--guest` value; a name given twice is an error.
export function parseGuestSpecs(options: readonly string[], cwd?: string): StaticGuestSpec[] {
  const specs = options.map((option) => parseGuestSpec(option, cwd));
  const seen = new Set<string>();
  for (const spec of specs) {
    if (seen.has(spec.name)) throw new ConfigError(`\`--guest ${spec.name}=...\` is given twice; give each guest once`);
    seen.add(spec.name);
  }
  return specs;
}

// The guest a spec names, as discovery reports it; its sockets need not exist (yet).
export function staticGuestOf(spec: StaticGuestSpec): DiscoveredGuest {
  return {
    name: spec.name,
    source: 'static',
    channels: {
      ...(spec.hostToGuest ? { hostToGuest: { path: spec.hostToGuest } } : {}),
      ...(spec.guestToHost ? { guestToHost: { path: spec.guestToHost } } : {}),
    },
  };
}
