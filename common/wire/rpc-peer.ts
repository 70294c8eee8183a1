// common/wire/: the protocol and the RPC peer. Bytes in and out through the ByteChannel seam, lines and
// frames, the hello handshake, requests matched by id, the limits that keep a hostile peer bounded. It
// knows nothing of commands, daemons or CLIs (docs/architecture.md).
//
// A symmetric JSON-RPC 2.0 peer over a ByteChannel (vscode-jsonrpc's "connection"): the hello handshake
// (handshake.ts), requests both ways matched by id (requests.ts), notifications, bulk notifications
// that carry a command's bytes, cancellation and deadlines. Reading and writing are message-reader.ts
// and message-writer.ts; this module decides what each message means for the current session.
//
// Sessions: a session starts when the hello exchange completes. A hello with another nonce means the
// peer restarted: what the old session had in flight fails with `peerRestarted` and is never answered
// in the new one. Before the first handshake, every other line is stale data from an earlier connection.
// It stays one piece (~400 lines) because that session state is read on every path below; the parts
// that do not need it (reading, writing, the hello retries, the request tables) live beside it.
import { EventEmitter } from 'node:events';
import type { ByteChannel } from './byte-channel.js';
import { CanceledError, ChannelClosedError, ConfigError, HandshakeError, PeerLostError, PeerRestartedError, RpcError, TimeoutError, errorMessage, toRpcError, truncateForLog } from './errors.js';
import { HelloSender, validatePeerHello } from './handshake.js';
import { describeValue } from './json-limits.js';
import { REQUEST_OVERHEAD_BYTES, processMemoryBudget } from './memory-budget.js';
import { setLongTimeout } from '../base/long-timer.js';
import { Keepalive } from './keepalive.js';
import { MessageReader, type IncomingMessage } from './message-reader.js';
import { MessageWriter } from './message-writer.js';
import { IncomingRequests, OutgoingRequests, type StartedRequest } from './requests.js';
import type { Logger } from '../base/logger.js';
import { createWarningLimiter } from '../base/warning-limiter.js';
import { resolvePeerOptions, type BulkMessage, type NotificationHandler, type PeerOptions, type RequestContext, type RequestHandler, type RequestOptions, type ResolvedPeerOptions } from './peer-options.js';
import { ERROR_CODES, FRAMES_CAPABILITY, METHODS, SESSION_CAPABILITY, isRecord, isRequestId, type AgentInfo, type RequestId } from './protocol.js';

export type { BulkMessage, NotificationHandler, PeerOptions, RequestContext, RequestHandler, RequestOptions } from './peer-options.js';
export type { StartedRequest } from './requests.js';

/**
 * One end of a connection. Call `start()` once, after registering handlers; it sends the hello. Events:
 * `ready` (peerInfo, restarted: boolean), `close` (error?), `handshake-error` (HandshakeError), `session-lost`
 * (error: the session ended without a close, by `resync`: the peer went silent, reset or reconnected).
 */
export class RpcPeer extends EventEmitter {
  readonly options: ResolvedPeerOptions;
  readonly #channel: ByteChannel;
  readonly #log: Logger;
  readonly #warn: (message: string) => void;
  readonly #reader: MessageReader;
  readonly #writer: MessageWriter;
  readonly #hello: HelloSender;
  readonly #outgoing: OutgoingRequests;
  readonly #incoming = new IncomingRequests();
  readonly #keepalive: Keepalive;
  #keepalivePing: number | undefined;
  readonly #requestHandlers = new Map<string, RequestHandler>();
  readonly #notificationHandlers = new Map<string, NotificationHandler>();
  /** Sends queued until the handshake completes (each checks its request is still pending). */
  readonly #whenReady: Array<() => void> = [];
  /** Data that came before `start()`, when the handlers were not registered yet: all pre-handshake. */
  readonly #early: Buffer[] = [];
  #peerInfo: AgentInfo | undefined;
  #ready = false;
  #session = 0;
  #discarded = 0;
  #started = false;
  #closed = false;
  #closeError: Error | undefined;
  #closing: Promise<void> | undefined;
  #handshakeError: HandshakeError | undefined;

  constructor(channel: ByteChannel, options: PeerOptions) {
    super();
    this.options = resolvePeerOptions(options);
    const label = this.options.label;
    this.#channel = channel;
    this.#log = this.options.logger;
    this.#warn = createWarningLimiter(this.#log, 20, 60_000);
    this.#writer = new MessageWriter(channel, {
      label,
      logger: this.#log,
      maxWriteBacklogBytes: this.options.maxWriteBacklogBytes,
      budget: this.options.memoryBudget ?? processMemoryBudget(),
      onWriteFailed: (error) => {
        this.#finish(new ChannelClosedError(`writing to ${label} failed: ${errorMessage(error)}`));
        void channel.close();
      },
    });
    this.#reader = new MessageReader({
      maxLineBytes: this.options.maxLineBytes,
      onMessage: (message) => this.#dispatch(message),
      onInvalid: (what, requestId) => this.#onInvalid(what, requestId),
      onRefusedResponse: (id, what) => this.#onResponse(id, { error: { code: ERROR_CODES.invalidRequest, message: `${this.options.label}: ${what}` } }),
      onInternalError: (error) => this.#log.error(`internal error while reading a line from ${label}: ${errorMessage(error)}`),
      onLineProblem: (what, preview) => {
        if (this.#ready) return this.#warn(`${label}: ${what}: ${preview}`);
        this.#discarded++;
        this.#log.debug(`before the handshake with ${label}, ${what}: ${preview}`);
      },
    });
    this.#hello = new HelloSender(this.#writer, {
      label,
      logger: this.#log,
      retryMs: this.options.helloRetryMs,
      maxRetryMs: this.options.maxHelloRetryMs,
      localInfo: () => this.localInfo,
      isSettled: () => this.#closed || this.#ready,
      freshConnection: this.options.freshConnection,
    });
    this.#outgoing = new OutgoingRequests({ label, handshakeTimeoutMs: this.options.handshakeTimeoutMs, cancelRemote: (id) => void this.notify(METHODS.cancel, { id }) });
    this.#keepalive = new Keepalive({
      peerTimeoutMs: this.options.peerTimeoutMs,
      hasPending: () => this.#outgoing.hasSent(this.#keepalivePing),
      ping: (timeoutMs) => {
        const sent = Date.now();
        const ping = this.startRequest(METHODS.ping, {}, { timeoutMs });
        this.#keepalivePing = ping.id;
        // The round trip, for choosing --peer-timeout on slow guests (docs/benchmarks.md).
        return ping.response.then(() => this.#log.debug(`keepalive: ${this.options.label} answered a ping in ${Date.now() - sent} ms`));
      },
      onLost: (silentMs, pings) =>
        this.resync(`no answer from the ${this.#peerInfo?.side ?? 'other'} agent for ${(silentMs / 1000).toFixed(1)} s (${pings} keepalive ping(s) unanswered): it died, hangs, or its machine reset`, PeerLostError),
    });
    channel.onData((chunk) => this.#onData(chunk));
    channel.onClose((error) => {
      this.#reader.end();
      this.#finish(new ChannelClosedError(`channel ${label} closed${error ? `: ${error.message}` : ''}`));
    });
    channel.onReset?.(() => this.resync('the other side reconnected'));
    channel.onAbsent?.(() => this.#farEndAbsent());
    this.handle(METHODS.ping, () => ({ time: Date.now() }));
    this.handle(METHODS.info, () => this.localInfo);
  }

  /** This side's info, with the current connection's nonce. */
  get localInfo(): AgentInfo {
    const capabilities = this.options.localInfo.capabilities;
    return {
      ...this.options.localInfo,
      capabilities: capabilities.includes(SESSION_CAPABILITY) ? capabilities : [...capabilities, SESSION_CAPABILITY],
      nonce: this.#hello.nonce,
    };
  }
  get peerInfo(): AgentInfo | undefined {
    return this.#peerInfo;
  }
  get isReady(): boolean {
    return this.#ready;
  }
  get isClosed(): boolean {
    return this.#closed;
  }

  /** Register the handler of a request method (replaces an earlier one). */
  handle(method: string, handler: RequestHandler): void {
    this.#requestHandlers.set(method, handler);
  }
  /** Register the handler of a notification method (bulk ones get `data` as a Buffer or base64). */
  onNotification(method: string, handler: NotificationHandler): void {
    this.#notificationHandlers.set(method, handler);
  }

  /** Begin the handshake. Call once, after the handlers are registered. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    for (const chunk of this.#early.splice(0)) this.#reader.push(chunk);
    this.#hello.send();
  }

  /**
   * Forget the current session (the channel's far end changed, or the peer is lost) and handshake again;
   * what the session had in flight fails with `errorClass` and the reason.
   */
  resync(reason: string, errorClass: typeof ChannelClosedError = ChannelClosedError): void {
    if (this.#closed) return;
    this.#log.info(`resynchronising with ${this.options.label}: ${reason}`);
    const error = new errorClass(`${this.options.label}: ${reason}; the request was abandoned`);
    this.#endSession(error);
    this.emit('session-lost', error);
    this.#ready = false;
    this.#hello.renew();
    this.#writer.resumeReading();
    this.#hello.send();
  }

  // Resolve with the peer's info once the handshake is done; reject on timeout, close or handshake error.
  // A timeout of 0 ("none") still waits at most `handshakeTimeoutMs`: an absent agent never answers.
  waitForReady(requestedMs: number = this.options.requestTimeoutMs, signal?: AbortSignal): Promise<AgentInfo> {
    const timeoutMs = requestedMs === 0 ? this.options.handshakeTimeoutMs : requestedMs;
    if (this.#ready && this.#peerInfo) return Promise.resolve(this.#peerInfo);
    if (this.#closed) return Promise.reject(this.#closeError ?? new ChannelClosedError(`channel ${this.options.label} is closed`));
    if (this.#handshakeError) return Promise.reject(this.#handshakeError);
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        timer?.clear();
        this.off('ready', onReady);
        this.off('close', onClose);
        this.off('handshake-error', onFail);
        signal?.removeEventListener('abort', onAbort);
      };
      const onReady = (info: AgentInfo): void => (cleanup(), resolve(info));
      const onClose = (error?: Error): void => (cleanup(), reject(error ?? new ChannelClosedError(`channel ${this.options.label} closed`)));
      const onFail = (error: Error): void => (cleanup(), reject(error));
      const onAbort = (): void => (cleanup(), reject(new CanceledError('waiting for the handshake was canceled')));
      const timer =
        timeoutMs > 0
          ? setLongTimeout(() => {
              cleanup();
              reject(new TimeoutError(`no answer to the handshake from ${this.options.label} within ${timeoutMs} ms: is the negotiator agent running on the other side?`, timeoutMs));
            }, timeoutMs)
          : undefined;
      this.on('ready', onReady);
      this.on('close', onClose);
      this.on('handshake-error', onFail);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  // Send a request once the handshake is done; the id is known at once (for streamed notifications).
  startRequest(method: string, params: unknown, options: RequestOptions = {}): StartedRequest {
    const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
      throw new ConfigError(`Expected the \`timeoutMs\` option to be a non-negative integer, got \`${timeoutMs}\``);
    }
    if (this.#closed) {
      const error = this.#closeError ?? new ChannelClosedError(`channel ${this.options.label} is closed`);
      return { id: 0, response: Promise.reject(error) };
    }
    const started = this.#outgoing.add(method, timeoutMs, options.signal, options.notifications);
    const send = (): void => {
      const taken = this.#outgoing.takeForSending(started.id);
      if (taken === undefined || this.#closed) return;
      // Addressed to the peer's current session: bytes that reach a later session are refused, not run.
      const session = this.#boundSessions() ? { session: this.#peerInfo!.nonce } : {};
      const line = this.#writer.encode({ jsonrpc: '2.0', id: started.id, method: taken, params, ...session });
      if (line) {
        void this.#writer.writeLine(line);
        this.#keepalive.requestSent();
      }
      else this.#outgoing.fail(started.id, new ConfigError(`the params of \`${method}\` cannot be serialised as JSON`));
    };
    if (this.#ready) send();
    else this.#whenReady.push(send);
    return started;
  }

  // Send a request and await its result (rejects with RpcError, TimeoutError, CanceledError, ChannelClosedError...).
  request(method: string, params: unknown, options?: RequestOptions): Promise<unknown> {
    return this.startRequest(method, params, options).response;
  }

  // Send a notification now (no answer). Resolves when the bytes are written or can be (backpressure).
  notify(method: string, params: unknown): Promise<void> {
    return this.#writer.write({ jsonrpc: '2.0', method, params });
  }

  /**
   * Send a bulk notification: binary frames when both hellos offer `frames`, else a JSON line in the shape
   * bulk-line.ts reads fast; queued per id and written in turns (message-writer.ts). Resolves once queued
   * while the id has at most 64 KiB waiting, else once written: await it for backpressure.
   */
  sendBulk(message: BulkMessage): Promise<void> {
    return this.#writer.writeBulk(message);
  }

  /** Count memory held for this peer outside the peer (a relay's buffers): reading it pauses past its share. */
  adjustHeld(delta: number): void {
    this.#writer.adjustHeld(delta);
  }

  /** Close the channel; pending requests are rejected, running handlers aborted. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#finish(new ChannelClosedError(`channel ${this.options.label} was closed locally`));
      await this.#channel.close();
    })();
    return this.#closing;
  }

  // ---- receiving -------------------------------------------------------------------------------

  #onData(chunk: Buffer): void {
    this.#keepalive.heard();
    if (!this.#started) {
      if (this.#early.reduce((n, c) => n + c.length, 0) + chunk.length <= this.options.maxLineBytes * 2) this.#early.push(Buffer.from(chunk));
      else this.#discarded++;
      return;
    }
    try {
      this.#reader.push(chunk);
    } catch (error) {
      // Never throw out of a data handler: a bug here must not take the daemon down.
      this.#log.error(`internal error while reading from ${this.options.label}: ${errorMessage(error)}`);
    }
    this.#writer.applyBackpressure();
  }

  #dispatch(message: IncomingMessage): void {
    if (message.kind === 'request') this.#onRequest(message.id, message.method, message.params, message.session);
    else if (message.kind === 'notification') this.#onNotification(message.method, message.params);
    else this.#onResponse(message.id, message.message);
  }

  #onInvalid(what: string, requestId?: RequestId): void {
    if (requestId !== undefined && this.#ready) {
      this.#respondError(requestId, this.#session, new RpcError(ERROR_CODES.invalidRequest, `invalid request (expected a JSON-RPC 2.0 object with \`"jsonrpc": "2.0"\`): ${what}`));
      return;
    }
    this.#discardOrWarn(what);
  }

  #discardOrWarn(what: string): void {
    if (!this.#ready) {
      this.#discarded++;
      this.#log.debug(`discarded before the handshake with ${this.options.label}: ${what}`);
    } else {
      this.#warn(`${this.options.label}: ${what}`);
    }
  }

  #onRequest(id: unknown, method: string, params: unknown, addressedTo: unknown): void {
    if (method === METHODS.hello) return this.#onHelloRequest(id, params);
    if (!this.#ready) return this.#discardOrWarn(`request \`${truncateForLog(method, 40)}\``);
    const session = this.#session;
    if (!isRequestId(id)) {
      this.#warn(`${this.options.label}: request \`${truncateForLog(method, 40)}\` has an invalid id ${describeValue(id, 40)}; ignored`);
      return;
    }
    if (this.#boundSessions() && addressedTo !== this.#hello.nonce) {
      const why = addressedTo === undefined ? 'names no session' : 'was written for an earlier session of this agent';
      this.#respondError(id, session, new PeerRestartedError(`request ${describeValue(id)} (\`${truncateForLog(method, 40)}\`) ${why}; it was not run`));
      return;
    }
    if (this.#incoming.has(id)) {
      this.#respondError(id, session, new RpcError(ERROR_CODES.invalidRequest, `duplicate request id ${describeValue(id)}: a request with this id is still running`));
      return;
    }
    if (this.#incoming.takeEarlyCancel(id)) {
      this.#respondError(id, session, new RpcError(ERROR_CODES.requestCanceled, `request ${describeValue(id)} was canceled before it started`));
      return;
    }
    const handler = this.#requestHandlers.get(method);
    if (!handler) {
      const known = [...this.#requestHandlers.keys()].filter((m) => m !== METHODS.hello).sort().join(', ');
      this.#respondError(id, session, new RpcError(ERROR_CODES.methodNotFound, `unknown method \`${truncateForLog(method, 60)}\`; this agent supports: ${known}`));
      return;
    }
    if (this.#incoming.size >= this.options.maxIncomingRequests) {
      this.#respondError(id, session, new RpcError(ERROR_CODES.busy, `too many requests in progress (${this.#incoming.size}, \`maxIncomingRequests\`); retry later`));
      return;
    }
    const running = this.#incoming.begin(id);
    this.#writer.adjustHeld(REQUEST_OVERHEAD_BYTES);
    const inSession = <T>(send: () => Promise<T>): Promise<T | void> => (session === this.#session ? send() : Promise.resolve());
    const context: RequestContext = {
      id,
      get signal() {
        return running.signal;
      },
      peerInfo: this.#peerInfo!,
      notify: (m, p) => inSession(() => this.notify(m, p)),
      sendBulk: (m, stream, data) => inSession(() => this.sendBulk({ method: m, id, stream, data })),
    };
    void (async () => {
      try {
        const result = await handler(params, context);
        if (session === this.#session) void this.#writer.write({ jsonrpc: '2.0', id, result: result ?? null });
      } catch (error) {
        if (!(error instanceof RpcError)) this.#log.debug(`handler of \`${method}\` failed: ${errorMessage(error)}`);
        this.#respondError(id, session, error);
      } finally {
        this.#incoming.end(id, running);
        this.#writer.adjustHeld(-REQUEST_OVERHEAD_BYTES);
      }
    })();
  }

  #respondError(id: RequestId, session: number, error: unknown): void {
    if (session !== this.#session) return;
    void this.#writer.write({ jsonrpc: '2.0', id, error: toRpcError(error).toJSON() });
  }

  #onNotification(method: string, params: unknown): void {
    if (!this.#ready) return this.#discardOrWarn(`notification \`${truncateForLog(method, 40)}\``);
    if (method === METHODS.cancel) {
      const id = isRecord(params) ? params.id : undefined;
      if (!isRequestId(id)) return this.#warn(`${this.options.label}: \`cancel\` without a valid \`id\`; ignored`);
      this.#incoming.cancel(id, new CanceledError(`request ${describeValue(id)} was canceled by ${this.options.label}`));
      return;
    }
    try {
      // A notification about one of our requests goes to that request's listener (requests.ts).
      if (isRecord(params) && this.#outgoing.deliver(method, params) !== 'none') return;
      const handler = this.#notificationHandlers.get(method);
      if (!handler) return this.#warn(`${this.options.label}: unknown notification \`${truncateForLog(method, 60)}\`; ignored`);
      handler(params);
    } catch (error) {
      this.#warn(`${this.options.label}: notification \`${method}\` failed: ${errorMessage(error)}`);
    }
  }

  #onResponse(id: unknown, message: Record<string, unknown>): void {
    if (this.#hello.isAnswerToHello(id)) return this.#onHelloResponse(message);
    if (!this.#ready) return this.#discardOrWarn(`response to request ${describeValue(id, 40)}`);
    if (this.#outgoing.settle(id, message)) return;
    const late = typeof id === 'string' && id.startsWith('hello-');
    if (!late) this.#warn(`${this.options.label}: response for unknown request id ${describeValue(id, 40)} (answered after its timeout?); ignored`);
  }

  // ---- the handshake ---------------------------------------------------------------------------

  #onHelloRequest(id: unknown, params: unknown): void {
    if (!isRequestId(id)) return this.#warn(`${this.options.label}: hello with an invalid id; ignored`);
    if (this.#hello.isOwnEcho(params)) return;
    let info: AgentInfo;
    try {
      info = validatePeerHello(params, this.localInfo);
    } catch (error) {
      void this.#writer.write({ jsonrpc: '2.0', id, error: (error as RpcError).toJSON() });
      this.#handshakeFailed(error as RpcError);
      return;
    }
    void this.#writer.write({ jsonrpc: '2.0', id, result: this.localInfo });
    this.#adoptPeer(info);
  }

  #onHelloResponse(message: Record<string, unknown>): void {
    if ('error' in message) return this.#handshakeFailed(RpcError.fromWire(message.error));
    if (this.#hello.isOwnEcho(message.result)) return;
    try {
      this.#adoptPeer(validatePeerHello(message.result, this.localInfo));
    } catch (error) {
      this.#handshakeFailed(error as RpcError);
    }
  }

  #handshakeFailed(error: RpcError): void {
    const failure = new HandshakeError(`handshake with ${this.options.label} failed: ${error.message}`, { cause: error });
    this.#log.error(failure.message);
    this.#handshakeError = failure;
    this.emit('handshake-error', failure);
  }

  #adoptPeer(info: AgentInfo): void {
    const previous = this.#peerInfo;
    const restarted = previous !== undefined && previous.nonce !== info.nonce;
    if (restarted) {
      this.#endSession(new PeerRestartedError(`${this.options.label}: the ${previous.side} agent restarted (new session); the request was abandoned`));
    }
    const wasReady = this.#ready;
    this.#handshakeError = undefined;
    this.#peerInfo = info;
    this.#ready = true;
    const frames = info.capabilities.includes(FRAMES_CAPABILITY) && this.options.localInfo.capabilities.includes(FRAMES_CAPABILITY);
    this.#reader.setFrames(frames);
    this.#writer.setFrames(frames);
    this.#hello.stop();
    if (this.#discarded > 0) {
      this.#log.info(`discarded ${this.#discarded} stale line(s) from ${this.options.label} before the handshake`);
      this.#discarded = 0;
    }
    for (const send of this.#whenReady.splice(0)) send();
    if (!wasReady || restarted) this.emit('ready', info, restarted);
  }

  // The far end left (the host daemon stopped or restarted): what was sent is lost with it, and a request
  // made now must wait for the next handshake (within its deadline) instead of going into the void.
  #farEndAbsent(): void {
    if (!this.#ready || this.#closed) return;
    this.#log.info(`${this.options.label}: the other side went away; requests wait for it to come back`);
    this.#endSession(new ChannelClosedError(`${this.options.label}: the other side went away; the request was abandoned`));
    this.#ready = false;
  }

  /** Both hellos offered session binding: requests name the receiver's session. */
  #boundSessions(): boolean {
    return this.#peerInfo?.capabilities.includes(SESSION_CAPABILITY) === true;
  }

  // End the current session: abandon requests in both directions (sent ones only: unsent ones wait).
  #endSession(error: Error): void {
    this.#session++;
    this.#keepalive.stop();
    // The next session decides frames afresh; bytes queued for this one are never sent.
    this.#reader.setFrames(false);
    this.#writer.setFrames(false);
    this.#writer.dropQueued();
    this.#outgoing.failSent(error);
    this.#incoming.abortAll(error);
  }

  #finish(error: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeError = error;
    this.#writer.stop();
    this.#keepalive.stop();
    this.#whenReady.length = 0;
    this.#outgoing.failAll(error);
    this.#hello.stop();
    this.#incoming.abortAll(error);
    this.#ready = false;
    this.emit('close', error);
  }
}
