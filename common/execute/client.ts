// The caller's side of `execute`: sends stdin with flow control, delivers stdout/stderr to sinks as
// they arrive, acknowledges what the sinks consumed, and resolves with the command's outcome.
import type { Readable, Writable } from 'node:stream';
import { bulkDataOf } from '../wire/bulk-line.js';
import { ConfigError, RpcError } from '../wire/errors.js';
import { AckBatch, FlowWindow } from './flow-window.js';
import { validateExecuteResult } from './params.js';
import {
  DEFAULT_TIMEOUT_MS,
  DEFAULT_WINDOW_BYTES,
  ERROR_CODES,
  METHODS,
  isRecord,
  type ExecuteParams,
  type ExecuteResult,
  type OutputStream,
} from '../wire/protocol.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

/** A place output goes: a stream (its backpressure is honoured) or a function (awaited if it returns a promise). */
export type OutputSink = Writable | ((chunk: Buffer) => void | Promise<void>);
export type InputSource = Readable | AsyncIterable<Uint8Array> | Uint8Array | string;

export interface ExecuteOptions {
  command: string;
  args?: string[];
  stdin?: InputSource;
  stdout?: OutputSink;
  stderr?: OutputSink;
  /** The command's deadline on the serving side (0 = none). Default 10 000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Output bytes in flight. Default 4 MiB. */
  window?: number;
  /** Through a host daemon's control socket: the guest to run on. */
  guest?: string;
  /**
   * How long past the command's deadline to wait for the serving side's answer (default 2 s). Through a
   * daemon, give more than the daemon's own 2 s, so that its error (naming the guest) arrives first.
   */
  answerGraceMs?: number;
}

/**
 * Time the caller waits past the command's deadline for the serving side's `timedOut` answer (which
 * normally comes within milliseconds of the SIGTERM); after it, the caller fails with a timeout error.
 */
const ANSWER_GRACE_MS = 2000;

// Run a command on the other side of `peer`; rejects only when the request itself fails (a command that
// exits non-zero resolves with its exit code).
export async function executeRemote(peer: RpcPeer, options: ExecuteOptions): Promise<ExecuteResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const window = options.window ?? DEFAULT_WINDOW_BYTES;
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
    throw new ConfigError(`Expected the \`timeoutMs\` option to be a non-negative integer, got \`${timeoutMs}\``);
  }
  const params: ExecuteParams = {
    command: options.command,
    args: options.args ?? [],
    stdin: options.stdin !== undefined,
    timeoutMs,
    window,
    ...(options.guest !== undefined ? { guest: options.guest } : {}),
  };
  // Inputs may only follow the request on the wire: wait for the handshake before sending it.
  await peer.waitForReady(timeoutMs, options.signal);
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
  const input = new FlowWindow(window);
  let delivery: Promise<void> = Promise.resolve();
  let deliveryError: Error | undefined;
  let buffered = 0;
  const acks = new AckBatch(window, (bytes) => void peer.notify(METHODS.executeOutputAck, { id, bytes }));
  // Each output chunk goes to its sink in order; acknowledged once the sink took it.
  const deliver = (stream: OutputStream, chunk: Buffer): void => {
    const sink = stream === 'stdout' ? options.stdout : options.stderr;
    buffered += chunk.length;
    if (buffered > window * 2) {
      controller.abort(new RpcError(ERROR_CODES.flowControl, `flow-control violation: the peer sent more than ${window * 2} unacknowledged output bytes`));
      return;
    }
    delivery = delivery.then(async () => {
      if (sink && !deliveryError) {
        try {
          await writeToSink(sink, chunk);
        } catch (error) {
          deliveryError = error as Error;
          controller.abort(deliveryError);
        }
      }
      buffered -= chunk.length;
      // In batches (flow-window.ts): few messages, and never a stall.
      acks.add(chunk.length);
    });
  };
  const { id, response } = peer.startRequest(METHODS.execute, params, {
    timeoutMs: timeoutMs === 0 ? 0 : timeoutMs + (options.answerGraceMs ?? ANSWER_GRACE_MS),
    signal,
    notifications: {
      [METHODS.executeOutput]: (output) => {
        const data = bulkDataOf(output);
        if (data) deliver(output.stream === 'stderr' ? 'stderr' : 'stdout', data);
      },
      [METHODS.executeInputAck]: (ack) => {
        if (typeof ack.bytes === 'number') input.ack(ack.bytes);
      },
    },
  });
  const stdinDone = options.stdin !== undefined ? pumpInput(peer, id, options.stdin, input, signal) : Promise.resolve();
  try {
    const result = validateExecuteResult(await response);
    await delivery;
    if (deliveryError) throw deliveryError;
    return result;
  } finally {
    input.close();
    // Not awaited: an interactive stdin may never end; the pump stops at its next chunk.
    void stdinDone.catch(() => {});
  }
}

async function pumpInput(peer: RpcPeer, id: number, source: InputSource, window: FlowWindow, signal: AbortSignal): Promise<void> {
  const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> =
    typeof source === 'string' ? [Buffer.from(source)] : source instanceof Uint8Array ? [source] : source;
  for await (const data of chunks) {
    const chunk = Buffer.isBuffer(data) ? data : Buffer.from(data);
    for (let offset = 0; offset < chunk.length; offset += window.maxPiece) {
      const piece = chunk.subarray(offset, offset + window.maxPiece);
      if (signal.aborted || !(await window.reserve(piece.length))) return;
      await peer.sendBulk({ method: METHODS.executeInput, id, data: piece });
    }
  }
  if (!signal.aborted) await peer.notify(METHODS.executeInput, { id, eof: true });
}

function writeToSink(sink: OutputSink, chunk: Buffer): void | Promise<void> {
  if (typeof sink === 'function') return sink(chunk);
  if (sink.write(chunk)) return;
  return new Promise((resolve, reject) => {
    const onDrain = (): void => (sink.off('error', onError), resolve());
    const onError = (error: Error): void => (sink.off('drain', onDrain), reject(error));
    sink.once('drain', onDrain);
    sink.once('error', onError);
  });
}
