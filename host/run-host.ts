// What `negotiator-host` does with its parsed options: run the daemon, list guests, or list / execute
// on one guest (through the daemon when one runs, else straight to the guest's socket).
import { readLocalAgentInfo } from '../common/wire/agent-info.js';
import { EXIT_CODES, exitCodeOfError, formatCliError, type CliIo } from '../common/cli/actions.js';
import { connectToDaemon, runClientAction, runInterruptible, runListOrExecute, startClientPeer, type ClientConnection } from '../common/cli/client.js';
import type { ClientOptions, ControlOptions, ServingOptions } from '../common/cli/options.js';
import type { StreamCliOptions } from '../common/cli/stream-options.js';
import { createLogger } from '../common/base/logger.js';
import { ChannelClosedError } from '../common/wire/errors.js';
import { METHODS, type AgentInfo } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import type { SetupCliOptions } from './setup-domain.js';
import type { GuestStatus } from './guest-model.js';
import { parseGuestSpecs, staticGuestOf, type StaticGuestSpec } from './guest-specs.js';
import type { Virsh } from './virsh.js';

export const PROGRAM = 'negotiator-host';

/** Options as the CLI parsed them (see host/cli.ts for their documentation and defaults). */
export interface HostCliOptions extends ServingOptions, ClientOptions, ControlOptions, StreamCliOptions {
  daemon: boolean;
  listGuests: boolean;
  listCommands: boolean;
  execute?: string;
  /** --wait GUEST / --events: see wait-events.ts. */
  wait?: boolean;
  events?: boolean;
  guestName?: string;
  guest: string[];
  libvirt: boolean;
  libvirtUri: string;
  rescanIntervalMs: number;
}

// Run the CLI; resolves with the exit code (the daemon only when asked to stop).
export async function runHostCli(options: HostCliOptions, io: CliIo): Promise<number> {
  const staticGuests = parseGuestSpecs(options.guest);
  if (options.daemon) {
    // The daemon's modules (discovery, guest table, command registry, runner) are loaded only here: a CLI starts faster without them.
    const { runDaemon } = await import('../common/daemon/start.js');
    const { startHostDaemon } = await import('./daemon.js');
    const { createVirsh } = await import('./virsh.js');
    // --control-group with the default mode: the group may connect (0660).
    const controlMode = options.controlGroup !== undefined && options.controlMode === 0o600 ? 0o660 : options.controlMode;
    const { resolveStreamConfig } = await import('../common/daemon/stream-config.js');
    return runDaemon(PROGRAM, { ...options, controlMode }, async (base) =>
      startHostDaemon({
        ...base,
        discovery: {
          staticGuests,
          libvirt: options.libvirt ? { virsh: createVirsh({ uri: options.libvirtUri, logger: base.logger.child('virsh') }) } : false,
          rescanIntervalMs: options.rescanIntervalMs,
        },
        streams: await resolveStreamConfig(options, true, base.logger.child('services')),
      }),
    );
  }
  if (options.forward.length > 1) {
    io.stderr.write(`${PROGRAM}: one --forward at a time without --daemon (run one per forward, or give them to the daemon as SPEC@GUEST)\n`);
    return EXIT_CODES.usage;
  }
  const forward = options.forward[0];
  const wantsGuest = options.listCommands || options.execute !== undefined || Boolean(options.wait) || options.connect !== undefined || forward !== undefined;
  if (!options.listGuests && !wantsGuest && !options.events) {
    io.stderr.write(`${PROGRAM}: nothing to do: give --daemon, --list-guests, --events, --wait GUEST, --list-commands GUEST, --execute 'COMMAND ARGS' GUEST, --connect SERVICE GUEST or --forward PORT:SERVICE GUEST (see --help)\n`);
    return EXIT_CODES.usage;
  }
  if (wantsGuest && !options.guestName) {
    const example = options.listCommands ? '--list-commands' : options.wait ? '--wait' : options.execute !== undefined ? `--execute '${options.execute}'` : options.connect !== undefined ? `--connect ${options.connect}` : `--forward ${forward}`;
    io.stderr.write(`${PROGRAM}: which guest? e.g. ${PROGRAM} ${example} GUEST (--list-guests shows them)\n`);
    return EXIT_CODES.usage;
  }
  const localInfo = await readLocalAgentInfo('host');
  // Without a daemon the CLI asks libvirt itself; loaded on demand (virsh runs through execa).
  const loadVirsh = async () => (options.libvirt ? (await import('./virsh.js')).createVirsh({ uri: options.libvirtUri }) : undefined);
  const groupHint = 'ask for access (the daemon\'s --control-group) or use sudo';

  if (options.listGuests) {
    try {
      const daemon = await connectToDaemon(options.controlSocket, { localInfo, requestTimeoutMs: options.timeoutMs, groupHint });
      let guests: GuestStatus[];
      if (daemon) {
        try {
          guests = ((await daemon.request(METHODS.listGuests, {}, { timeoutMs: options.timeoutMs })) as { guests: GuestStatus[] }).guests;
        } finally {
          await daemon.close();
        }
      } else {
        const { probeGuests } = await import('./list-guests.js');
        guests = await probeGuests({ staticGuests, virsh: await loadVirsh(), localInfo, timeoutMs: Math.min(options.timeoutMs || 2000, 2000) });
      }
      const { printGuests } = await import('./list-guests.js');
      printGuests(guests, { json: options.json, viaDaemon: daemon !== undefined, io });
      return EXIT_CODES.ok;
    } catch (error) {
      io.stderr.write(formatCliError(PROGRAM, error));
      return exitCodeOfError(error);
    }
  }

  if (options.events || options.wait) return runWaitOrEvents(options, io, localInfo, staticGuests, loadVirsh, groupHint);
  const guestName = options.guestName!;
  const connect = async (): Promise<ClientConnection> => {
    const viaDaemon = await connectToDaemon(options.controlSocket, { localInfo, requestTimeoutMs: options.timeoutMs, groupHint, peerTimeoutMs: options.peerTimeoutMs });
    if (viaDaemon) return { peer: viaDaemon, viaDaemon: true };
    // A --guest guest is known already; locate-guest (libvirt: virsh, domain XML) loads only for the others.
    const spec = staticGuests.find((g) => g.name === guestName);
    const guest = spec ? staticGuestOf(spec) : await (await import('./locate-guest.js')).locateGuest(guestName, staticGuests, await loadVirsh());
    const endpoint = guest.channels.hostToGuest ?? guest.channels.guestToHost!;
    const channel = await connectChannel(endpoint.path, 5000);
    const peer = startClientPeer(channel, {
      localInfo,
      label: `guest ${guestName}${endpoint.state ? ` (libvirt says the channel is ${endpoint.state})` : ''}`,
      requestTimeoutMs: options.timeoutMs,
      peerTimeoutMs: options.peerTimeoutMs,
    });
    return { peer, viaDaemon: false };
  };
  if (options.connect === undefined && forward === undefined) return runListOrExecute(PROGRAM, io, options, connect, { guest: guestName });
  // The stream modules load only for these actions: other CLIs start without them.
  const logger = createLogger({ level: options.logLevel });
  return runClientAction(PROGRAM, io, connect, async ({ peer, viaDaemon }, signal) => {
    const target = viaDaemon ? { guest: guestName } : {};
    const streams = await import('../common/cli/stream-actions.js');
    if (options.connect !== undefined) return streams.runConnectAction({ peer, ...target, service: options.connect, timeoutMs: options.timeoutMs, io, signal });
    return streams.runForwardAction({ peer, ...target, spec: forward!, timeoutMs: options.timeoutMs, io, signal, logger, targetName: `guest ${guestName}` });
  });
}

/** The control socket's default path. */
export const DEFAULT_HOST_CONTROL_SOCKET = '/run/negotiator/host.sock';

/** `negotiator-host doctor [GUEST]` as the CLI parsed it. */
export interface HostDoctorCommandOptions {
  guestName?: string;
  guest: string[];
  libvirt: boolean;
  libvirtUri: string;
  controlSocket: string;
  timeoutMs: number;
  json: boolean;
}

// `negotiator-host setup GUEST`; its module loads only when asked.
export async function runHostSetup(options: SetupCliOptions, io: CliIo): Promise<number> {
  return (await import('./setup-domain.js')).runSetup(options, io, PROGRAM);
}

// `negotiator-host doctor [GUEST]`; its module loads only when asked.
export async function runHostDoctor(options: HostDoctorCommandOptions, io: CliIo): Promise<number> {
  const localInfo = await readLocalAgentInfo('host');
  const { runDoctor } = await import('./doctor.js');
  return runDoctor(
    {
      ...(options.guestName !== undefined ? { guestName: options.guestName } : {}),
      staticGuests: parseGuestSpecs(options.guest),
      libvirt: options.libvirt,
      libvirtUri: options.libvirtUri,
      controlSocket: options.controlSocket,
      localInfo,
      timeoutMs: options.timeoutMs,
      json: options.json,
    },
    io,
    PROGRAM,
  );
}

// `--events` (through the daemon only) and `--wait GUEST` (through the daemon, else straight to the guest).
async function runWaitOrEvents(options: HostCliOptions, io: CliIo, localInfo: Omit<AgentInfo, 'nonce'>, staticGuests: StaticGuestSpec[], loadVirsh: () => Promise<Virsh | undefined>, groupHint: string): Promise<number> {
  const { followEvents, waitDirectly, waitViaDaemon } = await import('./wait-events.js');
  let daemon: RpcPeer | undefined;
  return runInterruptible(
    PROGRAM,
    io,
    async (signal) => {
      daemon = await connectToDaemon(options.controlSocket, { localInfo, requestTimeoutMs: options.timeoutMs, groupHint, peerTimeoutMs: options.peerTimeoutMs });
      if (options.events) {
        if (!daemon) throw new ChannelClosedError(`--events needs the host daemon, and none answers on ${options.controlSocket}: start ${PROGRAM} --daemon (or give its --control-socket)`);
        return followEvents(daemon, options.json, io, signal);
      }
      if (daemon) return waitViaDaemon(daemon, options.guestName!, options.timeoutMs, signal);
      const virsh = await loadVirsh();
      return waitDirectly({ guest: options.guestName!, staticGuests, virsh, localInfo, timeoutMs: options.timeoutMs, peerTimeoutMs: options.peerTimeoutMs, signal });
    },
    () => daemon?.close(),
  );
}
