// The serving side of `stream.open` on one peer: a stream is a long-lived request whose handler pipes
// a local Duplex (a socket to a service, or in a daemon's relay a stream opened upstream) to and from
// the opener, with a credit window per direction, half-close both ways, and an answer when it ends.
//
// Hazards: input may arrive before the local end is connected (queued, bounded by the window); the
// readable side must be read without destroying it at its end (read-pump.ts), or a half-closed socket would lose
// its write side; and every way a stream ends (cancel, peer restart, idle, flow violation, the peer
// stopping) must reset the local socket so the service sees it.
import type { Duplex } from 'node:stream';
import { bulkDataOf } from '../wire/bulk-line.js';
import { CanceledError, ConfigError, RpcError, toRpcError } from '../wire/errors.js';
import { AckBatch, FlowWindow } from '../execute/flow-window.js';
import { pumpReadable } from '../execute/read-pump.js';
import type { Logger } from '../base/logger.js';
import { ERROR_CODES, MAX_CHUNK_BYTES, METHODS, isRecord, isRequestId, type RequestId, type StreamOpenParams, type StreamOpenResult } from '../wire/protocol.js';
import type { RequestContext, RpcPeer } from '../wire/rpc-peer.js';

export { DEFAULT_MAX_STREAMS } from '../wire/protocol.js';
/**
 * What a local socket (a service connection, a forward's accepted connection) buffers each way before it
 * stops reading or asks its writer to wait: one largest chunk. Node's default (16 KiB) is less than one
 * 64 KiB socket read, so the socket was stopped and restarted at every read.
 */
export const LOCAL_SOCKET_BUFFER_BYTES = MAX_CHUNK_BYTES;
/** Largest window an opener may ask for: it bounds what this side buffers per stream. */
const MAX_WINDOW_BYTES = 64 * 1024 * 1024;

export interface StreamLimits {
  /** Streams open at once on this peer; more are refused with `streamLimit`. */
  maxStreams: number;
  /** A stream with no byte either way for this long is reset (0 = never). */
  idleTimeoutMs: number;
}

export interface ServeStreamsOptions extends StreamLimits {
  logger: Logger;
  /** Connect the local end of a new stream; throw an RpcError (unknown service, refused) when it cannot be. */
  open: (params: StreamOpenParams, context: RequestContext, signal: AbortSignal) => Promise<Duplex>;
  /** Called when a stream ends, for the daemon's log. */
  onClosed?: (params: StreamOpenParams, id: RequestId, outcome: { result?: StreamOpenResult; error?: RpcError }) => void;
}

/** Handle to the streams served on one peer. */
export interface StreamServer {
  readonly open: number;
  /** End every stream at once with `error` (the peer is stopping). */
  endAll(error: Error): void;
}

interface Served {
  params: StreamOpenParams;
  context: RequestContext;
  output: FlowWindow;
  /** Input that came before the local end was connected. */
  early: Buffer[];
  earlyBytes: number;
  /** Input written to the local end, acknowledged in batches. */
  inputAcks: AckBatch;
  inputEnded: boolean;
  local?: Duplex;
  bytesIn: number;
  touched: number;
  abort(error: Error): void;
}

export function validateStreamOpenParams(raw: unknown): StreamOpenParams {
  if (!isRecord(raw)) throw new RpcError(ERROR_CODES.invalidParams, '`stream.open` needs params {service, window}');
  if (typeof raw.service !== 'string') throw new RpcError(ERROR_CODES.invalidParams, '`stream.open`: `service` must be a string (a service name)');
  const window = raw.window;
  if (typeof window !== 'number' || !Number.isSafeInteger(window) || window < 1024 || window > MAX_WINDOW_BYTES) {
    throw new RpcError(ERROR_CODES.invalidParams, `\`stream.open\`: \`window\` must be an integer from 1024 to ${MAX_WINDOW_BYTES}, got ${JSON.stringify(window)}`);
  }
  return { service: raw.service, window, ...(typeof raw.guest === 'string' ? { guest: raw.guest } : {}) };
}

export function checkStreamLimits(limits: StreamLimits): StreamLimits {
  for (const key of ['maxStreams', 'idleTimeoutMs'] as const) {
    const value = limits[key];
    if (!Number.isSafeInteger(value) || value < 0 || (key === 'maxStreams' && value === 0)) {
      throw new ConfigError(`Expected the \`${key}\` option to be a ${key === 'maxStreams' ? 'positive' : 'non-negative'} integer, got \`${value}\``);
    }
  }
  return limits;
}

/**
 * Close a local end so that its peer sees a reset, not a clean end: a TCP socket with an RST
 * (resetAndDestroy, which throws for other handles such as UNIX sockets), anything else destroyed.
 */
export function resetLocal(local: Duplex, error?: Error): void {
  if (local.destroyed) return;
  const socket = local as Duplex & { resetAndDestroy?: () => void };
  try {
    if (typeof socket.resetAndDestroy === 'function') return void socket.resetAndDestroy();
  } catch {
    // ERR_INVALID_HANDLE_TYPE: not a TCP socket; it threw before doing anything.
  }
  local.destroy(error);
}

/** The wire error for a local socket's failure: its errno kept in `data`. */
export function resetError(error: unknown, what: string): RpcError {
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error instanceof RpcError || typeof errno !== 'string') return toRpcError(error);
  return new RpcError(ERROR_CODES.streamReset, `${what} failed: ${errno}`, { errno });
}

// Register `stream.open` and the stream notifications on `peer`.
export function serveStreams(peer: RpcPeer, options: ServeStreamsOptions): StreamServer {
  checkStreamLimits(options);
  const streams = new Map<RequestId, Served>();
  const log = options.logger;
  const label = peer.options.label;

  peer.handle(METHODS.streamOpen, async (raw, context) => {
    const params = validateStreamOpenParams(raw);
    if (streams.size >= options.maxStreams) {
      throw new RpcError(ERROR_CODES.streamLimit, `too many streams open on ${label} (${streams.size}, the other side's --max-streams); close some or raise the limit`);
    }
    const controller = new AbortController();
    const onContextAbort = (): void => controller.abort(context.signal.reason);
    context.signal.addEventListener('abort', onContextAbort, { once: true });
    const served: Served = {
      params,
      context,
      output: new FlowWindow(params.window),
      early: [],
      earlyBytes: 0,
      inputAcks: new AckBatch(params.window, (bytes) => void context.notify(METHODS.streamInputAck, { id: context.id, bytes })),
      inputEnded: false,
      bytesIn: 0,
      touched: Date.now(),
      abort: (error) => controller.abort(error),
    };
    // Registered before the first await: input follows the request at once and must find it.
    streams.set(context.id, served);
    const idle = options.idleTimeoutMs > 0 ? setInterval(() => checkIdle(served), Math.max(50, Math.min(options.idleTimeoutMs / 4, 5000))) : undefined;
    try {
      const local = await options.open(params, context, controller.signal);
      if (controller.signal.aborted) {
        local.destroy();
        throw controller.signal.reason;
      }
      served.local = local;
      for (const chunk of served.early.splice(0)) writeInput(served, chunk);
      if (served.inputEnded) local.end();
      const result = await pipe(served, local, controller.signal);
      options.onClosed?.(params, context.id, { result });
      return result;
    } catch (error) {
      const wire = resetError(error, `the stream to \`${params.service}\``);
      options.onClosed?.(params, context.id, { error: wire });
      throw wire;
    } finally {
      clearInterval(idle);
      context.signal.removeEventListener('abort', onContextAbort);
      served.output.close();
      streams.delete(context.id);
    }
  });

  function checkIdle(served: Served): void {
    if (Date.now() - served.touched < options.idleTimeoutMs) return;
    served.abort(new RpcError(ERROR_CODES.requestTimeout, `stream to \`${served.params.service}\` closed after ${options.idleTimeoutMs / 1000} s without traffic (--stream-idle-timeout)`));
  }

  // Pipe until the local end closes; resolves with the byte counts, rejects with what ended it.
  async function pipe(served: Served, local: Duplex, signal: AbortSignal): Promise<StreamOpenResult> {
    const { context } = served;
    let bytesOut = 0;
    const closed = new Promise<void>((resolve, reject) => {
      local.once('close', () => (local.errored ? reject(local.errored) : resolve()));
      local.on('error', () => {}); // reported through `errored` at close
    });
    const onAbort = (): void => {
      served.output.close();
      resetLocal(local, signal.reason instanceof Error ? signal.reason : new CanceledError('stream closed'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const pumpOutput = async (): Promise<void> => {
      const ended = await pumpReadable(local, async (chunk) => {
        for (let offset = 0; offset < chunk.length; offset += served.output.maxPiece) {
          const piece = chunk.subarray(offset, offset + served.output.maxPiece);
          if (!(await served.output.reserve(piece.length))) return false;
          bytesOut += piece.length;
          served.touched = Date.now();
          await context.sendBulk(METHODS.streamOutput, undefined, piece);
        }
        return true;
      });
      if (ended) await context.notify(METHODS.streamOutput, { id: context.id, eof: true });
    };
    try {
      await Promise.all([pumpOutput(), closed]);
      if (signal.aborted) throw signal.reason;
      return { bytesIn: served.bytesIn, bytesOut };
    } catch (error) {
      throw signal.aborted ? signal.reason : error;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  function writeInput(served: Served, chunk: Buffer): void {
    const local = served.local!;
    if (local.destroyed || local.writableEnded) return;
    served.bytesIn += chunk.length;
    served.touched = Date.now();
    local.write(chunk, () => served.inputAcks.add(chunk.length));
  }

  peer.onNotification(METHODS.streamInput, (params) => {
    const served = find(params, METHODS.streamInput);
    if (!served || !isRecord(params) || served.inputEnded) return;
    const chunk = bulkDataOf(params);
    if (chunk && chunk.length > 0) {
      const buffered = served.local ? served.local.writableLength : served.earlyBytes;
      if (buffered + chunk.length > served.params.window * 2) {
        served.abort(new RpcError(ERROR_CODES.flowControl, `flow-control violation: more than ${served.params.window * 2} stream bytes sent without acknowledgement`));
        return;
      }
      if (served.local) writeInput(served, chunk);
      else {
        served.early.push(chunk);
        served.earlyBytes += chunk.length;
      }
    }
    if (params.eof === true) {
      served.inputEnded = true;
      served.local?.end();
    }
  });

  peer.onNotification(METHODS.streamOutputAck, (params) => {
    const served = find(params, METHODS.streamOutputAck);
    if (served && isRecord(params) && !served.output.ack(params.bytes as number)) {
      served.abort(new RpcError(ERROR_CODES.flowControl, 'flow-control violation: acknowledged more stream output than was sent'));
    }
  });

  function find(params: unknown, method: string): Served | undefined {
    const id = isRecord(params) ? params.id : undefined;
    const served = isRequestId(id) ? streams.get(id) : undefined;
    if (!served) log.debug(`${label}: \`${method}\` for unknown or finished stream ${JSON.stringify(id)}; ignored`);
    return served;
  }

  return {
    get open() {
      return streams.size;
    },
    endAll(error) {
      for (const served of streams.values()) served.abort(error);
    },
  };
}
