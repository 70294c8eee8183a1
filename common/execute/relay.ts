// Serves `execute` and `commands.list` on a downstream peer (a CLI on a daemon's control socket) by
// forwarding them to an upstream peer (the other side's agent), so any number of CLIs share one channel.
// Output and stdin keep their flow control end to end: each hop holds at most one window per request.
import { bulkDataOf } from '../wire/bulk-line.js';
import { RpcError, errorMessage } from '../wire/errors.js';
import { executeRemote } from './client.js';
import { validateExecuteParams } from './params.js';
import { AckBatch, FlowWindow } from './flow-window.js';
import type { Logger } from '../base/logger.js';
import { ERROR_CODES, METHODS, isRecord, isRequestId, type ExecuteResult, type OutputStream, type RequestId } from '../wire/protocol.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

export interface ExecuteRelayOptions {
  /** The peer to forward to, from the raw params (the host daemon routes by `guest`); throw RpcError when none. */
  resolveUpstream: (params: Record<string, unknown>) => RpcPeer | Promise<RpcPeer>;
  logger: Logger;
  /** Called once per relayed execute (for the daemon's log). */
  onRelayed?: (record: { params: Record<string, unknown>; result?: ExecuteResult; error?: string }) => void;
}

interface RelayedRequest {
  output: FlowWindow;
  input: InputQueue;
  window: number;
  abort: (error: Error) => void;
}

// Register the relay on `downstream`.
export function registerExecuteRelay(downstream: RpcPeer, options: ExecuteRelayOptions): void {
  const active = new Map<RequestId, RelayedRequest>();

  downstream.handle(METHODS.listCommands, async (params) => {
    const raw = isRecord(params) ? params : {};
    const upstream = await options.resolveUpstream(raw);
    return upstream.request(METHODS.listCommands, {});
  });

  downstream.handle(METHODS.execute, async (params, context) => {
    const raw = isRecord(params) ? params : {};
    const execute = validateExecuteParams(params);
    // Registered before the first await: the caller's stdin chunks follow the request at once and
    // must find it (they wait in the queue, bounded by the caller's window).
    const controller = new AbortController();
    const relayed: RelayedRequest = {
      output: new FlowWindow(execute.window),
      // What waits here counts against the caller's connection: a caller that ignores the window stops
      // being read (message-writer.ts) instead of growing the daemon.
      input: new InputQueue((delta) => downstream.adjustHeld(delta)),
      window: execute.window,
      abort: (error) => controller.abort(error),
    };
    active.set(context.id, relayed);
    const sink = (stream: OutputStream) => async (chunk: Buffer) => {
      if (!(await relayed.output.reserve(chunk.length))) return;
      await context.sendBulk(METHODS.executeOutput, stream, chunk);
    };
    try {
      const upstream = await options.resolveUpstream(raw);
      const result = await executeRemote(upstream, {
        command: execute.command,
        args: execute.args,
        timeoutMs: execute.timeoutMs,
        window: execute.window,
        signal: AbortSignal.any([context.signal, controller.signal]),
        stdout: sink('stdout'),
        stderr: sink('stderr'),
        ...(execute.stdin
          ? { stdin: relayed.input.iterate(new AckBatch(execute.window, (bytes) => void context.notify(METHODS.executeInputAck, { id: context.id, bytes }))) }
          : {}),
      });
      options.onRelayed?.({ params: raw, result });
      return result;
    } catch (caught) {
      // Our own abort (a flow-control violation) is the reason, not the cancel it caused upstream.
      const error: unknown = controller.signal.aborted ? controller.signal.reason : caught;
      options.onRelayed?.({ params: raw, error: errorMessage(error) });
      throw error;
    } finally {
      relayed.output.close();
      relayed.input.discard();
      active.delete(context.id);
    }
  });

  downstream.onNotification(METHODS.executeOutputAck, (params) => {
    const relayed = find(params);
    if (relayed && isRecord(params) && !relayed.output.ack(params.bytes as number)) {
      options.logger.warn(`${downstream.options.label}: acknowledged more output than was sent; ignored`);
    }
  });
  downstream.onNotification(METHODS.executeInput, (params) => {
    const relayed = find(params);
    if (!relayed || !isRecord(params)) return;
    const data = bulkDataOf(params);
    if (data && relayed.input.bytes + data.length > relayed.window * 2) {
      relayed.input.discard();
      relayed.abort(new RpcError(ERROR_CODES.flowControl, `flow-control violation: more than ${relayed.window * 2} stdin bytes sent without acknowledgement`));
      return;
    }
    if (data) relayed.input.push(data);
    if (params.eof === true) relayed.input.end();
  });

  function find(params: unknown): RelayedRequest | undefined {
    const id = isRecord(params) ? params.id : undefined;
    return isRequestId(id) ? active.get(id) : undefined;
  }
}

/** Chunks pushed by notifications, pulled by the upstream stdin pump; bounded by the sender's window. */
class InputQueue {
  #chunks: Buffer[] = [];
  #bytes = 0;
  #ended = false;
  #wake: (() => void) | undefined;
  readonly #account: (delta: number) => void;

  constructor(account: (delta: number) => void) {
    this.#account = account;
  }

  get bytes(): number {
    return this.#bytes;
  }
  push(chunk: Buffer): void {
    if (this.#ended) return;
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    this.#account(chunk.length);
    this.#wake?.();
  }
  /** No more input: what is queued is still taken. */
  end(): void {
    this.#ended = true;
    this.#wake?.();
  }
  /** The request is over: drop what is queued. */
  discard(): void {
    this.#account(-this.#bytes);
    this.#bytes = 0;
    this.#chunks = [];
    this.end();
  }
  async *iterate(taken: AckBatch): AsyncGenerator<Buffer> {
    for (;;) {
      const chunk = this.#chunks.shift();
      if (chunk) {
        this.#bytes -= chunk.length;
        this.#account(-chunk.length);
        taken.add(chunk.length);
        yield chunk;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => (this.#wake = resolve));
      this.#wake = undefined;
    }
  }
}
