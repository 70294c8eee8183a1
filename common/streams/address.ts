// The textual forms of the streams feature, parsed at the edge with messages that name the fix:
// a service's address (`tcp:HOST:PORT`, `unix:PATH`), a service declaration (`NAME=ADDRESS [guests=A,B]`)
// and a forward (`[BIND:]PORT:SERVICE`, `unix:PATH:SERVICE`, with `@GUEST` on the host daemon).
import net from 'node:net';
import path from 'node:path';
import { ConfigError } from '../wire/errors.js';
import { validateCommandName } from '../commands/name.js';

/** The default drop-in directory of services (like the command directory's). */
export const DEFAULT_SERVICE_DIRECTORY = '/etc/negotiator/services';

export type ServiceAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export interface ServiceSpec {
  name: string;
  address: ServiceAddress;
  /** Host only: the guests that may open it; undefined = every guest. */
  guests?: string[];
}

/** Where a forward listens: a TCP port (on `host`, default 127.0.0.1) or a UNIX socket path. */
export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export interface ForwardSpec {
  listen: ListenAddress;
  service: string;
  /** Host daemon only: the guest whose service it opens. */
  guest?: string;
  /** The text it was parsed from, for log lines. */
  text: string;
}

function parsePort(text: string, what: string, allowZero = false): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < (allowZero ? 0 : 1) || port > 65_535) {
    throw new ConfigError(`${what}: expected a port number ${allowZero ? '0 (any free one)' : '1'}-65535, got \`${text}\``);
  }
  return port;
}

// `host:port` with an optional [IPv6] host.
function splitHostPort(text: string, what: string, allowZero = false): { host: string; port: number } {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!match) throw new ConfigError(`${what}: expected HOST:PORT (IPv6 in brackets: [::1]:22), got \`${text}\``);
  return { host: match[1]!, port: parsePort(match[2]!, what, allowZero) };
}

/** `tcp:HOST:PORT` or `unix:/absolute/path`. */
export function parseServiceAddress(text: string, what = 'service address'): ServiceAddress {
  if (text.startsWith('tcp:')) return { kind: 'tcp', ...splitHostPort(text.slice(4), what) };
  if (text.startsWith('unix:')) {
    const file = text.slice(5);
    if (!path.isAbsolute(file)) throw new ConfigError(`${what}: expected unix:/absolute/path, got \`${text}\``);
    return { kind: 'unix', path: file };
  }
  throw new ConfigError(`${what}: expected tcp:HOST:PORT or unix:PATH, got \`${text}\``);
}

export function formatAddress(address: ServiceAddress | ListenAddress): string {
  if (address.kind === 'unix') return `unix:${address.path}`;
  return `tcp:${net.isIPv6(address.host) ? `[${address.host}]` : address.host}:${address.port}`;
}

// The address part and options of a declaration: `tcp:127.0.0.1:22 guests=vm1,vm2`.
function parseServiceBody(name: string, body: string, what: string): ServiceSpec {
  const [addressText, ...rest] = body.trim().split(/\s+/);
  if (!addressText) throw new ConfigError(`${what}: no address for service \`${name}\` (expected tcp:HOST:PORT or unix:PATH)`);
  const spec: ServiceSpec = { name, address: parseServiceAddress(addressText, `${what}: service \`${name}\``) };
  for (const option of rest) {
    const guests = /^guests=(.+)$/.exec(option);
    if (!guests) throw new ConfigError(`${what}: unknown option \`${option}\` for service \`${name}\` (only guests=NAME,NAME)`);
    spec.guests = guests[1]!.split(',').filter(Boolean);
  }
  return spec;
}

function checkServiceName(name: string, what: string): string {
  try {
    return validateCommandName(name);
  } catch (error) {
    const message = (error as Error).message
      .replace('Command names are file names in the command directories', 'Service names follow the command-name rules')
      .replace('Invalid command name', 'Invalid service name');
    throw new ConfigError(`${what}: ${message}`);
  }
}

/** `--service NAME=ADDRESS [guests=A,B]`. */
export function parseServiceOption(text: string): ServiceSpec {
  const at = text.indexOf('=');
  if (at <= 0) throw new ConfigError(`--service: expected NAME=ADDRESS (e.g. ssh=tcp:127.0.0.1:22), got \`${text}\``);
  const name = checkServiceName(text.slice(0, at), '--service');
  return parseServiceBody(name, text.slice(at + 1), '--service');
}

/** A drop-in file: its name is the service's, its first line that is not blank or a `#` comment the rest. */
export function parseServiceFile(name: string, content: string, file: string): ServiceSpec {
  const line = content.split('\n').map((l) => l.trim()).find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) throw new ConfigError(`${file}: empty; write one line like tcp:127.0.0.1:22 or unix:/run/app.sock`);
  return parseServiceBody(checkServiceName(name, file), line, file);
}

/**
 * `[BIND:]PORT:SERVICE` or `unix:PATH:SERVICE`, then `@GUEST` when `withGuest` (the host daemon's form).
 * The service is after the last `:`, so PATH and an IPv6 BIND in brackets may hold colons.
 */
export function parseForwardSpec(text: string, withGuest: boolean): ForwardSpec {
  const what = `--forward \`${text}\``;
  let rest = text;
  let guest: string | undefined;
  if (withGuest) {
    const at = rest.lastIndexOf('@');
    if (at < 0) throw new ConfigError(`${what}: a daemon's forward names its guest: [BIND:]PORT:SERVICE@GUEST`);
    guest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (guest === '') throw new ConfigError(`${what}: empty guest name after \`@\``);
  }
  const colon = rest.lastIndexOf(':');
  if (colon < 0) throw new ConfigError(`${what}: expected [BIND:]PORT:SERVICE or unix:PATH:SERVICE`);
  const service = checkServiceName(rest.slice(colon + 1), what);
  const listenText = rest.slice(0, colon);
  let listen: ListenAddress;
  if (listenText.startsWith('unix:')) {
    const file = listenText.slice(5);
    if (file === '') throw new ConfigError(`${what}: empty socket path`);
    listen = { kind: 'unix', path: path.resolve(file) };
  } else if (/^\d+$/.test(listenText)) {
    listen = { kind: 'tcp', host: '127.0.0.1', port: parsePort(listenText, what, true) };
  } else {
    listen = { kind: 'tcp', ...splitHostPort(listenText, what, true) };
  }
  return { listen, service, ...(guest !== undefined ? { guest } : {}), text };
}
