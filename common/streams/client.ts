// common/streams/: forwarded streams (virtproxy's job), beside execute/: the services a side offers and
// their policy, `stream.open` served and asked for, the daemon relay and the local --forward listeners.
//
// The opener's side of a stream: `openStream` sends `stream.open` and gives back a Duplex. Writes go out
// as `stream.input` within the window the serving side acknowledges; `end()` is a half-close; output is
// pushed as it arrives and acknowledged as it is read, so a slow reader holds back only its own stream.
// The Duplex closes once both directions are done and the serving side answered; it errors with the
// serving side's error (unknown service, refused, reset with errno, peer restarted), and destroying it
// cancels the stream on the other side.
import { Duplex } from 'node:stream';
import { bulkDataOf } from '../wire/bulk-line.js';
import { CanceledError, RpcError } from '../wire/errors.js';
import { AckBatch, FlowWindow } from '../execute/flow-window.js';
import { requireStreams } from './capability.js';
import { DEFAULT_STREAM_WINDOW_BYTES, ERROR_CODES, MAX_CHUNK_BYTES, METHODS, type StreamOpenParams, type StreamOpenResult } from '../wire/protocol.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

export interface OpenStreamOptions {
  service: string;
  /** Through a host daemon's control socket: the guest whose service to open. */
  guest?: string;
  /** Bytes in flight per direction. Default 2 MiB. */
  window?: number;
  /** How long to wait for the handshake with the peer. Default the peer's request timeout. */
  readyTimeoutMs?: number;
  signal?: AbortSignal;
}

// Streams open per peer, so that a peer that says it is stopping ends them at once.
const openStreams = new WeakMap<RpcPeer, Set<RemoteStream>>();

/** End every stream opened on `peer` with `error` (the other agent is stopping or restarting). */
export function endStreamsOf(peer: RpcPeer, error: Error): void {
  for (const stream of openStreams.get(peer) ?? []) stream.destroy(error);
}

export class RemoteStream extends Duplex {
  readonly service: string;
  /** Settles when the serving side answers: the byte counts, or the error that ended the stream. */
  readonly result: Promise<StreamOpenResult>;
  readonly #peer: RpcPeer;
  readonly #window: number;
  readonly #input: FlowWindow;
  readonly #controller = new AbortController();
  readonly #id: number;
  /** Output received and not yet consumed (the reader is behind): acknowledged when it reads again. */
  #unread = 0;
  readonly #acks: AckBatch;
  #answered = false;
  #eofReceived = false;

  constructor(peer: RpcPeer, options: OpenStreamOptions) {
    const window = options.window ?? DEFAULT_STREAM_WINDOW_BYTES;
    super({ allowHalfOpen: true, readableHighWaterMark: window, writableHighWaterMark: MAX_CHUNK_BYTES });
    this.service = options.service;
    this.#peer = peer;
    this.#window = window;
    this.#input = new FlowWindow(this.#window);
    const params: StreamOpenParams = { service: options.service, window: this.#window, ...(options.guest !== undefined ? { guest: options.guest } : {}) };
    const signal = options.signal ? AbortSignal.any([options.signal, this.#controller.signal]) : this.#controller.signal;
    const started = peer.startRequest(METHODS.streamOpen, params, {
      timeoutMs: 0,
      signal,
      notifications: {
        [METHODS.streamOutput]: (message) => this.#onOutput(message),
        [METHODS.streamInputAck]: (message) => {
          if (typeof message.bytes === 'number') this.#input.ack(message.bytes);
        },
      },
    });
    this.#id = started.id;
    this.#acks = new AckBatch(window, (bytes) => {
      if (!this.#answered) void peer.notify(METHODS.streamOutputAck, { id: this.#id, bytes });
    });
    let streams = openStreams.get(peer);
    if (!streams) openStreams.set(peer, (streams = new Set()));
    streams.add(this);
    this.result = started.response as Promise<StreamOpenResult>;
    this.result.then(
      () => {
        this.#answered = true;
        this.#input.close();
        // The serving side is done: what is buffered is still read, then the stream closes.
        if (this.readableEnded) this.destroy();
        else this.once('end', () => this.destroy());
      },
      (error: Error) => {
        this.#answered = true;
        if (!this.destroyed) this.destroy(error);
      },
    );
    this.once('close', () => streams.delete(this));
  }

  #onOutput(message: Record<string, unknown>): void {
    const data = bulkDataOf(message);
    if (data && data.length > 0) {
      this.#unread += data.length;
      if (this.readableLength + data.length > this.#window * 2) {
        this.destroy(new RpcError(ERROR_CODES.flowControl, `flow-control violation: the peer sent more than ${this.#window * 2} unacknowledged stream bytes`));
        return;
      }
      // Consumed at once while the reader keeps up (the buffer is under a window), else when it reads
      // again (_read): a reader that stops holds at most two windows and stalls only this stream. Credit
      // goes back in batches (flow-window.ts).
      if (this.push(data)) this.#acknowledge();
    }
    if (message.eof === true) {
      this.#eofReceived = true;
      this.push(null);
    }
  }

  #acknowledge(): void {
    this.#acks.add(this.#unread);
    this.#unread = 0;
  }

  override _read(): void {
    this.#acknowledge();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#send([chunk]).then(() => callback(), callback);
  }

  // Chunks queued while a send waited for credit go out one after the other, each as it is (no copy
  // into one buffer): the writer gathers them into its writes.
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#send(chunks.map((c) => c.chunk)).then(() => callback(), callback);
  }

  async #send(chunks: Buffer[]): Promise<void> {
    for (const chunk of chunks) {
      for (let offset = 0; offset < chunk.length; offset += this.#input.maxPiece) {
        const piece = chunk.subarray(offset, offset + this.#input.maxPiece);
        // A closed window: the stream is over, nobody will read these bytes.
        if (!(await this.#input.reserve(piece.length))) return;
        await this.#peer.sendBulk({ method: METHODS.streamInput, id: this.#id, data: piece });
      }
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.#answered) return callback();
    this.#peer.notify(METHODS.streamInput, { id: this.#id, eof: true }).then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#input.close();
    // Both directions done (a reader that destroys at the end, as for-await does): the answer is coming, not a cancel.
    const finished = this.#eofReceived && this.writableFinished && !error;
    if (!this.#answered && !finished) this.#controller.abort(error ?? new CanceledError(`stream to \`${this.service}\` closed locally`));
    callback(error);
  }
}

// Open a stream to `service` on the other side of `peer` (or, through a host daemon, of `guest`).
export async function openStream(peer: RpcPeer, options: OpenStreamOptions): Promise<RemoteStream> {
  await peer.waitForReady(options.readyTimeoutMs ?? peer.options.requestTimeoutMs, options.signal);
  requireStreams(peer);
  return new RemoteStream(peer, options);
}
