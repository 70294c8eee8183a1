// A daemon's local control socket: each CLI connection is an RpcPeer on which the daemon registers
// its handlers (a relay to the other side, status). Many CLIs at once share the daemon's channels.
import type { AgentInfo } from '../wire/protocol.js';
import type { Logger } from '../base/logger.js';
import { RpcPeer } from '../wire/rpc-peer.js';
import { listenChannels } from '../wire/stream-channel.js';

export interface ControlServerOptions {
  path: string;
  /** Socket file mode: 0o600 (owner only) or 0o660 (with `gid`, that group too). */
  mode: number;
  gid?: number;
  localInfo: Omit<AgentInfo, 'nonce'>;
  logger: Logger;
  /** Register the daemon's handlers on a new client's peer (before its handshake starts). */
  register: (peer: RpcPeer) => void;
}

/** Lifecycle: listening once the promise resolves; `close()` (idempotent) disconnects every client. */
export interface ControlServer {
  readonly path: string;
  readonly clients: number;
  close(): Promise<void>;
}

// Listen on the control socket.
export async function startControlServer(options: ControlServerOptions): Promise<ControlServer> {
  const peers = new Set<RpcPeer>();
  let count = 0;
  const listener = await listenChannels(options.path, { mode: options.mode, ...(options.gid !== undefined ? { gid: options.gid } : {}) }, (channel) => {
    const peer = new RpcPeer(channel, {
      localInfo: options.localInfo,
      label: `control client ${++count}`,
      logger: options.logger,
      // A CLI says hello at once; it need not be chased.
      helloRetryMs: 0,
      freshConnection: true,
    });
    peers.add(peer);
    peer.on('close', () => peers.delete(peer));
    options.register(peer);
    peer.start();
  });
  let closing: Promise<void> | undefined;
  return {
    path: options.path,
    get clients() {
      return peers.size;
    },
    close() {
      closing ??= (async () => {
        await listener.close();
        await Promise.all([...peers].map((peer) => peer.close()));
      })();
      return closing;
    },
  };
}
