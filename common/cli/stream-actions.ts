// What `--connect` and `--forward` do once a peer is connected (the daemon's control socket or the other
// side's channel), for both CLIs. `--connect` is made to be ssh's ProxyCommand: only the stream's bytes
// go to stdout (messages go to stderr), our stdin's EOF is a half-close, and the process ends when both
// directions are done, when ssh goes away (stdout EPIPE, or its SIGHUP), or on the stream's error.
import { parseForwardSpec } from '../streams/address.js';
import { openStream } from '../streams/client.js';
import { startForwarder } from '../streams/forward.js';
import { ChannelClosedError } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';
import type { RpcPeer } from '../wire/rpc-peer.js';
import { EXIT_CODES, type CliIo } from './actions.js';

export interface StreamActionOptions {
  peer: RpcPeer;
  service: string;
  /** Only through a host daemon's control socket. */
  guest?: string;
  timeoutMs: number;
  io: CliIo;
  signal: AbortSignal;
}

// Make stdin/stdout a stream to `service`; resolves with the exit code once both directions are closed.
export async function runConnectAction(options: StreamActionOptions): Promise<number> {
  const { io } = options;
  const stream = await openStream(options.peer, {
    service: options.service,
    ...(options.guest !== undefined ? { guest: options.guest } : {}),
    signal: options.signal,
    readyTimeoutMs: options.timeoutMs || 10_000,
  });
  return new Promise<number>((resolve, reject) => {
    stream.once('error', reject);
    // The reader went away (ssh exited): nothing more to do.
    io.stdout.once('error', () => {
      stream.destroy();
      resolve(EXIT_CODES.ok);
    });
    options.signal.addEventListener('abort', () => (stream.destroy(), resolve(EXIT_CODES.interrupted)), { once: true });
    io.stdin.pipe(stream);
    stream.pipe(io.stdout, { end: false });
    stream.once('close', () => {
      if (!stream.errored) resolve(EXIT_CODES.ok);
    });
  });
}

export interface ForwardActionOptions extends Omit<StreamActionOptions, 'service'> {
  spec: string;
  logger: Logger;
  /** How the other side is named: `guest vm1`, `the host`. */
  targetName: string;
}

// Listen until Ctrl-C (exit 0) or until the connection to the daemon / the other side is lost (255).
export async function runForwardAction(options: ForwardActionOptions): Promise<number> {
  const spec = parseForwardSpec(options.spec, false);
  const forwarder = await startForwarder({
    spec,
    logger: options.logger,
    target: `service \`${spec.service}\` of ${options.targetName}`,
    open: (signal) =>
      openStream(options.peer, {
        service: spec.service,
        ...(options.guest !== undefined ? { guest: options.guest } : {}),
        signal: AbortSignal.any([signal, options.signal]),
        readyTimeoutMs: options.timeoutMs || 10_000,
      }),
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      if (options.signal.aborted) return resolve(EXIT_CODES.ok);
      options.signal.addEventListener('abort', () => resolve(EXIT_CODES.ok), { once: true });
      options.peer.once('close', (error?: Error) => reject(error ?? new ChannelClosedError(`the connection to ${options.peer.options.label} closed`)));
    });
  } finally {
    await forwarder.close();
  }
}
