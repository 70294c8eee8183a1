// What `negotiator-guest` does with its parsed options: run the daemon, or list / execute on the host.
import { readLocalAgentInfo } from '../common/wire/agent-info.js';
import { EXIT_CODES, type CliIo } from '../common/cli/actions.js';
import { connectToDaemon, runClientAction, runListOrExecute, startClientPeer, type ClientConnection } from '../common/cli/client.js';
import type { ClientOptions, ControlOptions, ServingOptions } from '../common/cli/options.js';
import type { StreamCliOptions } from '../common/cli/stream-options.js';
import { createLogger } from '../common/base/logger.js';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';
import { parseGuestChannelSpec } from './channel-spec.js';

export const PROGRAM = 'negotiator-guest';

/** Options as the CLI parsed them (see guest/cli.ts for their documentation and defaults). */
export interface GuestCliOptions extends ServingOptions, ClientOptions, ControlOptions, StreamCliOptions {
  daemon: boolean;
  listCommands: boolean;
  execute?: string;
  /** --wait: until the host agent answered on both channels (wait-host.ts). */
  wait?: boolean;
  characterDevice?: string;
  hostToGuest: string;
  guestToHost: string;
}

// Run the CLI; resolves with the process exit code (the daemon resolves only when asked to stop).
export async function runGuestCli(options: GuestCliOptions, io: CliIo): Promise<number> {
  if (options.daemon) {
    // The daemon's modules (command registry, runner, launcher pool, ports) are loaded only here: a CLI starts faster without them.
    const { runDaemon } = await import('../common/daemon/start.js');
    const { startGuestDaemon } = await import('./daemon.js');
    const { resolveStreamConfig } = await import('../common/daemon/stream-config.js');
    return runDaemon(PROGRAM, options, async (base) =>
      startGuestDaemon({
        ...base,
        hostToGuest: parseGuestChannelSpec(options.hostToGuest),
        guestToHost: options.guestToHost === 'none' ? undefined : parseGuestChannelSpec(options.guestToHost),
        streams: await resolveStreamConfig(options, false, base.logger.child('services')),
      }),
    );
  }
  if (options.forward.length > 1) {
    io.stderr.write(`${PROGRAM}: one --forward at a time without --daemon (run one per forward, or give them all to the daemon)\n`);
    return EXIT_CODES.usage;
  }
  const forward = options.forward[0];
  if (!options.listCommands && options.execute === undefined && !options.wait && options.connect === undefined && forward === undefined) {
    io.stderr.write(`${PROGRAM}: nothing to do: give --daemon, --wait, --list-commands, --execute 'COMMAND ARGS', --connect SERVICE or --forward PORT:SERVICE (see --help)\n`);
    return EXIT_CODES.usage;
  }
  const localInfo = await readLocalAgentInfo('guest');
  if (options.wait) return (await import('./wait-host.js')).runGuestWait(options, localInfo, createLogger({ level: options.logLevel }), io);
  const connect = async (): Promise<ClientConnection> => {
    if (options.characterDevice === undefined) {
      const viaDaemon = await connectToDaemon(options.controlSocket, { localInfo, requestTimeoutMs: options.timeoutMs, groupHint: 'add yourself to the group that owns it', peerTimeoutMs: options.peerTimeoutMs });
      if (viaDaemon) return { peer: viaDaemon, viaDaemon: true };
    }
    // No daemon: open the guest-to-host channel ourselves, as Negotiator's CLI does. The port modules
    // load only here: a CLI that goes through the daemon starts faster without them.
    const spec = parseGuestChannelSpec(options.characterDevice ?? `virtio:${CHANNEL_NAMES.guestToHost}`);
    const { openGuestChannel } = await import('./open-channel.js');
    const logger = createLogger({ level: options.logLevel });
    const channel = await openGuestChannel(spec, { logger: logger.child('channel'), timeoutMs: Math.min(options.timeoutMs || 5000, 5000) });
    return { peer: startClientPeer(channel, { localInfo, label: 'the host', requestTimeoutMs: options.timeoutMs, peerTimeoutMs: options.peerTimeoutMs }), viaDaemon: false };
  };
  if (options.connect === undefined && forward === undefined) return runListOrExecute(PROGRAM, io, options, connect);
  // The stream modules load only for these actions: other CLIs start without them.
  const logger = createLogger({ level: options.logLevel });
  return runClientAction(PROGRAM, io, connect, async ({ peer }, signal) => {
    const streams = await import('../common/cli/stream-actions.js');
    if (options.connect !== undefined) return streams.runConnectAction({ peer, service: options.connect, timeoutMs: options.timeoutMs, io, signal });
    return streams.runForwardAction({ peer, spec: forward!, timeoutMs: options.timeoutMs, io, signal, logger, targetName: 'the host' });
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
