// virtio-serial ports as the guest kernel shows them, and the OS access around them: ports are found by channel
// name in sysfs (the vportNpM numbers change with the machine's other virtio devices), opened non-blocking
// and exclusively (a second opener gets EBUSY), and the processes that hold one open are named.
import { constants as fsConstants, open } from 'node:fs';
import { readdir, readFile, readlink, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ConfigError, errorMessage } from '../common/wire/errors.js';
import type { Logger } from '../common/base/logger.js';

export interface VirtioPort {
  /** The channel name from the domain XML (`<target type='virtio' name='...'/>`). */
  name: string;
  /** The character device, `${devRoot}/${entry}`. */
  device: string;
  /** The sysfs entry, `vportNpM`. */
  entry: string;
}

export interface VirtioPortsOptions {
  /** Where sysfs is mounted. Default `/sys`. */
  sysRoot?: string;
  /** Where device nodes live. Default `/dev`. */
  devRoot?: string;
}

export interface WaitForVirtioPortOptions extends VirtioPortsOptions {
  /** Give up after this long. Default 5000. */
  timeoutMs?: number;
  /** Look again this often. Default 100. */
  intervalMs?: number;
  signal?: AbortSignal;
}

/** A port the caller asked for by name is not there. */
export class PortNotFoundError extends Error {
  override name = 'PortNotFoundError';
  readonly portName: string;
  /** The names that were there. */
  readonly foundNames: readonly string[];
  constructor(message: string, portName: string, foundNames: readonly string[], options?: ErrorOptions) {
    super(message, options);
    this.portName = portName;
    this.foundNames = foundNames;
  }
}

/** The device could not be opened (`code` is the errno name; `holders` is filled for EBUSY). */
export class DeviceOpenError extends Error {
  override name = 'DeviceOpenError';
  readonly code: string;
  readonly holders: readonly DeviceHolder[];
  constructor(message: string, code: string, holders: readonly DeviceHolder[], options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.holders = holders;
  }
}

export interface OpenPortDeviceOptions {
  /** How long to retry while another process holds the port (EBUSY). Default 10000. */
  openTimeoutMs?: number;
  /** For errors. Default: the device path. */
  description?: string;
  logger?: Logger;
}

/** A process that has a device open. */
export interface DeviceHolder {
  pid: number;
  /** Its command line (or `comm` when the command line is empty, as for kernel threads). */
  command: string;
}

// List the named virtio-serial ports, sorted by sysfs entry. A port whose name is not announced yet is left out.
export async function listVirtioPorts(options: VirtioPortsOptions = {}): Promise<VirtioPort[]> {
  const { sysRoot, devRoot } = resolveRoots(options);
  const classDir = join(sysRoot, 'class', 'virtio-ports');
  let entries: string[];
  try {
    entries = await readdir(classDir);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return [];
    throw error;
  }
  const ports = await Promise.all(
    entries.sort().map(async (entry): Promise<VirtioPort | undefined> => {
      const name = await readFile(join(classDir, entry, 'name'), 'utf8').then(
        (text) => text.trim(),
        () => '',
      );
      // The driver prints "(null)" until the host has told it the name (names come after the port).
      if (name === '' || name === '(null)') return undefined;
      return { name, device: join(devRoot, entry), entry };
    }),
  );
  return ports.filter((port): port is VirtioPort => port !== undefined);
}

// The port named `name`; throws PortNotFoundError saying what is there and what to do.
export async function findVirtioPort(name: string, options: VirtioPortsOptions = {}): Promise<VirtioPort> {
  validatePortName(name);
  const ports = await listVirtioPorts(options);
  const port = ports.find((candidate) => candidate.name === name);
  if (port) return port;
  throw createPortNotFoundError(name, ports, options);
}

// The port named `name`, polling until it appears (names are announced shortly after the driver loads).
export async function waitForVirtioPort(name: string, options: WaitForVirtioPortOptions = {}): Promise<VirtioPort> {
  validatePortName(name);
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 100;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 0) {
    throw new ConfigError(`Expected the \`timeoutMs\` option to be a non-negative integer, got \`${timeoutMs}\`.`);
  }
  if (!Number.isInteger(intervalMs) || intervalMs <= 0) {
    throw new ConfigError(`Expected the \`intervalMs\` option to be a positive integer, got \`${intervalMs}\`.`);
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    options.signal?.throwIfAborted();
    const ports = await listVirtioPorts(options);
    const port = ports.find((candidate) => candidate.name === name);
    if (port) return port;
    const left = deadline - Date.now();
    if (left <= 0) throw createPortNotFoundError(name, ports, options, timeoutMs);
    await sleep(Math.min(intervalMs, left), undefined, options.signal ? { signal: options.signal } : {});
  }
}

// The processes that have `devicePath` open, found through the /proc/PID/fd links (only those we may read).
export async function findDeviceHolders(devicePath: string, options: { procRoot?: string } = {}): Promise<DeviceHolder[]> {
  const procRoot = options.procRoot ?? '/proc';
  const target = await realpath(devicePath).catch(() => devicePath);
  const pids = (await readdir(procRoot).catch(() => [])).filter((entry) => /^\d+$/.test(entry));
  const holders: DeviceHolder[] = [];
  for (const pid of pids) {
    const fdDir = join(procRoot, pid, 'fd');
    const fds = await readdir(fdDir).catch(() => []);
    for (const fd of fds) {
      const link = await readlink(join(fdDir, fd)).catch(() => undefined);
      if (link !== target && link !== devicePath) continue;
      holders.push({ pid: Number(pid), command: await readCommand(join(procRoot, pid)) });
      break;
    }
  }
  return holders;
}

// Open a port's device read-write and O_NONBLOCK, retrying with backoff while another process holds it.
export async function openPortDevice(devicePath: string, options: OpenPortDeviceOptions = {}): Promise<number> {
  const openTimeoutMs = options.openTimeoutMs ?? 10_000;
  if (!Number.isInteger(openTimeoutMs) || openTimeoutMs < 0) {
    throw new ConfigError(`Expected the \`openTimeoutMs\` option to be a non-negative integer, got \`${openTimeoutMs}\`.`);
  }
  const description = options.description ?? devicePath;
  const flags = fsConstants.O_RDWR | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY;
  const deadline = Date.now() + openTimeoutMs;
  for (let delayMs = 20; ; delayMs = Math.min(delayMs * 2, 500)) {
    try {
      return await openAsync(devicePath, flags);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'UNKNOWN';
      if (code !== 'EBUSY') throw createOpenError(devicePath, description, code, error);
      const left = deadline - Date.now();
      if (left <= 0) throw await createBusyError(devicePath, description, openTimeoutMs, error);
      options.logger?.debug(`${description} is busy, retrying in ${Math.min(delayMs, left)} ms`);
      await sleep(Math.min(delayMs, left));
    }
  }
}

const openAsync = promisify(open);

function createOpenError(devicePath: string, description: string, code: string, cause: unknown): DeviceOpenError {
  const fix =
    code === 'ENOENT'
      ? 'check the path given to `--character-device`, or let the port be found by its name'
      : code === 'EACCES' || code === 'EPERM'
        ? 'run as root, or give this user read-write access to the device (a udev rule)'
        : 'check that the device is a virtio-serial port or a serial line';
  return new DeviceOpenError(`Cannot open ${description} (${devicePath}): ${errorMessage(cause)}. To fix: ${fix}.`, code, [], {
    cause,
  });
}

async function createBusyError(devicePath: string, description: string, waitedMs: number, cause: unknown): Promise<DeviceOpenError> {
  const holders = await findDeviceHolders(devicePath).catch(() => []);
  const others = holders.filter((holder) => holder.pid !== process.pid);
  const who =
    others.length > 0
      ? `another process holds it open (${others.map((holder) => `pid ${holder.pid}: ${holder.command}`).join('; ')})`
      : holders.length > 0
        ? `this process (pid ${process.pid}) already has it open`
        : 'another process holds it open (none found in /proc: it may be in another PID namespace, or need root to see)';
  const fix =
    others.length > 0 || holders.length === 0
      ? 'Stop that process (another negotiator-guest, or an agent given the wrong port?) and start again'
      : 'Open each port once and share the channel';
  return new DeviceOpenError(
    `Cannot open ${description} (${devicePath}): ${who}, and a virtio-serial port takes only one opener. ` +
      `${fix}. Gave up after ${waitedMs} ms (\`openTimeoutMs\`).`,
    'EBUSY',
    holders,
    { cause },
  );
}

function createPortNotFoundError(
  name: string,
  ports: readonly VirtioPort[],
  options: VirtioPortsOptions,
  waitedMs?: number,
): PortNotFoundError {
  const classDir = join(resolveRoots(options).sysRoot, 'class', 'virtio-ports');
  const waited = waitedMs === undefined ? '' : ` after waiting ${waitedMs} ms`;
  const found =
    ports.length > 0
      ? `found only ${ports.map((port) => `"${port.name}" (${port.entry})`).join(', ')}. ` +
        `Add a channel named "${name}" to the domain XML (see libvirt/ and the README) and restart the guest.`
      : `there are no named virtio-serial ports in ${classDir}. ` +
        'Either the virtio_console kernel module is not loaded (`modprobe virtio_console`), or the domain has no ' +
        'virtio-serial channels (add them to the domain XML: see libvirt/ and the README).';
  return new PortNotFoundError(
    `No virtio-serial port named "${name}"${waited}: ${found} ` +
      'To use a device directly instead, pass `--character-device PATH`.',
    name,
    ports.map((port) => port.name),
  );
}

function validatePortName(name: string): void {
  if (typeof name !== 'string' || name === '' || name.includes('/')) {
    throw new ConfigError(`Expected a virtio-serial port name such as \`negotiator-guest-to-host.0\`, got \`${String(name)}\`.`);
  }
}

function resolveRoots(options: VirtioPortsOptions): Required<VirtioPortsOptions> {
  return { sysRoot: options.sysRoot ?? '/sys', devRoot: options.devRoot ?? '/dev' };
}

async function readCommand(processDir: string): Promise<string> {
  const cmdline = await readFile(join(processDir, 'cmdline'), 'utf8').catch(() => '');
  const command = cmdline.split('\0').filter(Boolean).join(' ');
  if (command) return command;
  return (await readFile(join(processDir, 'comm'), 'utf8').catch(() => '?')).trim();
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}
