// Many simulated guests in one process for host-daemon tests: each is a directory with QEMU-named
// sockets (`negotiator-host-to-guest.0`, `negotiator-guest-to-host.0`) whose connections are served by a
// guest-side RpcPeer running FIXTURE_COMMANDS, as a real guest agent behind QEMU would be.
import { mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { CommandRegistry } from '../../common/commands/registry.js';
import { registerExecuteServer } from '../../common/execute/server.js';
import { CHANNEL_NAMES } from '../../common/wire/protocol.js';
import { RpcPeer } from '../../common/wire/rpc-peer.js';
import { createStreamChannel } from '../../common/wire/stream-channel.js';
import { testAgentInfo } from './agents.js';

export interface FakeGuest {
  name: string;
  dir: string;
  /** Stop serving and remove the sockets (as QEMU does when the guest stops). */
  stop(): Promise<void>;
}

// Start a fake guest serving `registry`'s commands on both channels.
export async function startFakeGuest(root: string, name: string, registry: CommandRegistry): Promise<FakeGuest> {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  const peers = new Set<RpcPeer>();
  const servers = await Promise.all(
    [CHANNEL_NAMES.hostToGuest, CHANNEL_NAMES.guestToHost].map(
      (channel) =>
        new Promise<net.Server>((resolve) => {
          const server = net.createServer((socket) => {
            const peer = new RpcPeer(createStreamChannel(socket, `${name} ${channel}`), {
              localInfo: testAgentInfo('guest', { os: { type: 'Linux', version: '6.1', hostname: name } }),
              label: `host (${channel})`,
            });
            registerExecuteServer(peer, { side: 'guest', commands: registry });
            peers.add(peer);
            peer.on('close', () => peers.delete(peer));
            peer.start();
          });
          server.listen(path.join(dir, channel), () => resolve(server));
        }),
    ),
  );
  return {
    name,
    dir,
    async stop() {
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
      await Promise.all([...peers].map((peer) => peer.close()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
