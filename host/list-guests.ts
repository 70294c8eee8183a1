// `negotiator-host --list-guests`: without a daemon, find the guests now and ask each agent for a hello
// (bounded concurrency, short deadline); print a table or JSON.
import { mapConcurrently } from '../common/base/concurrency.js';
import type { CliIo } from '../common/cli/actions.js';
import { startClientPeer } from '../common/cli/client.js';
import { errorMessage } from '../common/wire/errors.js';
import type { AgentInfo } from '../common/wire/protocol.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import { createGuestDiscovery } from './guest-discovery.js';
import { CHANNEL_ROLES, type GuestStatus } from './guest-model.js';
import type { StaticGuestSpec } from './static-guests.js';
import type { Virsh } from './virsh.js';

const PROBE_CONCURRENCY = 16;

export interface ProbeOptions {
  staticGuests: readonly StaticGuestSpec[];
  virsh: Virsh | undefined;
  localInfo: Omit<AgentInfo, 'nonce'>;
  timeoutMs: number;
}

// Discover the guests once and probe each one's agent.
export async function probeGuests(options: ProbeOptions): Promise<GuestStatus[]> {
  const discovery = createGuestDiscovery({
    staticGuests: options.staticGuests,
    libvirt: options.virsh ? { virsh: options.virsh } : false,
  });
  let guests;
  try {
    await discovery.ready;
    guests = discovery.guests.list();
  } finally {
    await discovery.close();
  }
  const results = await mapConcurrently(guests, PROBE_CONCURRENCY, async (guest) => {
    const status: GuestStatus = { name: guest.name, uuid: guest.uuid ?? null, source: guest.source, agent: null, channels: {} };
    for (const role of CHANNEL_ROLES) {
      const endpoint = guest.channels[role];
      if (!endpoint) continue;
      const entry = { path: endpoint.path, libvirtState: endpoint.state ?? null, open: false, ready: false, error: null as string | null };
      status.channels[role] = entry;
      if (status.agent) continue;
      try {
        const channel = await connectChannel(endpoint.path, options.timeoutMs);
        entry.open = true;
        const peer = startClientPeer(channel, { localInfo: options.localInfo, label: `guest ${guest.name}`, requestTimeoutMs: options.timeoutMs });
        try {
          status.agent = await peer.waitForReady(options.timeoutMs);
          entry.ready = true;
        } finally {
          await peer.close();
        }
      } catch (error) {
        entry.error = errorMessage(error);
      }
    }
    return status;
  });
  return results.sort((a, b) => a.name.localeCompare(b.name));
}

// Print guests as a table (name, agent, channels) or as JSON.
export function printGuests(guests: readonly GuestStatus[], options: { json: boolean; viaDaemon: boolean; io: CliIo }): void {
  const { io } = options;
  if (options.json) {
    io.stdout.write(`${JSON.stringify(guests)}\n`);
    return;
  }
  if (guests.length === 0) {
    io.stderr.write('no guests found: is libvirt running with guests that have the negotiator channels, or pass --guest NAME=DIR\n');
    return;
  }
  const rows = guests.map((guest) => {
    const agent = guest.agent
      ? `${guest.agent.name} ${guest.agent.version} (${[guest.agent.os.distributor, guest.agent.os.release].filter(Boolean).join(' ') || guest.agent.os.type})`
      : Object.keys(guest.channels).length === 0
        ? 'no negotiator channels'
        : 'agent not answering';
    const channels = CHANNEL_ROLES.flatMap((role) => {
      const channel = guest.channels[role];
      if (!channel) return [];
      const state = channel.ready ? 'ready' : channel.open ? 'open' : channel.libvirtState === 'disconnected' ? 'guest port closed' : 'closed';
      return [`${role === 'hostToGuest' ? 'h2g' : 'g2h'}:${state}`];
    }).join(' ');
    return [guest.name, agent, channels];
  });
  const widths = [0, 1].map((i) => Math.max(i === 0 ? 4 : 5, ...rows.map((row) => row[i]!.length)));
  io.stdout.write(`${'NAME'.padEnd(widths[0]!)}  ${'AGENT'.padEnd(widths[1]!)}  CHANNELS\n`);
  for (const row of rows) io.stdout.write(`${row[0]!.padEnd(widths[0]!)}  ${row[1]!.padEnd(widths[1]!)}  ${row[2]}\n`);
}
