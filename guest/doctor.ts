// `negotiator-guest doctor`: the guest half of Negotiator's Debugging section as checks, one line each,
// `ok|warn|FAIL  <what>  <fix>`; the exit code is 1 when any check FAILs. The daemon is asked first (its
// pid tells whether a busy port is held by it), but the lines follow the path a byte takes: driver, port
// names, device nodes, daemon, host. The host is asked through the daemon when one runs (it holds the
// ports: a second opener gets EBUSY), otherwise on the port directly.
import { constants as fsConstants, type Stats } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describeAgent } from '../common/daemon/agent-session.js';
import type { ByteChannel } from '../common/wire/byte-channel.js';
import { formatCliError, type CliIo } from '../common/cli/actions.js';
import { printChecks, type CheckStatus, type DoctorCheck } from '../common/cli/doctor-report.js';
import { startClientPeer } from '../common/cli/client.js';
import { checkDaemon } from '../common/cli/daemon-check.js';
import { errorMessage } from '../common/wire/errors.js';
import { silentLogger } from '../common/base/logger.js';
import { METHODS, type AgentInfo, type ListCommandsResult } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import { describeGuestChannel, type GuestChannelSpec } from './channel-spec.js';
import { openGuestChannel } from './open-channel.js';
import { findDeviceHolders, listVirtioPorts } from './virtio-ports.js';

export { CHECK_STATUSES, exitCodeOfChecks, formatChecks, type CheckStatus, type DoctorCheck } from '../common/cli/doctor-report.js';

export interface GuestDoctorOptions {
  /** The channels as the daemon is told them (`virtio:NAME` and device paths are checked here). */
  hostToGuest: GuestChannelSpec;
  guestToHost: GuestChannelSpec | undefined;
  controlSocket: string;
  localInfo: Omit<AgentInfo, 'nonce'>;
  /** Deadline of each question to the daemon or the host, ms. */
  timeoutMs: number;
  /** Where sysfs, device nodes and procfs are; default `/sys`, `/dev`, `/proc`. */
  sysRoot?: string;
  devRoot?: string;
  procRoot?: string;
  /** Open a device read-write and close it again (default: O_RDWR | O_NONBLOCK | O_NOCTTY). */
  tryOpenDevice?: (device: string) => Promise<void>;
  /** Open the channel to the host when no daemon runs (default: the guest-to-host spec, as the CLI does). */
  openHostChannel?: () => Promise<ByteChannel>;
}

/** Records one check. */
type AddCheck = (status: CheckStatus, id: string, what: string, fix?: string) => void;

interface DaemonStatus {
  agent: AgentInfo;
  channels: Array<{ name: string; open: boolean; connected: boolean; peer: AgentInfo | null; error: string | null }>;
}

const HOST_FIX = 'on the host, start negotiator-host --daemon and run `negotiator-host doctor GUEST` there';

// Run every check; resolves with them in print order.
export async function diagnoseGuest(options: GuestDoctorOptions): Promise<DoctorCheck[]> {
  const roots = { sysRoot: options.sysRoot ?? '/sys', devRoot: options.devRoot ?? '/dev', procRoot: options.procRoot ?? '/proc' };
  const checks: DoctorCheck[] = [];
  const add: AddCheck = (status, id, what, fix) => void checks.push({ id, status, what, ...(fix ? { fix } : {}) });
  const daemonChecks: DoctorCheck[] = [];
  const daemon = await queryDaemon(options, daemonChecks);
  try {
    const specs = [options.hostToGuest, ...(options.guestToHost ? [options.guestToHost] : [])];
    const wanted = specs.flatMap((spec) => (spec.kind === 'virtio' ? [spec.name] : []));
    const devices = specs.flatMap((spec) => (spec.kind === 'device' ? [{ name: spec.path, device: spec.path }] : []));
    let portsUsable = true;
    if (wanted.length > 0) {
      const ports = await listVirtioPorts(roots);
      const driver = await checkDriver(roots, ports.length > 0, add);
      const found = wanted.flatMap((name) => ports.filter((port) => port.name === name));
      const missing = wanted.filter((name) => !ports.some((port) => port.name === name));
      if (missing.length === 0) {
        add('ok', 'ports', `ports found by name: ${found.map((port) => `${port.name} (${port.entry})`).join(', ')}`);
      } else {
        portsUsable = false;
        const others = ports.map((port) => `${port.name} (${port.entry})`).join(', ');
        add(
          'fail',
          'ports',
          `no virtio-serial port named ${missing.join(' or ')} in ${path.join(roots.sysRoot, 'class', 'virtio-ports')}; ${others ? `found only ${others}` : 'found no named ports at all'}`,
          driver
            ? 'the channels are not in the domain: on the host run `negotiator-host setup GUEST`, then stop and start the guest (virsh shutdown GUEST; virsh start GUEST): a reboot is not enough'
            : 'load virtio_console (above); if the ports are still missing, add the channels on the host: negotiator-host setup GUEST',
        );
      }
      devices.unshift(...found.map((port) => ({ name: port.name, device: port.device })));
    }
    if (!(await checkDevices(devices, daemon?.status.agent.pid, roots.procRoot, options, add))) portsUsable = false;
    checks.push(...daemonChecks);
    await checkHost(options, daemon?.peer, portsUsable, add);
  } finally {
    await daemon?.peer.close();
  }
  return checks;
}

async function queryDaemon(options: GuestDoctorOptions, checks: DoctorCheck[]): Promise<{ peer: RpcPeer; status: DaemonStatus } | undefined> {
  const daemon = await checkDaemon<DaemonStatus>({
    id: 'guest-daemon',
    noun: 'guest daemon',
    controlSocket: options.controlSocket,
    localInfo: options.localInfo,
    timeoutMs: options.timeoutMs,
    groupHint: 'add yourself to the group that owns it',
    fixes: {
      access: 'run as root, or join the group that owns the socket',
      absent: 'start negotiator-guest --daemon (`systemctl enable --now negotiator-guest`; installed with npm, put the package\'s examples/services/negotiator-guest.service in /etc/systemd/system/ first): without it the host cannot call this guest',
      restart: 'restart it and read its log',
    },
  }, checks);
  if (!daemon) return undefined;
  const { status } = daemon;
  const down = status.channels.filter((channel) => !channel.connected);
  if (down.length === 0) {
    const peerInfo = status.channels.find((channel) => channel.peer)?.peer;
    checks.push({ id: 'daemon-channels', status: 'ok', what: `the daemon's channels are connected to ${peerInfo ? describeAgent(peerInfo) : 'the host agent'}` });
  }
  for (const channel of down) {
    const why = channel.error ?? (channel.open ? 'open, but the host agent has not answered its hello' : 'not open');
    checks.push({ id: 'daemon-channels', status: 'fail', what: `the daemon's channel ${channel.name} is not connected: ${why}`, fix: HOST_FIX });
  }
  return daemon;
}

// Is the virtio_console driver there? A module is in /proc/modules; a built-in one only in /sys/module.
async function checkDriver(roots: { sysRoot: string; procRoot: string }, portsSeen: boolean, add: AddCheck): Promise<boolean> {
  const modules = await readFile(path.join(roots.procRoot, 'modules'), 'utf8').catch(() => '');
  if (/^virtio_console\s/m.test(modules)) {
    add('ok', 'virtio-console', 'virtio_console module loaded');
  } else if (await stat(path.join(roots.sysRoot, 'module', 'virtio_console')).then(() => true, () => false)) {
    add('ok', 'virtio-console', 'virtio_console built into the kernel');
  } else if (portsSeen) {
    add('ok', 'virtio-console', 'virtio_console present (virtio-serial ports exist)');
  } else {
    add('fail', 'virtio-console', 'virtio_console is not loaded', 'modprobe virtio_console; if the kernel has no such module (modinfo virtio_console), boot one built with CONFIG_VIRTIO_CONSOLE');
    return false;
  }
  return true;
}

// Can the device nodes be opened (or are they held by the daemon)? false when one cannot be used.
async function checkDevices(
  devices: ReadonlyArray<{ name: string; device: string }>,
  daemonPid: number | undefined,
  procRoot: string,
  options: GuestDoctorOptions,
  add: AddCheck,
): Promise<boolean> {
  const tryOpen = options.tryOpenDevice ?? tryOpenDevice;
  const usable: string[] = [];
  for (const { name, device } of devices) {
    const label = name === device ? device : `${device} (${name})`;
    let stats: Stats;
    try {
      stats = await stat(device);
    } catch (error) {
      add('fail', 'devices', `no device node ${label}: ${errorMessage(error)}`, 'mount devtmpfs on /dev (mount -t devtmpfs devtmpfs /dev) or start udev');
      continue;
    }
    try {
      await tryOpen(device);
      usable.push(`${label} opens read-write`);
      continue;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') {
        add('fail', 'devices', `no read-write access to ${label} (owner uid ${stats.uid}, gid ${stats.gid}, mode ${(stats.mode & 0o777).toString(8)}; we are uid ${process.getuid?.() ?? '?'})`, 'run as root (the guest daemon does), or give this user the device with a udev rule (OWNER, GROUP, MODE)');
        continue;
      }
      if (code !== 'EBUSY') {
        add('fail', 'devices', `cannot open ${label}: ${errorMessage(error)}`, 'check that it is a virtio-serial port');
        continue;
      }
    }
    const holders = await findDeviceHolders(device, { procRoot }).catch(() => []);
    if (daemonPid !== undefined && holders.some((holder) => holder.pid === daemonPid)) {
      usable.push(`${label} is held by the guest daemon (pid ${daemonPid})`);
    } else if (holders.length > 0) {
      const who = holders.map((holder) => `pid ${holder.pid}: ${holder.command}`).join('; ');
      add('fail', 'devices', `${label} is busy: held by ${who}`, 'a port takes only one opener: stop that process (an agent given the wrong port? a second negotiator-guest?)');
    } else {
      add('fail', 'devices', `${label} is busy, and no process visible here holds it`, 'run as root to see every process (it may be in another PID namespace); a port takes only one opener');
    }
  }
  if (usable.length > 0) add('ok', 'devices', usable.join(', '));
  return usable.length === devices.length;
}

// Open read-write without blocking and close at once. Bytes the host queued for an unopened port are
// dropped by the close: harmless here, as nothing holds the port (else this gets EBUSY).
async function tryOpenDevice(device: string): Promise<void> {
  const handle = await open(device, fsConstants.O_RDWR | fsConstants.O_NONBLOCK | fsConstants.O_NOCTTY);
  await handle.close();
}

async function checkHost(options: GuestDoctorOptions, daemon: RpcPeer | undefined, portsUsable: boolean, add: AddCheck): Promise<void> {
  const started = Date.now();
  if (daemon) {
    try {
      const result = (await daemon.request(METHODS.listCommands, {}, { timeoutMs: options.timeoutMs })) as ListCommandsResult;
      add('ok', 'host', `the host answers through the guest daemon (${result.commands.length} command${result.commands.length === 1 ? '' : 's'} listed in ${Date.now() - started} ms)`);
    } catch (error) {
      add('fail', 'host', `the host does not answer through the guest daemon: ${errorMessage(error)}`, HOST_FIX);
    }
    return;
  }
  if (!portsUsable) return;
  const spec = options.guestToHost ?? options.hostToGuest;
  const timeoutMs = Math.min(options.timeoutMs || 5000, 5000);
  let peer: RpcPeer | undefined;
  try {
    const channel = await (options.openHostChannel ?? (() => openGuestChannel(spec, { logger: silentLogger, timeoutMs, ...(options.sysRoot ? { sysRoot: options.sysRoot } : {}), ...(options.devRoot ? { devRoot: options.devRoot } : {}) })))();
    peer = startClientPeer(channel, { localInfo: options.localInfo, label: 'the host', requestTimeoutMs: timeoutMs });
    const info = await peer.waitForReady(timeoutMs);
    await peer.request(METHODS.ping, {}, { timeoutMs });
    add('ok', 'host', `the host answers: ${describeAgent(info)}; hello and ping took ${Date.now() - started} ms (direct on ${describeGuestChannel(spec)}, no guest daemon)`);
  } catch (error) {
    add('fail', 'host', `the host does not answer on ${describeGuestChannel(spec)}: ${errorMessage(error)}`, HOST_FIX);
  } finally {
    await peer?.close();
  }
}

// ---- output (the same shape as negotiator-host doctor's) ----------------------------------------------

// Run `negotiator-guest doctor`; resolves with the exit code (0: nothing FAILed, 1: something did).
export async function runDoctor(options: GuestDoctorOptions & { json: boolean }, io: CliIo, program = 'negotiator-guest'): Promise<number> {
  try {
    const checks = await diagnoseGuest(options);
    return printChecks(checks, options.json, io);
  } catch (error) {
    io.stderr.write(formatCliError(program, error));
    return 1;
  }
}
