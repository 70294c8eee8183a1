// Where the guest agent's channels are: a virtio-serial port found by name (the default), an explicit
// character device, an isa-serial tty, or a UNIX/TCP socket (tests, demos, network-only guests).
import { ConfigError } from '../common/wire/errors.js';

export type GuestChannelSpec =
  | { kind: 'virtio'; name: string }
  | { kind: 'device'; path: string }
  | { kind: 'serial'; path: string; baud: number }
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number };

const FORMS = 'virtio:NAME, a device path (/dev/vport1p2, /dev/virtio-ports/NAME), serial:/dev/ttyS1[@BAUD], unix:/path/to/socket or tcp:HOST:PORT';

// Parse a `--character-device` / `--channel` value.
export function parseGuestChannelSpec(text: string): GuestChannelSpec {
  const value = text.trim();
  if (value.startsWith('virtio:') && value.length > 7) return { kind: 'virtio', name: value.slice(7) };
  if (value.startsWith('unix:') && value.length > 5) return { kind: 'unix', path: value.slice(5) };
  const tcp = /^tcp:(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(value);
  if (tcp) return { kind: 'tcp', host: tcp[1]!.replace(/^\[|\]$/g, ''), port: Number(tcp[2]) };
  const serial = /^(?:serial:)?(\/dev\/tty[A-Za-z]+\d+)(?:@(\d+))?$/.exec(value);
  if (serial && (value.startsWith('serial:') || /^\/dev\/tty(S|AMA|USB)\d+$/.test(serial[1]!))) {
    return { kind: 'serial', path: serial[1]!, baud: serial[2] ? Number(serial[2]) : 38400 };
  }
  if (value.startsWith('/')) return { kind: 'device', path: value };
  throw new ConfigError(`Unrecognised channel \`${text}\`: expected ${FORMS}.`);
}

// Say where a channel is, for logs.
export function describeGuestChannel(spec: GuestChannelSpec): string {
  switch (spec.kind) {
    case 'virtio':
      return `virtio-serial port ${spec.name}`;
    case 'device':
      return spec.path;
    case 'serial':
      return `serial ${spec.path}@${spec.baud}`;
    case 'unix':
      return `unix:${spec.path}`;
    case 'tcp':
      return `tcp:${spec.host}:${spec.port}`;
  }
}
