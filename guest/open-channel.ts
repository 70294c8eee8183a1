// Open a guest channel from its spec. virtio-serial ports and ttys are held open for the daemon's life
// (guest/port-channel.ts); sockets are plain stream channels.
import { execa } from 'execa';
import type { ByteChannel } from '../common/byte-channel.js';
import { ChannelClosedError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { connectChannel } from '../common/stream-channel.js';
import type { GuestChannelSpec } from './channel-spec.js';
import { openPortChannel } from './port-channel.js';
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
      await configureSerialLine(spec.path, spec.baud);
      return openPortChannel(spec.path, { ...portOptions, description: `${spec.path}@${spec.baud}` });
    case 'unix':
      return connectChannel(spec.path, timeoutMs);
    case 'tcp':
      return connectChannel(`${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`, timeoutMs);
  }
}

// A serial line must be raw (no echo, no line editing, 8 bits) at a known speed, as QEMU's agent sets it.
// Node has no termios binding, so stty does it.
async function configureSerialLine(path: string, baud: number): Promise<void> {
  try {
    await execa('stty', ['-F', path, 'raw', '-echo', '-echoe', '-echok', '-echoctl', '-echoke', 'cs8', '-cstopb', '-parenb', 'clocal', String(baud)], { timeout: 5000 });
  } catch (error) {
    // busybox stty lacks some flags: retry with the essential ones.
    try {
      await execa('stty', ['-F', path, 'raw', '-echo', String(baud)], { timeout: 5000 });
    } catch {
      throw new ChannelClosedError(`cannot set ${path} to raw mode at ${baud} baud with stty: ${errorMessage(error)}`);
    }
  }
}
