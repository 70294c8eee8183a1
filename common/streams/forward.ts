// A local listener whose every accepted connection becomes a stream to a service on the other side
// (ssh -L's shape). The peer is looked up per connection, so a daemon's forward outlives reboots and
// restarts of the other side: a connection made while it is away fails alone, the listener stays.
// Half-close is carried both ways; a stream's error resets the local connection (the client sees
// ECONNRESET, not a clean end).
import { unlink } from 'node:fs/promises';
import net from 'node:net';
import { formatAddress, type ForwardSpec } from './address.js';
import type { RemoteStream } from './client.js';
import { LOCAL_SOCKET_BUFFER_BYTES, resetLocal } from './serve.js';
import { errorMessage } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';

export interface ForwarderOptions {
  spec: ForwardSpec;
  /** Open the stream for one accepted connection. */
  open: (signal: AbortSignal) => Promise<RemoteStream>;
  logger: Logger;
  /** Where the streams go, for log lines: `service ssh of guest vm1`. */
  target: string;
}

export interface Forwarder {
  /** The address listened on (the real port when 0 was asked for). */
  readonly address: string;
  readonly connections: number;
  close(): Promise<void>;
}

// Listen and forward; resolves once listening (rejects when the address cannot be bound).
export async function startForwarder(options: ForwarderOptions): Promise<Forwarder> {
  const log = options.logger;
  const sockets = new Set<net.Socket>();
  const controller = new AbortController();
  let count = 0;
  const server = net.createServer({ allowHalfOpen: true, noDelay: true, highWaterMark: LOCAL_SOCKET_BUFFER_BYTES }, (socket) => {
    const number = ++count;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', (error) => log.debug(`forward ${options.spec.text}: connection ${number}: ${errorMessage(error)}`));
    socket.pause();
    options.open(controller.signal).then(
      (stream) => {
        stream.on('error', (error) => {
          log.warn(`forward ${options.spec.text}: connection ${number} to ${options.target}: ${errorMessage(error)}`);
          resetLocal(socket);
        });
        socket.once('close', () => {
          // The local client went away without its half-close: the stream ends too.
          if (socket.errored || !socket.readableEnded) stream.destroy();
        });
        socket.pipe(stream);
        stream.pipe(socket);
      },
      (error: unknown) => {
        log.warn(`forward ${options.spec.text}: connection ${number} could not reach ${options.target}: ${errorMessage(error)}`);
        resetLocal(socket);
      },
    );
  });
  const listen = options.spec.listen;
  if (listen.kind === 'unix') await unlink(listen.path).catch(() => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => (server.off('error', reject), resolve());
    if (listen.kind === 'unix') server.listen(listen.path, done);
    else server.listen(listen.port, listen.host, done);
  });
  server.on('error', (error) => log.warn(`forward ${options.spec.text}: ${errorMessage(error)}`));
  const bound = server.address();
  const address = typeof bound === 'string' || bound === null ? formatAddress(listen) : formatAddress({ kind: 'tcp', host: bound.address, port: bound.port });
  log.info(`forwarding ${address} to ${options.target}`);
  let closing: Promise<void> | undefined;
  return {
    address,
    get connections() {
      return sockets.size;
    },
    close() {
      closing ??= (async () => {
        controller.abort();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await closed;
      })();
      return closing;
    },
  };
}
