// An agent's services on one channel: `stream.open` connects to the named service's address (only a
// service this side declared, and on the host only one the asking guest may open), and the log says who
// opened what. The relay (relay.ts) serves the same messages by opening the stream upstream instead.
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { formatAddress, type ServiceSpec } from './address.js';
import { endStreamsOf } from './client.js';
import { LOCAL_SOCKET_BUFFER_BYTES, serveStreams, type StreamLimits, type StreamServer } from './serve.js';
import type { ServiceRegistry } from './services.js';
import { PeerRestartedError, RpcError } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';
import { ERROR_CODES } from '../wire/protocol.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

export interface StreamServiceOptions extends StreamLimits {
  services: ServiceRegistry;
  logger: Logger;
  /** On the host: the guest on this channel (policy and log); undefined on the guest. */
  guest?: string;
  /** How the other side is named in log lines: `guest vm1`, `the host`. */
  peerName: string;
  /** Longest wait for a service to accept a connection. Default 10 s. */
  connectTimeoutMs?: number;
}

// net.connect passes these on to the socket (a Duplex option its types leave out).
const LOCAL_BUFFERING = { allowHalfOpen: true, readableHighWaterMark: LOCAL_SOCKET_BUFFER_BYTES };

// Connect to a service's address; a failure is a `streamRefused` error with its errno.
export function connectService(spec: ServiceSpec, timeoutMs: number): Promise<Duplex> {
  const address = spec.address;
  return new Promise((resolve, reject) => {
    const socket =
      address.kind === 'tcp'
        ? net.connect({ ...LOCAL_BUFFERING, host: address.host, port: address.port, noDelay: true })
        : net.connect({ ...LOCAL_BUFFERING, path: address.path });
    const fail = (errno: string, detail: string): void => {
      socket.destroy();
      reject(new RpcError(ERROR_CODES.streamRefused, `service \`${spec.name}\` (${formatAddress(address)}): ${detail}`, { service: spec.name, errno }));
    };
    const timer = setTimeout(() => fail('ETIMEDOUT', `no connection within ${timeoutMs} ms (ETIMEDOUT)`), timeoutMs);
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const errno = error.code ?? 'EIO';
      fail(errno, errno === 'ECONNREFUSED' ? 'connection refused (ECONNREFUSED): is it running?' : `cannot connect: ${error.message}`);
    });
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
  });
}

// Serve this side's services on `peer`. The `agent.stopping` of the other side ends every stream of the
// channel, both ways, at once (call `peerStopping`).
export function registerStreamService(peer: RpcPeer, options: StreamServiceOptions): StreamServer & { peerStopping(reason: string): void } {
  const log = options.logger;
  const server = serveStreams(peer, {
    maxStreams: options.maxStreams,
    idleTimeoutMs: options.idleTimeoutMs,
    logger: log,
    open: async (params, context) => {
      const spec = await options.services.resolve(params.service, options.guest);
      if (!spec) {
        const available = (await options.services.list(options.guest)).map((s) => s.name);
        const side = options.guest === undefined ? 'guest' : 'host';
        throw new RpcError(
          ERROR_CODES.unknownService,
          `no service \`${params.service}\` on the ${side}${options.guest !== undefined ? ` for guest ${options.guest}` : ''}; available: ${available.join(', ') || `(none: declare one with the ${side} daemon's --service NAME=ADDRESS)`}`,
          { service: params.service, available },
        );
      }
      log.info(`${options.peerName} opened service \`${spec.name}\` (${formatAddress(spec.address)}), stream ${String(context.id)}`);
      return connectService(spec, options.connectTimeoutMs ?? 10_000);
    },
    onClosed: (params, id, outcome) => {
      const how = outcome.result ? `${outcome.result.bytesIn} bytes in, ${outcome.result.bytesOut} out` : `ended: ${outcome.error?.message}`;
      log.info(`${options.peerName}: stream ${String(id)} to \`${params.service}\` closed, ${how}`);
    },
  });
  return {
    get open() {
      return server.open;
    },
    endAll: (error) => server.endAll(error),
    peerStopping(reason) {
      const error = new PeerRestartedError(`${options.peerName} is stopping (${reason}): its streams ended`);
      server.endAll(error);
      endStreamsOf(peer, error);
    },
  };
}
