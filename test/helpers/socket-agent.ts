// A real agent on a real UNIX socket for integration tests: every connection gets an RpcPeer serving
// the fixture commands through the real registry, runner and command service.
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createCommandRegistry, type CommandRegistry } from '../../common/commands/registry.js';
import { registerExecuteServer, type ExecuteServer, type ExecuteServerOptions } from '../../common/execute/server.js';
import { connectChannel, createStreamChannel } from '../../common/wire/stream-channel.js';
import { RpcPeer } from '../../common/wire/rpc-peer.js';
import { testAgentInfo, createRecordingLogger, type RecordingLogger } from './agents.js';

/** test/fixtures/commands in the source tree (tests run from dist/test). */
export const FIXTURE_COMMANDS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/commands');

export interface SocketAgent {
  socketPath: string;
  registry: CommandRegistry;
  services: ExecuteServer[];
  peers: RpcPeer[];
  log: RecordingLogger;
  tmp: string;
  close(): Promise<void>;
}

export async function startSocketAgent(options: Partial<ExecuteServerOptions> & { maxLineBytes?: number } = {}): Promise<SocketAgent> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'negotiator-test-'));
  const socketPath = path.join(tmp, 'agent.sock');
  const log = createRecordingLogger();
  const registry = createCommandRegistry({ directories: [FIXTURE_COMMANDS], watch: false });
  const services: ExecuteServer[] = [];
  const peers: RpcPeer[] = [];
  const server = net.createServer((socket) => {
    const peer = new RpcPeer(createStreamChannel(socket, 'test-client'), {
      localInfo: testAgentInfo('guest'),
      label: 'test-client',
      logger: log,
      ...(options.maxLineBytes ? { maxLineBytes: options.maxLineBytes } : {}),
    });
    services.push(registerExecuteServer(peer, { side: 'guest', commands: registry, logger: log, killGraceMs: 500, ...options }));
    peers.push(peer);
    peer.start();
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    registry,
    services,
    peers,
    log,
    tmp,
    async close() {
      await Promise.all(peers.map((p) => p.close()));
      await new Promise((resolve) => server.close(resolve));
      await registry.close();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

// Connect a host-side peer to the agent and wait for the handshake.
export async function connectClient(socketPath: string, requestTimeoutMs = 10_000): Promise<RpcPeer> {
  const peer = new RpcPeer(await connectChannel(socketPath, 2000), { localInfo: testAgentInfo('host'), label: 'test-agent', requestTimeoutMs });
  peer.start();
  await peer.waitForReady(5000);
  return peer;
}
