// A ByteChannel over a serial line (isa-serial: /dev/ttyS1): a tty, so it must be raw (no echo, no line
// editing, 8 bits) at a known speed, as QEMU's guest agent sets it. Node has no termios binding: stty
// does it, on the line we already hold open so that no last close can reset it. A serial line says
// nothing when the host connects or leaves, so its channel never resets.
import { close } from 'node:fs';
import { ConfigError, errorMessage } from '../common/wire/errors.js';
import { createDeviceChannel, type PortChannel, type PortChannelOptions } from './port-channel.js';
import { DeviceOpenError, openPortDevice } from './virtio-ports.js';

export const SERIAL_SPEEDS = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] as const;

export interface SerialChannelOptions extends PortChannelOptions {
  /** Line speed. Default 38400 (QEMU's guest agent). */
  baud?: number;
  /** How long stty may take. Default 5000. */
  sttyTimeoutMs?: number;
}

// Open a serial line, make it raw at `baud`, and hold it in a channel.
export async function openSerialChannel(devicePath: string, options: SerialChannelOptions = {}): Promise<PortChannel> {
  const { baud = 38400, sttyTimeoutMs = 5000, ...channelOptions } = options;
  if (!(SERIAL_SPEEDS as readonly number[]).includes(baud)) {
    throw new ConfigError(`Expected the \`baud\` option to be one of ${SERIAL_SPEEDS.join(', ')}, got \`${baud}\`.`);
  }
  const description = channelOptions.description ?? `${devicePath}@${baud}`;
  const fd = await openPortDevice(devicePath, { openTimeoutMs: channelOptions.openTimeoutMs, description, logger: channelOptions.logger });
  try {
    await configureSerialLine(devicePath, baud, sttyTimeoutMs);
    return createDeviceChannel(fd, { ...channelOptions, description });
  } catch (error) {
    await new Promise<void>((resolve) => close(fd, () => resolve()));
    throw error;
  }
}

// Raw mode, 8N1, no modem control (a virtual line has no carrier), at `baud`.
export async function configureSerialLine(devicePath: string, baud: number, timeoutMs = 5000): Promise<void> {
  const args = ['-F', devicePath, 'raw', '-echo', 'cs8', '-parenb', '-cstopb', 'clocal', String(baud)];
  try {
    // Loaded here: execa's start-up (its modules; docs/benchmarks.md) is a cost CLIs on a virtio port never pay.
    const { execa } = await import('execa');
    await execa('stty', args, { timeout: timeoutMs, stdin: 'ignore' });
  } catch (error) {
    const detail = (error as { stderr?: unknown }).stderr ? String((error as { stderr?: unknown }).stderr).trim() : errorMessage(error);
    throw new DeviceOpenError(
      `Cannot set ${devicePath} to raw mode at ${baud} baud with \`stty ${args.join(' ')}\`: ${detail}. ` +
        'Check that it is a serial line (a tty) and that stty is installed (coreutils or busybox).',
      'STTY',
      [],
      { cause: error },
    );
  }
}
