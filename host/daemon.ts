// The host daemon: discovers guests (libvirt and --guest), keeps one connection per guest channel,
// serves guests' requests with the host's command directories (telling each command which guest asked),
// and lets local CLIs reach any guest through its control socket, multiplexed over those connections.
import { readLocalAgentInfo, readPackageVersion } from '../common/wire/agent-info.js';
import { startAgentSession } from '../common/daemon/agent-session.js';
import { createCommandRegistry } from '../common/commands/registry.js';
import { describeExecuted, type ExecuteServerOptions } from '../common/execute/server.js';
import { startControlServer, type ControlServer } from '../common/daemon/control-server.js';
import { announceReady } from '../common/daemon/lifecycle.js';
import { registerExecuteRelay } from '../common/execute/relay.js';
import type { Logger } from '../common/base/logger.js';
import { CHANNEL_NAMES, METHODS, type AgentInfo } from '../common/wire/protocol.js';
import { GuestConnections } from './guest-connections.js';
import { resolveGuestPeer } from './guest-upstream.js';
import { describeRole } from './guest-model.js';
import { createGuestDiscovery, type GuestDiscoveryOptions } from './guest-discovery.js';

export interface HostDaemonOptions {
  discovery: GuestDiscoveryOptions;
  commandDirectories: string[];
  controlSocket: string;
  controlMode: number;
  controlGid?: number;
  limits: Omit<ExecuteServerOptions, 'side' | 'commands' | 'logger' | 'onExecuted' | 'extraEnv'>;
  requestTimeoutMs: number;
  maxLineBytes: number;
  graceMs: number;
  logger: Logger;
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
  const info = await readLocalAgentInfo('host');
  const commands = createCommandRegistry({ directories: options.commandDirectories, logger: log.child('commands'), watch: true });
  await commands.ready;
  const discovery = createGuestDiscovery({ ...options.discovery, logger: log.child('discovery') });

  const connections = new GuestConnections({
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
        peer: { requestTimeoutMs: options.requestTimeoutMs, maxLineBytes: options.maxLineBytes },
        serve: {
          side: 'host',
          commands,
          channelName: CHANNEL_NAMES[role],
          ...options.limits,
          extraEnv: () => ({
            NEGOTIATOR_GUEST: guest.name,
            ...(guest.uuid ? { NEGOTIATOR_GUEST_UUID: guest.uuid } : {}),
          }),
          onExecuted: (record) => log.info(`guest ${guest.name} ran ${describeExecuted(record)}`),
        },
      });
    },
  });
  await discovery.ready;

  let control: ControlServer;
  try {
    control = await startControlServer({
      path: options.controlSocket,
      mode: options.controlMode,
      ...(options.controlGid !== undefined ? { gid: options.controlGid } : {}),
      localInfo: info,
      logger: log.child('control'),
      register: (peer) => {
        registerExecuteRelay(peer, { logger: log.child('control'), resolveUpstream: (params) => resolveGuestPeer(connections, params, options.requestTimeoutMs) });
        peer.handle(METHODS.listGuests, () => ({ guests: connections.status() }));
        peer.handle(METHODS.status, () => ({ agent: info, guests: connections.status() }));
      },
    });
  } catch (error) {
    await connections.close('start-up failed');
    await discovery.close();
    await commands.close();
    throw error;
  }
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
        await control.close();
        await discovery.close();
        await connections.close(reason);
        await commands.close();
      })();
      return stopping;
    },
  };
}
