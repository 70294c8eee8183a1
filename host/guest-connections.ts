// One connection per guest channel for every guest the discovery reports: opened when the guest comes
// up, reopened with backoff when it drops (guest reboot, agent restart, socket gone and back), closed when
// the guest goes down. No process per guest: hundreds of guests are hundreds of sockets in one loop.
import type { AgentSession } from '../common/daemon/agent-session.js';
import type { ByteChannel } from '../common/wire/byte-channel.js';
import { keepChannel, type ChannelKeeper } from '../common/daemon/channel-keeper.js';
import type { Logger } from '../common/base/logger.js';
import type { AgentInfo } from '../common/wire/protocol.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import { CHANNEL_ROLES, describeRole, type ChannelRole, type DiscoveredGuest, type GuestStatus } from './guest-model.js';
import type { GuestTable } from './guest-table.js';

export interface GuestConnection {
  readonly guest: DiscoveredGuest;
  readonly keepers: Partial<Record<ChannelRole, ChannelKeeper>>;
  /** The channel we send requests on: host-to-guest, or the only one the guest has. */
  readonly outbound: ChannelKeeper | undefined;
}

export interface GuestConnectionsOptions {
  guests: GuestTable;
  logger: Logger;
  /** Run the agent session on a newly opened channel of a guest. */
  startSession: (guest: DiscoveredGuest, role: ChannelRole, channel: ByteChannel) => AgentSession;
  /** Grace for commands when a guest goes down or the daemon stops. */
  graceMs: number;
  connectTimeoutMs?: number;
}

export class GuestConnections {
  readonly #options: GuestConnectionsOptions;
  readonly #connections = new Map<string, GuestConnection>();

  constructor(options: GuestConnectionsOptions) {
    this.#options = options;
    const { guests } = options;
    guests.on('guest-up', (guest) => this.#open(guest));
    guests.on('guest-down', (guest) => void this.#close(guest.name, 'the guest went down'));
    guests.on('guest-changed', (guest, previous) => {
      const moved = CHANNEL_ROLES.some((role) => guest.channels[role]?.path !== previous.channels[role]?.path);
      if (moved) {
        void this.#close(guest.name, 'its channels changed').then(() => this.#open(guest));
      } else {
        const current = this.#connections.get(guest.name);
        if (current) this.#connections.set(guest.name, { ...current, guest });
      }
    });
    for (const guest of guests.list()) this.#open(guest);
  }

  get(name: string): GuestConnection | undefined {
    return this.#connections.get(name);
  }

  list(): GuestConnection[] {
    return [...this.#connections.values()].sort((a, b) => a.guest.name.localeCompare(b.guest.name));
  }

  // Describe every guest for the control socket and the CLI.
  status(): GuestStatus[] {
    return this.list().map(({ guest, keepers }) => {
      const channels: GuestStatus['channels'] = {};
      let agent: AgentInfo | null = null;
      for (const role of CHANNEL_ROLES) {
        const endpoint = guest.channels[role];
        const keeper = keepers[role];
        if (!endpoint || !keeper) continue;
        const peer = keeper.session?.peer;
        if (peer?.isReady && peer.peerInfo) agent ??= peer.peerInfo;
        channels[role] = { path: endpoint.path, libvirtState: endpoint.state ?? null, open: keeper.session !== undefined, ready: peer?.isReady ?? false, error: keeper.lastError ?? null };
      }
      return { name: guest.name, uuid: guest.uuid ?? null, source: guest.source, agent, channels };
    });
  }

  /** Stop every connection (daemon shutdown). */
  async close(reason: string): Promise<void> {
    await Promise.all([...this.#connections.keys()].map((name) => this.#close(name, reason)));
  }

  #open(guest: DiscoveredGuest): void {
    if (this.#connections.has(guest.name)) return;
    const log = this.#options.logger;
    const keepers: Partial<Record<ChannelRole, ChannelKeeper>> = {};
    for (const role of CHANNEL_ROLES) {
      const endpoint = guest.channels[role];
      if (!endpoint) continue;
      const label = `guest ${guest.name} (${describeRole(role)})`;
      keepers[role] = keepChannel({
        label,
        logger: log,
        open: () => connectChannel(endpoint.path, this.#options.connectTimeoutMs ?? 5000),
        startSession: (channel) => this.#options.startSession(guest, role, channel),
      });
    }
    const outbound = keepers.hostToGuest ?? keepers.guestToHost;
    if (!outbound) {
      log.info(`guest ${guest.name} has no negotiator channels; see libvirt/ in the negotiator package to add them`);
    } else {
      log.info(`guest ${guest.name} is up (${guest.source}${guest.id !== undefined ? `, id ${guest.id}` : ''}): connecting`);
    }
    this.#connections.set(guest.name, { guest, keepers, outbound });
  }

  async #close(name: string, reason: string): Promise<void> {
    const connection = this.#connections.get(name);
    if (!connection) return;
    this.#connections.delete(name);
    this.#options.logger.info(`guest ${name}: closing its channels (${reason})`);
    await Promise.all(Object.values(connection.keepers).map((keeper) => keeper.stop(`the host agent is closing this channel: ${reason}`, this.#options.graceMs)));
  }
}
