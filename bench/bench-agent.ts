// The negotiator ends of the benchmark connection, wired as the daemons wire them: the serving side is an
// agent session (RpcPeer + command service over a command registry), the calling side a bare RpcPeer.
import type { Socket } from 'node:net';
import os from 'node:os';
import type { CommandRegistry } from '../common/commands/registry.js';
import { startAgentSession, type AgentSession } from '../common/daemon/agent-session.js';
import { silentLogger } from '../common/base/logger.js';
import { CAPABILITIES, FRAMES_CAPABILITY, PROTOCOL_VERSION, type AgentInfo, type Side } from '../common/wire/protocol.js';
import { RpcPeer } from '../common/wire/rpc-peer.js';
import { createStreamChannel } from '../common/wire/stream-channel.js';

const HANDSHAKE_TIMEOUT_MS = 5000;

// What a benchmark agent says about itself; `hostname` names a simulated guest.
export function benchAgentInfo(side: Side, hostname: string = os.hostname()): Omit<AgentInfo, 'nonce'> {
  return {
    protocol: PROTOCOL_VERSION,
    name: 'negotiator-bench',
    version: '0.0.0-bench',
    side,
    os: { type: os.type(), version: os.release(), hostname },
    capabilities: [...CAPABILITIES],
    pid: process.pid,
  };
}

// Serve a connection (paused, after its preamble) as a guest agent offering the registry's commands;
// `hostname` names a simulated guest (bench/fleet-guests.ts); `prespawn` is the command service's (default 2).
export function serveAgent(socket: Socket, registry: CommandRegistry, hostname?: string, prespawn?: number): AgentSession {
  const session = startAgentSession({
    channel: createStreamChannel(socket, 'bench-client'),
    label: 'bench-client',
    localInfo: benchAgentInfo('guest', hostname),
    logger: silentLogger,
    serve: { side: 'guest', commands: registry, ...(prespawn !== undefined ? { prespawn } : {}) },
  });
  socket.resume();
  return session;
}

// Speak to the agent on a connection (paused, after its preamble) as the host; resolves after the handshake.
// The calling side's info; `frames: false` offers no `frames` capability, so both directions use JSON
// lines (the A/B of issue 12).
export function benchHostInfo(frames: boolean): Omit<AgentInfo, 'nonce'> {
  const info = benchAgentInfo('host');
  return frames ? info : { ...info, capabilities: info.capabilities.filter((c) => c !== FRAMES_CAPABILITY) };
}

export async function connectAgent(socket: Socket, frames = true): Promise<RpcPeer> {
  const peer = new RpcPeer(createStreamChannel(socket, 'bench-agent'), { localInfo: benchHostInfo(frames), label: 'bench-agent' });
  peer.start();
  socket.resume();
  await peer.waitForReady(HANDSHAKE_TIMEOUT_MS);
  return peer;
}
