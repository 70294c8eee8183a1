// The checks of `negotiator-host doctor`, one function per step a byte takes: libvirt, the host daemon,
// then per guest its definition, its sockets, the channel states and the agent. doctor.ts finds the
// guests and runs these; each check pushes `ok|warn|fail` lines with the fix, never throws for a finding.
import { constants as fsConstants, type Stats } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { systemIdentities, type IdentityLookup } from '../common/base/identity.js';
import { describeAgent } from '../common/daemon/agent-session.js';
import { startClientPeer } from '../common/cli/client.js';
import { checkDaemon, type DaemonView } from '../common/cli/daemon-check.js';
import type { CheckStatus, DoctorCheck } from '../common/cli/doctor-report.js';
import { errorMessage } from '../common/wire/errors.js';
import { CHANNEL_NAMES, METHODS, type AgentInfo, type ListCommandsResult } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import { findNegotiatorChannels, parseDomainXml, type DomainDescription } from './domain-xml.js';
import { CHANNEL_ROLES, type ChannelEndpoint, type ChannelRole, type GuestStatus } from './guest-model.js';
import type { StaticGuestSpec } from './guest-specs.js';
import { virshHint, type DomainDefinitions } from './setup-domain.js';
import { VirshError, type Virsh } from './virsh.js';

/** The file-system calls the socket checks make (tests deny access where they like). */
export interface DoctorFs {
  access(file: string, mode: number): Promise<void>;
  stat(file: string): Promise<Stats>;
}

export interface HostDoctorOptions {
  /** Check only this guest (libvirt domain or `--guest` name); default every running one. */
  guestName?: string;
  staticGuests: readonly StaticGuestSpec[];
  /** undefined: libvirt is not asked (`--no-libvirt`). */
  virsh: Pick<Virsh, 'uri' | 'listDomains' | 'dumpXml'> | undefined;
  definitions: DomainDefinitions | undefined;
  controlSocket: string;
  localInfo: Omit<AgentInfo, 'nonce'>;
  /** Deadline of each question to a daemon or agent, ms. */
  timeoutMs: number;
  fs?: DoctorFs;
  /** Whether AppArmor confines QEMU here (default: /sys/module/apparmor/parameters/enabled says Y). */
  isAppArmorEnabled?: () => Promise<boolean>;
  /** Names of socket owners (default: the system's, getent then /etc/passwd and /etc/group). */
  identities?: IdentityLookup;
}

/** A guest to check, as found. */
export interface GuestTarget {
  name: string;
  source: 'libvirt' | 'static';
  /** libvirt only: its live XML (for an inactive domain, the definition). */
  domain?: DomainDescription;
  endpoints: Partial<Record<ChannelRole, ChannelEndpoint>>;
}

/** Records one check of the guest being examined. */
export type AddCheck = (status: CheckStatus, id: string, what: string, fix?: string) => void;

/** What the host daemon's `status` answers. */
export interface HostDaemonStatus {
  agent: AgentInfo;
  guests: GuestStatus[];
}
export type HostDaemonView = DaemonView<HostDaemonStatus>;

const AGENT_FIX = 'start the agent in the guest (`systemctl enable --now negotiator-guest` there, or negotiator-guest --daemon), then run `negotiator-guest doctor` there';

// Can virsh run, and does libvirt answer? false when guests cannot be asked of it.
export async function checkLibvirt(options: HostDoctorOptions, checks: DoctorCheck[]): Promise<boolean> {
  const uri = options.virsh!.uri;
  if (options.definitions) {
    try {
      checks.push({ id: 'virsh', status: 'ok', what: `virsh ${await options.definitions.version()} present` });
    } catch (error) {
      checks.push({ id: 'virsh', status: 'fail', what: `virsh cannot be run: ${errorMessage(error)}`, fix: 'install libvirt-clients (apt-get install libvirt-clients); for plain QEMU guests only, pass --no-libvirt and --guest NAME=DIR' });
      return false;
    }
  }
  try {
    const running = await options.virsh!.listDomains();
    checks.push({ id: 'libvirt', status: 'ok', what: `libvirt answers at ${uri} (${plural(running.length, 'running guest')})` });
    return true;
  } catch (error) {
    const said = error instanceof VirshError && error.stderr ? error.stderr.replace(/\s*\n\s*/g, ' | ') : errorMessage(error);
    checks.push({ id: 'libvirt', status: 'fail', what: `libvirt does not answer at ${uri}: ${said}`, fix: 'start libvirtd (or virtqemud); run as root or as a member of the libvirt group; or pick the connection with --libvirt-uri' });
    return false;
  }
}

// Does the host daemon answer on its control socket? Its view (status and peer) when it does.
export function checkHostDaemon(options: HostDoctorOptions, checks: DoctorCheck[]): Promise<HostDaemonView | undefined> {
  return checkDaemon<HostDaemonStatus>({
    id: 'host-daemon',
    noun: 'host daemon',
    controlSocket: options.controlSocket,
    localInfo: options.localInfo,
    timeoutMs: options.timeoutMs,
    groupHint: 'ask for access (the daemon\'s --control-group)',
    fixes: {
      access: 'run as root, or start the daemon with --control-group and join that group',
      absent: 'start negotiator-host --daemon (`systemctl enable --now negotiator-host`; installed with npm, put the package\'s examples/services/negotiator-host.service in /etc/systemd/system/ first): without it the guests cannot call the host',
      restart: 'restart it (systemctl restart negotiator-host) and read its log',
    },
    describe: (status) => `, ${plural(status.guests.length, 'guest')}`,
  }, checks);
}

// One guest's checks, from its definition to its agent.
export async function checkGuest(target: GuestTarget, options: HostDoctorOptions, daemon: HostDaemonView | undefined): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const add: AddCheck = (status, id, what, fix) => {
    checks.push({ id, status, guest: target.name, what, ...(fix ? { fix } : {}) });
  };
  const { name } = target;
  const uri = options.virsh?.uri ?? '';
  if (target.domain && !(await checkDefinition(target, target.domain, options, add))) return checks;

  const socketsUsable = await checkSockets(target, options, add);
  const states = CHANNEL_ROLES.flatMap((role) => (target.endpoints[role]?.state ? [[role, target.endpoints[role]!.state] as const] : []));
  const disconnected = states.filter(([, state]) => state === 'disconnected').map(([role]) => CHANNEL_NAMES[role]);
  if (disconnected.length > 0) {
    add('fail', 'channel-state', `libvirt says ${disconnected.join(' and ')} ${disconnected.length === 1 ? 'is' : 'are'} disconnected: no process in the guest has the port open`, AGENT_FIX);
  } else if (states.length > 0) {
    add('ok', 'channel-state', `libvirt says ${states.length === 2 ? 'both channels are' : `${CHANNEL_NAMES[states[0]![0]]} is`} connected (the guest has its ports open)`);
  }

  if (daemon) {
    const status = daemon.status.guests.find((guest) => guest.name === name);
    if (!status) {
      add('fail', 'daemon-guest', `the host daemon does not know ${name}`, target.source === 'libvirt'
        ? `the daemon finds libvirt guests itself unless started with --no-libvirt or another --libvirt-uri (${uri}): check its options and log`
        : `start the daemon with --guest ${name}=... as well`);
      return checks;
    }
    if (!status.agent) {
      const errors = CHANNEL_ROLES.flatMap((role) => (status.channels[role]?.error ? [`${CHANNEL_NAMES[role]}: ${status.channels[role]!.error}`] : []));
      add('fail', 'daemon-guest', `the host daemon is not connected to the agent in ${name}${errors.length > 0 ? ` (${errors.join('; ')})` : ''}`, AGENT_FIX);
      return checks;
    }
    add('ok', 'daemon-guest', `the host daemon is connected to ${describeAgent(status.agent)}`);
    const started = Date.now();
    try {
      const result = (await daemon.peer.request(METHODS.listCommands, { guest: name }, { timeoutMs: options.timeoutMs })) as ListCommandsResult;
      add('ok', 'agent', `the agent answers through the host daemon (${plural(result.commands.length, 'command')} listed in ${Date.now() - started} ms)`);
    } catch (error) {
      add('fail', 'agent', `the agent does not answer through the host daemon: ${errorMessage(error)}`, AGENT_FIX);
    }
    return checks;
  }
  const endpoint = target.endpoints.hostToGuest ?? target.endpoints.guestToHost;
  if (!endpoint || !socketsUsable || disconnected.length > 0) return checks;
  const started = Date.now();
  let peer: RpcPeer | undefined;
  try {
    const timeoutMs = Math.min(options.timeoutMs || 5000, 5000);
    peer = startClientPeer(await connectChannel(endpoint.path, timeoutMs), { localInfo: options.localInfo, label: `the agent in ${name}`, requestTimeoutMs: timeoutMs });
    const info = await peer.waitForReady(timeoutMs);
    await peer.request(METHODS.ping, {}, { timeoutMs });
    add('ok', 'agent', `the agent answers: ${describeAgent(info)}; hello and ping took ${Date.now() - started} ms (direct, no host daemon)`);
  } catch (error) {
    add('fail', 'agent', `the agent does not answer on ${endpoint.path}: ${errorMessage(error)}`, AGENT_FIX);
  } finally {
    await peer?.close();
  }
  return checks;
}

// Are the channels in the running domain (or, for an inactive one, in its definition)? false: stop here.
async function checkDefinition(target: GuestTarget, domain: DomainDescription, options: HostDoctorOptions, add: AddCheck): Promise<boolean> {
  const { name } = target;
  const uri = options.virsh?.uri ?? '';
  const wanted = Object.values(CHANNEL_NAMES);
  const present = wanted.filter((channelName) => domain.channels.some((channel) => channel.name === channelName));
  const missing = wanted.filter((channelName) => !present.includes(channelName));
  const setupFix = `run \`negotiator-host setup ${name}\`, then ${describeStopStart(name, uri)}`;
  if (domain.id === undefined) {
    if (missing.length === 0) add('ok', 'channels', `negotiator channels defined (${present.join(', ')})`);
    else add('fail', 'channels', `the definition lacks ${missing.join(' and ')}`, `run \`negotiator-host setup ${name}\``);
    add('fail', 'running', 'not running, so nothing more can be checked', `start it: ${virshHint(uri, 'start', name)}`);
    return false;
  }
  const { problems } = findNegotiatorChannels(domain);
  if (problems.length > 0) {
    add('fail', 'channels', problems.join('; '), `replace those channels with the elements of libvirt/negotiator-channels.xml (${virshHint(uri, 'edit', name)}), then stop and start the guest`);
    return false;
  }
  if (missing.length === 0) {
    add('ok', 'channels', `negotiator channels defined (${present.join(', ')})`);
    return true;
  }
  let persistent: string[] = [];
  let transient = false;
  try {
    transient = options.definitions ? !(await options.definitions.describeDomain(name)).persistent : false;
    if (options.definitions && !transient) {
      const definition = parseDomainXml(await options.definitions.dumpInactiveXml(name));
      persistent = wanted.filter((channelName) => definition.channels.some((channel) => channel.name === channelName));
    }
  } catch {
    // Only sharpens the advice below.
  }
  if (missing.every((channelName) => persistent.includes(channelName))) {
    add('fail', 'channels', `${name} runs without ${missing.join(' and ')}, though its persistent definition has ${missing.length === 1 ? 'it' : 'them'} (added after it started)`, describeStopStart(name, uri));
  } else if (transient) {
    add('fail', 'channels', `${name} lacks ${missing.join(' and ')} and is transient`, 'add the elements of libvirt/negotiator-channels.xml to the XML it is created from, then create it again');
  } else {
    add(present.length === 0 && options.guestName === undefined ? 'warn' : 'fail', 'channels', present.length === 0 ? 'no negotiator channels (fine if this guest does not run negotiator)' : `${name} lacks ${missing.join(' and ')}`, setupFix);
  }
  return false;
}

// Do the channel sockets exist, and may we connect? false when some socket cannot be used.
async function checkSockets(target: GuestTarget, options: HostDoctorOptions, add: AddCheck): Promise<boolean> {
  const fs = options.fs ?? { access, stat };
  const paths = CHANNEL_ROLES.flatMap((role) => (target.endpoints[role] ? [target.endpoints[role]!.path] : []));
  const seen = new Set<string>();
  for (const socketPath of paths) {
    const problem = await inspectSocket(socketPath, target, options, fs);
    if (problem && !seen.has(problem.what)) {
      seen.add(problem.what);
      add('fail', 'sockets', problem.what, problem.fix);
    }
  }
  if (seen.size > 0) return false;
  const directories = [...new Set(paths.map((socketPath) => path.dirname(socketPath)))];
  add('ok', 'sockets', `channel sockets exist and we may connect (${directories.join(', ')})`);
  return true;
}

async function inspectSocket(socketPath: string, target: GuestTarget, options: HostDoctorOptions, fs: DoctorFs): Promise<{ what: string; fix: string } | undefined> {
  const asRoot = 'run as root (sudo)';
  const identities = options.identities ?? systemIdentities;
  const restart = target.source === 'libvirt' ? `, then stop and start ${target.name}` : ', then restart that QEMU';
  const qemuFix = async (directory: string): Promise<string> => {
    const appArmor = (await (options.isAppArmorEnabled ?? isAppArmorEnabled)())
      ? '; AppArmor is enabled here: allow QEMU the directory with `owner /var/lib/libvirt/qemu/channel/target/* rw,` (`.../target/** rw,` for libvirt\'s domain-ID-NAME subdirectories) in /etc/apparmor.d/abstractions/libvirt-qemu and reload AppArmor'
      : '';
    return target.source === 'libvirt'
      ? `give QEMU's user the directory, as Negotiator's README does: mkdir -p ${directory} && chown libvirt-qemu:kvm ${directory}${appArmor}${restart}`
      : `check the path given to --guest, and that QEMU runs with -chardev socket,path=${socketPath},server=on,wait=off`;
  };
  const directories: string[] = [];
  for (let directory = path.dirname(socketPath); ; directory = path.dirname(directory)) {
    directories.unshift(directory);
    if (directory === path.dirname(directory)) break;
  }
  for (const directory of directories) {
    try {
      await fs.access(directory, fsConstants.X_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { what: `directory ${directory} does not exist, so the channel sockets in it cannot either`, fix: await qemuFix(directory) };
      const owner = await fs.stat(directory).then((stats) => describeOwner(stats, identities), () => 'owner unknown');
      return { what: `cannot reach the channel sockets: no access to directory ${directory} (${owner}; we are uid ${process.getuid?.() ?? '?'})`, fix: `${asRoot}, or let this user search ${directory}` };
    }
  }
  let stats: Stats;
  try {
    stats = await fs.stat(socketPath);
  } catch (error) {
    const directory = path.dirname(socketPath);
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return { what: `cannot inspect ${socketPath}: ${errorMessage(error)}`, fix: asRoot };
    const owner = await fs.stat(directory).then((stats) => describeOwner(stats, identities), () => 'owner unknown');
    return { what: `${socketPath} does not exist although the guest runs: QEMU could not create it in ${directory} (${owner})`, fix: await qemuFix(directory) };
  }
  if (!stats.isSocket()) return { what: `${socketPath} is not a socket`, fix: await qemuFix(path.dirname(socketPath)) };
  try {
    await fs.access(socketPath, fsConstants.W_OK);
  } catch {
    return { what: `no permission to connect to ${socketPath} (${describeOwner(stats, identities)})`, fix: asRoot };
  }
  return undefined;
}

async function isAppArmorEnabled(): Promise<boolean> {
  return (await readFile('/sys/module/apparmor/parameters/enabled', 'utf8').catch(() => '')).trim() === 'Y';
}

// `owner root:libvirt-qemu, mode 0750`, with names where the system knows them.
function describeOwner(stats: Stats, identities: IdentityLookup): string {
  const user = identities.user(String(stats.uid))?.name ?? String(stats.uid);
  const group = identities.group(String(stats.gid))?.name ?? String(stats.gid);
  return `owner ${user}:${group}, mode ${(stats.mode & 0o7777).toString(8).padStart(4, '0')}`;
}

function describeStopStart(name: string, uri: string): string {
  return `stop and start it: ${virshHint(uri, 'shutdown', name)}, wait until it is shut off, ${virshHint(uri, 'start', name)} (a reboot is not enough)`;
}

export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
