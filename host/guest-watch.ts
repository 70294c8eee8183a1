// What the host daemon sees of its guests' lives, in one place: guests appearing and going away, their
// agents' sessions (ready, started, stopping, lost), and what QEMU (QMP) and libvirt say about resets and
// ports. A reset or a closed port ends the sessions it concerns at once (their pending requests fail
// now rather than after the keepalive's timeout). It serves `events.follow` (a notification stream for
// `negotiator-host --events`) and `agent.wait` (`--wait GUEST`, common/daemon/readiness.ts) on the control socket.
import { EventEmitter } from 'node:events';
import type { AgentEventKind } from '../common/daemon/agent-session.js';
import { registerAgentWait } from '../common/daemon/readiness.js';
import { RpcError } from '../common/wire/errors.js';
import type { Logger } from '../common/base/logger.js';
import { CHANNEL_NAMES, ERROR_CODES, METHODS } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import type { GuestConnections } from './guest-connections.js';
import { CHANNEL_ROLES, describeRole, type ChannelRole } from './guest-model.js';
import type { GuestTable } from './guest-table.js';
import type { StaticGuestSpec } from './guest-specs.js';
import { interpretLibvirtEvent } from './libvirt-events.js';
import { startQmpMonitor, type QmpGuestEvent, type QmpMonitor } from './qmp-monitor.js';
import type { DomainEvent } from './virsh.js';

export type HostEventKind =
  | 'guest-up' | 'guest-down'
  | `agent-${AgentEventKind}`
  | 'port-open' | 'port-closed' | 'reset' | 'shutdown' | 'paused' | 'resumed' | 'qemu-ga' | 'monitor';

/** One line of `negotiator-host --events`. */
export interface HostEvent {
  /** ISO 8601, UTC. */
  time: string;
  guest: string;
  event: HostEventKind;
  /** The channel concerned, when one is. */
  channel?: 'host-to-guest' | 'guest-to-host';
  detail: string;
}

const channelOf = (role: ChannelRole): HostEvent['channel'] => describeRole(role) as HostEvent['channel'];
const ROLE_OF_PORT = new Map<string, ChannelRole>(CHANNEL_ROLES.map((role) => [CHANNEL_NAMES[role], role]));

export interface GuestWatchOptions {
  guests: GuestTable;
  connections: () => GuestConnections | undefined;
  staticGuests: readonly StaticGuestSpec[];
  logger: Logger;
}

/** Lifecycle: `close()` once (stops the QMP monitors). */
export class GuestWatch extends EventEmitter<{ event: [HostEvent] }> {
  readonly #options: GuestWatchOptions;
  readonly #monitors: QmpMonitor[] = [];

  constructor(options: GuestWatchOptions) {
    super();
    this.setMaxListeners(0);
    this.#options = options;
    options.guests.on('guest-up', (guest) => this.report({ guest: guest.name, event: 'guest-up', detail: `${guest.source}${guest.id !== undefined ? `, id ${guest.id}` : ''}` }));
    options.guests.on('guest-down', (guest) => this.report({ guest: guest.name, event: 'guest-down', detail: guest.source }));
    for (const spec of options.staticGuests) {
      if (spec.qmp) this.#monitors.push(startQmpMonitor({ path: spec.qmp, logger: options.logger, onEvent: (event) => this.#onQmp(spec.name, event) }));
    }
  }

  /** Tell the event subscribers. */
  report(event: Omit<HostEvent, 'time'>): void {
    this.emit('event', { time: new Date().toISOString(), ...event });
  }

  /** An agent session's event on one of a guest's channels (the daemon's startAgentSession hook). */
  agentEvent(guest: string, role: ChannelRole, kind: AgentEventKind, detail: string): void {
    this.report({ guest, event: `agent-${kind}`, channel: channelOf(role), detail });
  }

  /** A libvirt domain event (LibvirtDiscovery's onEvent). */
  onLibvirtEvent(event: DomainEvent): void {
    const signal = interpretLibvirtEvent(event);
    if (!signal) return;
    this.report({ guest: signal.guest, event: signal.kind, detail: signal.detail });
    if (signal.kind === 'reset') this.#lost(signal.guest, `the guest was reset (${signal.detail})`);
  }

  close(): void {
    for (const monitor of this.#monitors) monitor.close();
  }

  /** Register `events.follow` and `agent.wait` on a control client's peer. */
  register(peer: RpcPeer): void {
    peer.handle(METHODS.eventsFollow, (_params, context) => {
      const forward = (event: HostEvent): void => void context.notify(METHODS.eventsEvent, { id: context.id, event });
      this.on('event', forward);
      return new Promise<void>((resolve) => {
        const end = (): void => (this.off('event', forward), resolve());
        if (context.signal.aborted) end();
        else context.signal.addEventListener('abort', end, { once: true });
      });
    });
    registerAgentWait(peer, (params) => `guest ${String(params.guest)}`, (params) => {
      if (typeof params.guest !== 'string' || params.guest === '') throw new RpcError(ERROR_CODES.invalidParams, 'which guest? negotiator-host --wait GUEST');
      return this.#notReady(params.guest);
    });
  }

  // Why the guest is not ready yet, or undefined when both its agent's channels answered.
  #notReady(name: string): string | undefined {
    const connection = this.#options.connections()?.get(name);
    if (!connection) return `no guest of that name is up${this.#options.guests.list().length ? ` (known: ${this.#options.guests.list().map((g) => g.name).join(', ')})` : ''}`;
    const missing: string[] = [];
    for (const role of CHANNEL_ROLES) {
      if (!connection.guest.channels[role]) continue;
      const keeper = connection.keepers[role];
      const peer = keeper?.session?.peer;
      if (peer?.isReady) continue;
      missing.push(`${channelOf(role)}: ${peer ? 'no answer to the handshake yet (is the guest agent running?)' : `channel not open${keeper?.lastError ? ` (${keeper.lastError})` : ''}`}`);
    }
    if (!connection.outbound) return 'it has no negotiator channels';
    return missing.length ? missing.join('; ') : undefined;
  }

  #onQmp(guest: string, event: QmpGuestEvent): void {
    if (event.kind === 'monitor') return this.report({ guest, event: 'monitor', detail: `${event.connected ? 'connected to' : 'lost'} ${event.detail}` });
    if (event.kind === 'port') {
      const role = ROLE_OF_PORT.get(event.port);
      this.report({ guest, event: event.open ? 'port-open' : 'port-closed', ...(role ? { channel: channelOf(role) } : {}), detail: `QMP VSERPORT_CHANGE: the guest ${event.open ? 'opened' : 'closed'} port ${event.port}` });
      if (!event.open && role) this.#lost(guest, `the guest closed its port ${event.port} (QMP VSERPORT_CHANGE): its agent stopped or died`, role);
      return;
    }
    this.report({ guest, event: event.kind, detail: event.detail });
    this.#lost(guest, event.kind === 'reset' ? `the guest was reset (${event.detail})` : `the guest is shutting down (${event.detail})`);
  }

  #lost(guest: string, reason: string, role?: ChannelRole): void {
    this.#options.logger.info(`guest ${guest}: ${reason}`);
    this.#options.connections()?.peerLost(guest, reason, role);
  }
}
