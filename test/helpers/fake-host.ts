// Plays the host side of a guest's two channels on UNIX sockets (as QEMU's chardev sockets plus a host
// agent would): each accepted connection gets a host-side peer serving FIXTURE_COMMANDS.
import net from 'node:net';
import path from 'node:path';
import { createCommandRegistry } from '../../common/commands/registry.js';
import { registerExecuteServer } from '../../common/execute/server.js';
import { RpcPeer } from '../../common/wire/rpc-peer.js';
import { createStreamChannel } from '../../common/wire/stream-channel.js';
import { testAgentInfo, createRecordingLogger, type RecordingLogger } from './agents.js';
import { FIXTURE_COMMANDS } from './socket-agent.js';

export interface FakeHost {
  h2gPath: string;
  g2hPath: string;
  log: RecordingLogger;
  /** Resolves with the host-side peer of the next (or current) connection on that channel, once ready. */
  peer(channel: 'h2g' | 'g2h', timeoutMs?: number): Promise<RpcPeer>;
  /** Drop the current connections (the guest side sees them close). */
  disconnect(): void;
  close(): Promise<void>;
}

// `prespawn`: the fake host's own launchers (default 2, as a daemon); 0 leaves every launcher in the process to the code under test.
export async function startFakeHost(dir: string, options: { prespawn?: number } = {}): Promise<FakeHost> {
  const log = createRecordingLogger();
  const registry = createCommandRegistry({ directories: [FIXTURE_COMMANDS], watch: false });
  const connections: Record<'h2g' | 'g2h', Array<{ peer: RpcPeer; socket: net.Socket }>> = { h2g: [], g2h: [] };
  const latestReady = (name: 'h2g' | 'g2h'): RpcPeer | undefined =>
    connections[name].map((c) => c.peer).reverse().find((p) => p.isReady && !p.isClosed);
  const waiters: Record<'h2g' | 'g2h', Array<(peer: RpcPeer) => void>> = { h2g: [], g2h: [] };
  const servers = (['h2g', 'g2h'] as const).map((name) =>
    net.createServer((socket) => {
      const peer = new RpcPeer(createStreamChannel(socket, `fake host ${name}`), { localInfo: testAgentInfo('host'), label: `guest (${name})`, logger: log, helloRetryMs: 100 });
      registerExecuteServer(peer, { side: 'host', commands: registry, logger: log, extraEnv: () => ({ NEGOTIATOR_GUEST: 'fake-guest' }), ...options });
      connections[name].push({ peer, socket });
      peer.on('close', () => (connections[name] = connections[name].filter((c) => c.peer !== peer)));
      peer.on('ready', () => waiters[name].splice(0).forEach((wake) => wake(peer)));
      peer.start();
    }),
  );
  const paths = { h2g: path.join(dir, 'h2g.sock'), g2h: path.join(dir, 'g2h.sock') };
  await Promise.all(servers.map((server, i) => new Promise<void>((resolve) => server.listen(i === 0 ? paths.h2g : paths.g2h, resolve))));
  return {
    h2gPath: paths.h2g,
    g2hPath: paths.g2h,
    log,
    peer(name, timeoutMs = 10_000) {
      const now = latestReady(name);
      if (now) return Promise.resolve(now);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ready guest connection on ${name} within ${timeoutMs} ms`)), timeoutMs);
        waiters[name].push((peer) => (clearTimeout(timer), resolve(peer)));
      });
    },
    disconnect() {
      for (const name of ['h2g', 'g2h'] as const) {
        for (const c of connections[name].splice(0)) c.socket.destroy();
      }
    },
    async close() {
      for (const name of ['h2g', 'g2h'] as const) await Promise.all(connections[name].map((c) => c.peer.close()));
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
      await registry.close();
    },
  };
}
