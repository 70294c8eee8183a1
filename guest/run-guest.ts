// What `negotiator-guest` does with its parsed options: run the daemon, or list / execute on the host.
import { readLocalAgentInfo } from '../common/wire/agent-info.js';
import { EXIT_CODES, runExecuteAction, runListAction, type CliIo } from '../common/cli/actions.js';
import { connectToDaemon, runClientAction, startClientPeer, type ClientConnection } from '../common/cli/client.js';
import type { ServingOptions } from '../common/cli/options.js';
import type { StreamCliOptions } from '../common/cli/stream-options.js';
import { createLogger } from '../common/base/logger.js';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';
import { parseGuestChannelSpec } from './channel-spec.js';

export const PROGRAM = 'negotiator-guest';

/** Options as the CLI parsed them (see guest/cli.ts for their documentation and defaults). */
export interface GuestCliOptions extends ServingOptions, StreamCliOptions {
  daemon: boolean;
  listCommands: boolean;
  execute?: string;
  timeoutMs: number;
  characterDevice?: string;
  hostToGuest: string;
  guestToHost: string;
  controlSocket: string;
  controlMode: number;
  controlGroup?: number;
  json: boolean;
  stdin: boolean;
}

// Run the CLI; resolves with the process exit code (the daemon resolves only when asked to stop).
export async function runGuestCli(options: GuestCliOptions, io: CliIo): Promise<number> {
  const logger = createLogger({ level: options.logLevel });
  if (options.daemon) {
    // The daemon's modules (registry, runner, execa) are loaded only here: a CLI starts faster without them.
    const { startGuestDaemon } = await import('./daemon.js');
    const { stopOnSignals } = await import('../common/daemon/lifecycle.js');
    const { resolveServingConfig } = await import('../common/daemon/serving-config.js');
    const serving = await resolveServingConfig(options);
    const { resolveStreamConfig } = await import('../common/daemon/stream-config.js');
    const streams = await resolveStreamConfig(options, false, logger.child('services'));
    const daemon = await startGuestDaemon({
      hostToGuest: parseGuestChannelSpec(options.hostToGuest),
      guestToHost: options.guestToHost === 'none' ? undefined : parseGuestChannelSpec(options.guestToHost),
      ...serving,
      controlSocket: options.controlSocket,
      controlMode: options.controlMode,
      ...(options.controlGroup !== undefined ? { controlGid: options.controlGroup } : {}),
      requestTimeoutMs: options.timeoutMs,
      maxLineBytes: options.maxLineBytes,
      graceMs: options.graceMs,
      logger,
      streams,
    });
    return new Promise<number>(() => {
      stopOnSignals(logger, (signal) => daemon.stop(`${PROGRAM} received ${signal}`), options.graceMs * 2 + 10_000);
    });
  }
  if (options.forward.length > 1) {
    io.stderr.write(`${PROGRAM}: one --forward at a time without --daemon (run one per forward, or give them all to the daemon)\n`);
    return EXIT_CODES.usage;
  }
  const forward = options.forward[0];
  if (!options.listCommands && options.execute === undefined && options.connect === undefined && forward === undefined) {
    io.stderr.write(`${PROGRAM}: nothing to do: give --daemon, --list-commands, --execute 'COMMAND ARGS', --connect SERVICE or --forward PORT:SERVICE (see --help)\n`);
    return EXIT_CODES.usage;
  }
  const localInfo = await readLocalAgentInfo('guest');
  const connect = async (): Promise<ClientConnection> => {
    if (options.characterDevice === undefined) {
      const viaDaemon = await connectToDaemon(options.controlSocket, localInfo, options.timeoutMs, 'add yourself to the group that owns it');
      if (viaDaemon) return { peer: viaDaemon, viaDaemon: true };
    }
    // No daemon: open the guest-to-host channel ourselves, as Negotiator's CLI does. The port modules
    // load only here: a CLI that goes through the daemon starts faster without them.
    const spec = parseGuestChannelSpec(options.characterDevice ?? `virtio:${CHANNEL_NAMES.guestToHost}`);
    const { openGuestChannel } = await import('./open-channel.js');
    const channel = await openGuestChannel(spec, { logger: logger.child('channel'), timeoutMs: Math.min(options.timeoutMs || 5000, 5000) });
    return { peer: startClientPeer(channel, localInfo, 'the host', options.timeoutMs), viaDaemon: false };
  };
  return runClientAction(PROGRAM, io, connect, async ({ peer, viaDaemon }, signal) => {
    if (options.listCommands) return runListAction({ peer, timeoutMs: options.timeoutMs, json: options.json, io });
    // The stream modules load only for these actions: other CLIs start without them.
    if (options.connect !== undefined) return (await import('../common/cli/stream-actions.js')).runConnectAction({ peer, service: options.connect, timeoutMs: options.timeoutMs, io, signal });
    if (forward !== undefined) return (await import('../common/cli/stream-actions.js')).runForwardAction({ peer, spec: forward, timeoutMs: options.timeoutMs, io, signal, logger, targetName: 'the host' });
    return runExecuteAction({
      peer,
      commandLine: options.execute!,
      timeoutMs: options.timeoutMs,
      json: options.json,
      forwardStdin: options.stdin,
      viaDaemon,
      io,
      signal,
    });
  });
}

/** The control socket's default path. */
export const DEFAULT_GUEST_CONTROL_SOCKET = '/run/negotiator/guest.sock';

/** `negotiator-guest doctor` as the CLI parsed it. */
export interface GuestDoctorCommandOptions {
  hostToGuest: string;
  guestToHost: string;
  controlSocket: string;
  timeoutMs: number;
  json: boolean;
  sysRoot: string;
  devRoot: string;
  procRoot: string;
}

// `negotiator-guest doctor`; its module loads only when asked.
export async function runGuestDoctor(options: GuestDoctorCommandOptions, io: CliIo): Promise<number> {
  const localInfo = await readLocalAgentInfo('guest');
  const { runDoctor } = await import('./doctor.js');
  return runDoctor(
    {
      ...options,
      hostToGuest: parseGuestChannelSpec(options.hostToGuest),
      guestToHost: options.guestToHost === 'none' ? undefined : parseGuestChannelSpec(options.guestToHost),
      localInfo,
    },
    io,
    PROGRAM,
  );
}
