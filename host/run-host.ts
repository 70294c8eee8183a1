// What `negotiator-host` does with its parsed options: run the daemon, list guests, or list / execute
// on one guest (through the daemon when one runs, else straight to the guest's socket).
import { readLocalAgentInfo } from '../common/wire/agent-info.js';
import { EXIT_CODES, exitCodeOfError, formatCliError, runExecuteAction, runListAction, type CliIo } from '../common/cli/actions.js';
import { connectToDaemon, runClientAction, startClientPeer, type ClientConnection } from '../common/cli/client.js';
import type { ServingOptions } from '../common/cli/options.js';
import { createLogger } from '../common/base/logger.js';
import { METHODS } from '../common/wire/protocol.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import type { SetupCliOptions } from './setup-domain.js';
import type { GuestStatus } from './guest-model.js';
import { parseGuestSpecs, staticGuestOf } from './guest-specs.js';

export const PROGRAM = 'negotiator-host';

/** Options as the CLI parsed them (see host/cli.ts for their documentation and defaults). */
export interface HostCliOptions extends ServingOptions {
  daemon: boolean;
  listGuests: boolean;
  listCommands: boolean;
  execute?: string;
  guestName?: string;
  timeoutMs: number;
  guest: string[];
  libvirt: boolean;
  libvirtUri: string;
  rescanIntervalMs: number;
  controlSocket: string;
  controlMode: number;
  controlGroup?: number;
  json: boolean;
  stdin: boolean;
}

// Run the CLI; resolves with the exit code (the daemon only when asked to stop).
export async function runHostCli(options: HostCliOptions, io: CliIo): Promise<number> {
  const logger = createLogger({ level: options.logLevel });
  const staticGuests = parseGuestSpecs(options.guest);
  if (options.daemon) {
    // The daemon's modules (discovery, guest table, command registry, runner) are loaded only here: a CLI starts faster without them.
    const { startHostDaemon } = await import('./daemon.js');
    const { stopOnSignals } = await import('../common/daemon/lifecycle.js');
    const { resolveServingConfig } = await import('../common/daemon/serving-config.js');
    const serving = await resolveServingConfig(options);
    const { createVirsh } = await import('./virsh.js');
    const daemon = await startHostDaemon({
      discovery: {
        staticGuests,
        libvirt: options.libvirt ? { virsh: createVirsh({ uri: options.libvirtUri, logger: logger.child('virsh') }) } : false,
        rescanIntervalMs: options.rescanIntervalMs,
      },
      ...serving,
      controlSocket: options.controlSocket,
      controlMode: options.controlGroup !== undefined && options.controlMode === 0o600 ? 0o660 : options.controlMode,
      ...(options.controlGroup !== undefined ? { controlGid: options.controlGroup } : {}),
      requestTimeoutMs: options.timeoutMs,
      maxLineBytes: options.maxLineBytes,
      graceMs: options.graceMs,
      logger,
    });
    return new Promise<number>(() => {
      stopOnSignals(logger, (signal) => daemon.stop(`${PROGRAM} received ${signal}`), options.graceMs * 2 + 10_000);
    });
  }
  const wantsGuest = options.listCommands || options.execute !== undefined;
  if (!options.listGuests && !wantsGuest) {
    io.stderr.write(`${PROGRAM}: nothing to do: give --daemon, --list-guests, --list-commands GUEST or --execute 'COMMAND ARGS' GUEST (see --help)\n`);
    return EXIT_CODES.usage;
  }
  if (wantsGuest && !options.guestName) {
    io.stderr.write(`${PROGRAM}: which guest? e.g. ${PROGRAM} ${options.listCommands ? '--list-commands' : `--execute '${options.execute}'`} GUEST (--list-guests shows them)\n`);
    return EXIT_CODES.usage;
  }
  const localInfo = await readLocalAgentInfo('host');
  // Without a daemon the CLI asks libvirt itself; loaded on demand (virsh runs through execa).
  const loadVirsh = async () => (options.libvirt ? (await import('./virsh.js')).createVirsh({ uri: options.libvirtUri }) : undefined);
  const groupHint = 'ask for access (the daemon\'s --control-group) or use sudo';

  if (options.listGuests) {
    try {
      const daemon = await connectToDaemon(options.controlSocket, localInfo, options.timeoutMs, groupHint);
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

  const guestName = options.guestName!;
  const connect = async (): Promise<ClientConnection> => {
    const viaDaemon = await connectToDaemon(options.controlSocket, localInfo, options.timeoutMs, groupHint);
    if (viaDaemon) return { peer: viaDaemon, viaDaemon: true };
    // A --guest guest is known already; locate-guest (libvirt: virsh, domain XML) loads only for the others.
    const spec = staticGuests.find((g) => g.name === guestName);
    const guest = spec ? staticGuestOf(spec) : await (await import('./locate-guest.js')).locateGuest(guestName, staticGuests, await loadVirsh());
    const endpoint = guest.channels.hostToGuest ?? guest.channels.guestToHost!;
    const channel = await connectChannel(endpoint.path, 5000);
    const peer = startClientPeer(channel, localInfo, `guest ${guestName}${endpoint.state ? ` (libvirt says the channel is ${endpoint.state})` : ''}`, options.timeoutMs);
    return { peer, viaDaemon: false };
  };
  return runClientAction(PROGRAM, io, connect, async ({ peer, viaDaemon }, signal) => {
    const target = viaDaemon ? { guest: guestName } : {};
    if (options.listCommands) return runListAction({ peer, ...target, timeoutMs: options.timeoutMs, json: options.json, io });
    return runExecuteAction({ peer, ...target, commandLine: options.execute!, timeoutMs: options.timeoutMs, json: options.json, forwardStdin: options.stdin, viaDaemon, io, signal });
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
