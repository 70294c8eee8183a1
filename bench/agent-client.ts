// The negotiator side of each scenario, all over one agent connection: ping, execute /bin/true, and
// execute `head -c N /dev/zero` with its stdout streamed back (flow control and all).
import { executeRemote } from '../common/execute/client.js';
import { METHODS } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import { connectAgent } from './bench-agent.js';
import type { Connection, Fetcher, RoundTripper } from './baseline-client.js';
import { MODES, connectInMode } from './socket-modes.js';

/** Streamed transfers may take long on a loaded machine; the default 10 s deadline would cut 256 MiB. */
const STREAM_TIMEOUT_MS = 300_000;

export interface AgentClient extends Connection {
  readonly peer: RpcPeer;
  ping: RoundTripper['roundTrip'];
  executeTrue: RoundTripper['roundTrip'];
  stream: Fetcher['fetch'];
}

// Connect to the agent and complete the handshake.
export async function openAgentClient(socketPath: string, frames = true): Promise<AgentClient> {
  const peer = await connectAgent(await connectInMode(socketPath, MODES.rpc), frames);
  return {
    peer,
    async ping() {
      await peer.request(METHODS.ping, undefined);
    },
    async executeTrue() {
      const result = await executeRemote(peer, { command: 'true' });
      if (result.exitCode !== 0) throw new Error(`execute true: exit code ${result.exitCode}`);
    },
    async stream(bytes) {
      let received = 0;
      const result = await executeRemote(peer, {
        command: 'head',
        args: ['-c', String(bytes), '/dev/zero'],
        timeoutMs: STREAM_TIMEOUT_MS,
        stdout: (chunk) => {
          received += chunk.length;
        },
      });
      if (result.exitCode !== 0 || received !== bytes || result.stdoutBytes !== bytes) {
        throw new Error(`execute head: exit code ${result.exitCode}, ${received} bytes received, ${result.stdoutBytes} sent; expected ${bytes}`);
      }
    },
    close: () => void peer.close(),
  };
}
