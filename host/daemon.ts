// The host daemon: discovers guests (libvirt and --guest), keeps one connection per guest channel,
// serves guests' requests with the host's command directories (telling each command which guest asked),
// and lets local CLIs reach any guest through its control socket, multiplexed over those connections.
import { readLocalAgentInfo, readPackageVersion } from '../common/wire/agent-info.js';
import { startAgentSession } from '../common/daemon/agent-session.js';
import { createDaemonLauncherPool } from '../common/commands/launcher-pool.js';
import { createCommandRegistry } from '../common/commands/registry.js';
import { describeExecuted } from '../common/execute/server.js';
import { startControlServer, type ControlServer } from '../common/daemon/control-server.js';
import { takeOverCommandGroups } from '../common/commands/group-record.js';
import { announceReady } from '../common/daemon/lifecycle.js';
import { registerExecuteRelay } from '../common/execute/relay.js';
import { CHANNEL_NAMES, METHODS, type AgentInfo } from '../common/wire/protocol.js';
import type { Forwarder } from '../common/streams/forward.js';
import { defaultStreamConfig, startDaemonForwards } from '../common/daemon/stream-config.js';
import type { DaemonBaseOptions } from '../common/daemon/start.js';
import { registerStreamRelay } from '../common/streams/relay.js';
import { GuestConnections } from './guest-connections.js';
import { resolveGuestPeer } from './guest-upstream.js';
import { describeRole } from './guest-model.js';
import { createGuestDiscovery, type GuestDiscoveryOptions } from './guest-discovery.js';
import { GuestWatch } from './guest-watch.js';

export interface HostDaemonOptions extends DaemonBaseOptions {
  discovery: GuestDiscoveryOptions;
}

/** A running host daemon; `stop()` is idempotent. */
export interface HostDaemon {
  readonly info: Omit<AgentInfo, 'nonce'>;
  readonly connections: GuestConnections;
  stop(reason: string): Promise<void>;
}

// Start the daemon; resolves once discovery made its first pass and the control socket listens.
export async function startHostDaemon(options: HostDaemonOptions): Promise<HostDaemon> {
  const log = options.logger;
  const streams = options.streams ?? defaultStreamConfig();
  const info = await readLocalAgentInfo('host');
  const commands = createCommandRegistry({ directories: options.commandDirectories, logger: log.child('commands'), watch: true });
  await commands.ready;
  // Ours: every guest's commands use it, and stop() ends its waiting launchers.
  const launchers = createDaemonLauncherPool(options.limits);
  // Resets, port closes and the agents' lifecycle: they end sessions at once and feed `--events` (guest-watch.ts).
  let connections: GuestConnections | undefined;
  let watch: GuestWatch | undefined;
  const { libvirt } = options.discovery;
  const discovery = createGuestDiscovery({
    ...options.discovery,
    ...(libvirt === false ? {} : { libvirt: { ...libvirt, onEvent: (event) => watch?.onLibvirtEvent(event) } }),
    logger: log.child('discovery'),
  });
  watch = new GuestWatch({ guests: discovery.guests, connections: () => connections, staticGuests: options.discovery.staticGuests ?? [], logger: log.child('watch') });

  connections = new GuestConnections({
    guests: discovery.guests,
    logger: log,
    graceMs: options.graceMs,
    startSession: (guest, role, channel) => {
      const label = `guest ${guest.name} (${describeRole(role)})`;
      return startAgentSession({
        channel,
        label,
        localInfo: info,
        logger: log.child(`guest ${guest.name}`),
        announce: role === 'hostToGuest',
        onEvent: (kind, detail) => watch?.agentEvent(guest.name, role, kind, detail),
        peer: { requestTimeoutMs: options.requestTimeoutMs, maxLineBytes: options.maxLineBytes, ...(options.peerTimeoutMs !== undefined ? { peerTimeoutMs: options.peerTimeoutMs } : {}) },
        serve: {
          side: 'host',
          commands,
          channelName: CHANNEL_NAMES[role],
          ...options.limits,
          ...(launchers ? { launchers } : {}),
          extraEnv: () => ({
            NEGOTIATOR_GUEST: guest.name,
            ...(guest.uuid ? { NEGOTIATOR_GUEST_UUID: guest.uuid } : {}),
          }),
          onExecuted: (record) => log.info(`guest ${guest.name} ran ${describeExecuted(record)}`),
        },
        streams: { services: streams.services, ...streams.limits, guest: guest.name, peerName: `guest ${guest.name}` },
      });
    },
  });
  await discovery.ready;

  // The guest's outbound peer for a relayed request (guest-upstream.ts).
  const resolveGuest = (params: Record<string, unknown>) => resolveGuestPeer(connections, params, options.requestTimeoutMs);
  let control: ControlServer | undefined;
  let forwards: Forwarder[] = [];
  try {
    control = await startControlServer({
      path: options.controlSocket,
      mode: options.controlMode,
      ...(options.controlGid !== undefined ? { gid: options.controlGid } : {}),
      localInfo: info,
      logger: log.child('control'),
      register: (peer) => {
        registerExecuteRelay(peer, { logger: log.child('control'), resolveUpstream: resolveGuest });
        registerStreamRelay(peer, { logger: log.child('control'), resolveUpstream: resolveGuest, ...streams.limits });
        peer.handle(METHODS.listGuests, () => ({ guests: connections.status() }));
        peer.handle(METHODS.status, () => ({ agent: info, guests: connections.status() }));
        watch.register(peer);
      },
    });
    forwards = await startDaemonForwards(streams.forwards, (spec) => resolveGuest({ guest: spec.guest }), (spec) => `guest ${spec.guest}`, log.child('forward'));
  } catch (error) {
    await control?.close();
    await streams.services.close();
    await connections.close('start-up failed');
    await discovery.close();
    watch.close();
    await commands.close();
    launchers?.close();
    throw error;
  }
  takeOverCommandGroups(options.controlSocket, log);
  await announceReady(
    log,
    `negotiator-host ${readPackageVersion()} ready: control socket ${options.controlSocket}, ${connections.list().length} guest(s) known`,
  );

  let stopping: Promise<void> | undefined;
  return {
    info,
    connections,
    stop(reason) {
      stopping ??= (async () => {
        await Promise.all(forwards.map((f) => f.close()));
        await control?.close();
        await discovery.close();
        watch.close();
        await connections.close(reason);
        await commands.close();
        launchers?.close();
        await streams.services.close();
      })();
      return stopping;
    },
  };
}
