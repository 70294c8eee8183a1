// kvm-negotiator as a library: what an integrator needs to talk to a negotiator agent from their own
// Node program, without spawning the CLIs. Open a peer on a UNIX socket (a daemon's control socket, or a
// guest channel socket that no daemon holds), then ask: `commands.list`, `execute` with streamed stdin,
// stdout and stderr, `ping`. Everything else in the package is internal and may change between releases.
//
//   import { connectPeer, executeRemote } from 'kvm-negotiator';
//   const peer = await connectPeer('/run/negotiator/host.sock', { side: 'host' });
//   const result = await executeRemote(peer, { command: 'uptime', guest: 'vm1', stdout: process.stdout });
//   await peer.close();
import { readLocalAgentInfo } from './wire/agent-info.js';
import { ConfigError } from './wire/errors.js';
import { SIDES, type Side } from './wire/protocol.js';
import { RpcPeer, type PeerOptions } from './wire/rpc-peer.js';
import { connectChannel } from './wire/stream-channel.js';

export { executeRemote, type ExecuteOptions, type InputSource, type OutputSink } from './execute/client.js';
export { CanceledError, ChannelClosedError, ConfigError, HandshakeError, PeerRestartedError, RpcError, TimeoutError } from './wire/errors.js';
export { CHANNEL_NAMES, ERROR_CODES, METHODS, type AgentInfo, type CommandInfo, type ExecuteResult, type ListCommandsResult, type Side } from './wire/protocol.js';
export { RpcPeer, type PeerOptions, type RequestOptions } from './wire/rpc-peer.js';
export type { Logger } from './base/logger.js';

export interface ConnectPeerOptions {
  /** Which side this program stands on: 'host' toward a host daemon or a guest's channel, 'guest' inside a guest. */
  side: Side;
  /** Deadline of the connection and of the handshake, ms. Default 10 000. */
  timeoutMs?: number;
  /** More peer options (label, logger, default request deadline). */
  peer?: Omit<PeerOptions, 'localInfo'>;
}

// Connect to a negotiator agent's UNIX socket and resolve once the handshake is done.
export async function connectPeer(socketPath: string, options: ConnectPeerOptions): Promise<RpcPeer> {
  if (!(SIDES as readonly string[]).includes(options.side)) {
    throw new ConfigError(`Expected the \`side\` option to be "host" or "guest", got \`${String(options.side)}\``);
  }
  const timeoutMs = options.timeoutMs ?? 10_000;
  const localInfo = await readLocalAgentInfo(options.side);
  const peer = new RpcPeer(await connectChannel(socketPath, timeoutMs), { label: socketPath, ...options.peer, localInfo });
  peer.start();
  try {
    await peer.waitForReady(timeoutMs);
  } catch (error) {
    await peer.close();
    throw error;
  }
  return peer;
}
