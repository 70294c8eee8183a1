// Open a guest channel from its spec. virtio-serial ports and ttys are held open for the daemon's life
// (guest/port-channel.ts); sockets are plain stream channels.
import type { ByteChannel } from '../common/wire/byte-channel.js';
import type { Logger } from '../common/base/logger.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import type { GuestChannelSpec } from './channel-spec.js';
import { openPortChannel } from './port-channel.js';
import { openSerialChannel } from './serial-tty.js';
import { waitForVirtioPort, type VirtioPortsOptions } from './virtio-ports.js';

export interface OpenGuestChannelOptions extends VirtioPortsOptions {
  logger: Logger;
  signal?: AbortSignal;
  /** How long to wait for a named port to appear, and for a busy device to be released. Default 5000. */
  timeoutMs?: number;
}

// Open the channel a spec names; errors say what is missing and what to do.
export async function openGuestChannel(spec: GuestChannelSpec, options: OpenGuestChannelOptions): Promise<ByteChannel> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const portOptions = { logger: options.logger, openTimeoutMs: timeoutMs };
  switch (spec.kind) {
    case 'virtio': {
      const port = await waitForVirtioPort(spec.name, {
        timeoutMs,
        ...(options.sysRoot ? { sysRoot: options.sysRoot } : {}),
        ...(options.devRoot ? { devRoot: options.devRoot } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      return openPortChannel(port.device, { ...portOptions, description: `${spec.name} (${port.device})` });
    }
    case 'device':
      return openPortChannel(spec.path, { ...portOptions, description: spec.path });
    case 'serial':
      return openSerialChannel(spec.path, { ...portOptions, baud: spec.baud });
    case 'unix':
      return connectChannel(spec.path, timeoutMs);
    case 'tcp':
      return connectChannel(`${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`, timeoutMs);
  }
}
