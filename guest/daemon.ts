// The guest daemon: holds the guest's channels to the host for its whole life, serves the host's
// requests with the guest's command directories, and lets local CLIs call the host through its control
// socket (multiplexed over the one guest-to-host channel, so concurrent CLIs never fight over the port).
import { readLocalAgentInfo, readPackageVersion } from '../common/wire/agent-info.js';
import { startAgentSession, type AgentSession } from '../common/daemon/agent-session.js';
import { keepChannel, type ChannelKeeper } from '../common/daemon/channel-keeper.js';
import { createCommandRegistry, type CommandRegistry } from '../common/commands/registry.js';
import { createDaemonLauncherPool } from '../common/commands/launcher-pool.js';
import { describeExecuted } from '../common/execute/server.js';
import { startControlServer, type ControlServer } from '../common/daemon/control-server.js';
import { takeOverCommandGroups } from '../common/commands/group-record.js';
import { announceReady } from '../common/daemon/lifecycle.js';
import { registerExecuteRelay } from '../common/execute/relay.js';
import { registerAgentWait } from '../common/daemon/readiness.js';
import { CHANNEL_NAMES, METHODS, type AgentInfo } from '../common/wire/protocol.js';
import type { Forwarder } from '../common/streams/forward.js';
import { defaultStreamConfig, startDaemonForwards } from '../common/daemon/stream-config.js';
import type { DaemonBaseOptions } from '../common/daemon/start.js';
import { registerStreamRelay } from '../common/streams/relay.js';
import { describeGuestChannel, type GuestChannelSpec } from './channel-spec.js';
import { openGuestChannel } from './open-channel.js';

export interface GuestDaemonOptions extends DaemonBaseOptions {
  /** The channel the host calls us on, and the one we call the host on (the same one for a single serial line). */
  hostToGuest: GuestChannelSpec;
  guestToHost: GuestChannelSpec | undefined;
  /** Test seams. */
  sysRoot?: string;
  devRoot?: string;
}

/** A running daemon; `stop()` is idempotent. */
export interface GuestDaemon {
  readonly info: Omit<AgentInfo, 'nonce'>;
  readonly keepers: readonly ChannelKeeper[];
  stop(reason: string): Promise<void>;
}

// Start the daemon: returns once the control socket listens (channels are opened in the background).
export async function startGuestDaemon(options: GuestDaemonOptions): Promise<GuestDaemon> {
  const log = options.logger;
  const streams = options.streams ?? defaultStreamConfig();
  const localInfo = await readLocalAgentInfo('guest');
  const registry: CommandRegistry = createCommandRegistry({ directories: options.commandDirectories, logger: log.child('commands'), watch: true });
  await registry.ready;
  // Ours: every connection's commands use it, and stop() ends its waiting launchers.
  const launchers = createDaemonLauncherPool(options.limits);

  const startSession = (label: string, channelName: string, announce: boolean) => (channel: Parameters<ChannelKeeperStart>[0]): AgentSession =>
    startAgentSession({
      channel,
      label,
      localInfo,
      logger: log.child(label),
      announce,
      peer: { requestTimeoutMs: options.requestTimeoutMs, maxLineBytes: options.maxLineBytes, ...(options.peerTimeoutMs !== undefined ? { peerTimeoutMs: options.peerTimeoutMs } : {}) },
      serve: {
        side: 'guest',
        commands: registry,
        channelName,
        ...options.limits,
        ...(launchers ? { launchers } : {}),
        onExecuted: (record) => log.info(`host ran ${describeExecuted(record)}`),
      },
      streams: { services: streams.services, ...streams.limits, peerName: 'the host' },
    });
  const keep = (spec: GuestChannelSpec, label: string, channelName: string, announce: boolean): ChannelKeeper =>
    keepChannel({
      label,
      logger: log,
      open: (signal) =>
        openGuestChannel(spec, {
          logger: log.child(label),
          signal,
          ...(options.sysRoot ? { sysRoot: options.sysRoot } : {}),
          ...(options.devRoot ? { devRoot: options.devRoot } : {}),
        }),
      startSession: startSession(label, channelName, announce),
    });

  const hostToGuest = keep(options.hostToGuest, describeGuestChannel(options.hostToGuest), CHANNEL_NAMES.hostToGuest, options.guestToHost === undefined);
  const guestToHost = options.guestToHost ? keep(options.guestToHost, describeGuestChannel(options.guestToHost), CHANNEL_NAMES.guestToHost, true) : undefined;
  const outbound = guestToHost ?? hostToGuest;
  const keepers = guestToHost ? [hostToGuest, guestToHost] : [hostToGuest];

  let control: ControlServer | undefined;
  let forwards: Forwarder[] = [];
  const toHost = () => outbound.waitForPeer(options.requestTimeoutMs);
  try {
    control = await startControlServer({
      path: options.controlSocket,
      mode: options.controlMode,
      ...(options.controlGid !== undefined ? { gid: options.controlGid } : {}),
      localInfo,
      logger: log.child('control'),
      register: (peer) => {
        registerExecuteRelay(peer, {
          logger: log.child('control'),
          resolveUpstream: toHost,
          onRelayed: (record) => log.debug(`relayed \`${String(record.params.command)}\` to the host: ${record.error ?? `exit ${record.result?.exitCode}`}`),
        });
        registerStreamRelay(peer, { logger: log.child('control'), resolveUpstream: toHost, ...streams.limits });
        peer.handle(METHODS.status, () => ({
          agent: localInfo,
          channels: keepers.map((k) => ({
            name: k.label,
            open: k.session !== undefined,
            connected: k.session?.peer.isReady ?? false,
            peer: k.session?.peer.peerInfo ?? null,
            error: k.lastError ?? null,
          })),
        }));
        registerAgentWait(peer, () => 'the host', () =>
          keepers.map((k) => (k.session?.peer.isReady ? '' : `${k.label}: ${k.session ? 'no answer to the handshake yet (is the host daemon running?)' : `not open${k.lastError ? ` (${k.lastError})` : ''}`}`)).filter(Boolean).join('; '),
        );
      },
    });
    forwards = await startDaemonForwards(streams.forwards, toHost, () => 'the host', log.child('forward'));
  } catch (error) {
    await control?.close();
    await streams.services.close();
    await Promise.all(keepers.map((k) => k.stop('start-up failed', 0)));
    launchers?.close();
    await registry.close();
    throw error;
  }
  takeOverCommandGroups(options.controlSocket, log);
  await announceReady(log, `negotiator-guest ${readPackageVersion()} ready: control socket ${options.controlSocket}, channels ${keepers.map((k) => k.label).join(' and ')}`);

  let stopping: Promise<void> | undefined;
  return {
    info: localInfo,
    keepers,
    stop(reason) {
      stopping ??= (async () => {
        await Promise.all(forwards.map((f) => f.close()));
        await control?.close();
        await Promise.all(keepers.map((k) => k.stop(reason, options.graceMs)));
        launchers?.close();
        await registry.close();
        await streams.services.close();
      })();
      return stopping;
    },
  };
}

type ChannelKeeperStart = Parameters<typeof keepChannel>[0]['startSession'];
