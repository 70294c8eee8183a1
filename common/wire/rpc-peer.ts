// A symmetric JSON-RPC 2.0 peer over a ByteChannel: handshake, requests both ways matched by id,
// notifications, cancellation, deadlines, and bounded handling of whatever a bad peer sends.
import { EventEmitter } from 'node:events';
import { parseBulkLine } from './bulk-line.js';
import type { ByteChannel } from './byte-channel.js';
import {
  CanceledError,
  ChannelClosedError,
  ConfigError,
  HandshakeError,
  PeerRestartedError,
  RpcError,
  TimeoutError,
  errorMessage,
  truncateForLog,
} from './errors.js';
import { createNonce, validatePeerHello } from './handshake.js';
import { LineReader, type LineProblem } from './line-reader.js';
import { silentLogger, type Logger } from '../base/logger.js';
import {
  DEFAULT_MAX_LINE_BYTES,
  DEFAULT_TIMEOUT_MS,
  ERROR_CODES,
  METHODS,
  isRecord,
  isRequestId,
  type AgentInfo,
  type RequestId,
} from './protocol.js';
import { createWarningLimiter } from '../base/warning-limiter.js';

// An AbortController made only when a handler asks for its signal: most requests (ping, list) never do,
// and creating one was ~6 us of the serving side's ~50 us of CPU per ping.
class LazyAbort {
  #controller: AbortController | undefined;
  #aborted = false;
  #reason: unknown;

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/** What a request handler gets besides the params. */
export interface RequestContext {
  id: RequestId;
  /** Aborted when the caller cancels, the peer restarts or the channel closes. */
  signal: AbortSignal;
  peerInfo: AgentInfo;
  /** Send a notification in this request's session; dropped once the session is over. */
  notify(method: string, params: unknown): Promise<void>;
  /** Send one already-serialised message line (ending in `\n`) in this request's session (the bulk output path). */
  sendLine(line: Buffer): Promise<void>;
}
export type RequestHandler = (params: unknown, context: RequestContext) => unknown;
export type NotificationHandler = (params: unknown) => void;

export interface PeerOptions {
  /** This agent's info; the peer fills in a fresh nonce per connection. */
  localInfo: Omit<AgentInfo, 'nonce'>;
  /** Name of the channel / peer for log lines and errors. */
  label?: string;
  logger?: Logger;
  /** Longest line accepted from the peer, bytes. Default 1 MiB. */
  maxLineBytes?: number;
  /** Default deadline of `request()`, ms; 0 = none. Default 10 000. */
  requestTimeoutMs?: number;
  /** First hello retry interval, ms, doubling up to `maxHelloRetryMs`. Defaults 1 000 / 30 000. */
  helloRetryMs?: number;
  maxHelloRetryMs?: number;
  /** Requests from the peer being handled at once; more are answered `busy`. Default 4 096. */
  maxIncomingRequests?: number;
  /** Unsent reply bytes above which we stop reading the peer until it reads. Default 16 MiB. */
  maxWriteBacklogBytes?: number;
}
type ResolvedPeerOptions = Readonly<Required<Omit<PeerOptions, 'localInfo'>> & Pick<PeerOptions, 'localInfo'>>;

export interface RequestOptions {
  /** Deadline in ms (0 = none); default the peer's `requestTimeoutMs`. Covers waiting for the handshake. */
  timeoutMs?: number;
  signal?: AbortSignal;
}
export interface StartedRequest {
  id: number;
  response: Promise<unknown>;
}

const KNOWN_CODES = new Set<number>(Object.values(ERROR_CODES));

interface Pending {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  sent: boolean;
  cleanup: () => void;
}

function resolveOptions(options: PeerOptions): ResolvedPeerOptions {
  const resolved = {
    localInfo: options.localInfo,
    label: options.label ?? 'peer',
    logger: options.logger ?? silentLogger,
    maxLineBytes: options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    helloRetryMs: options.helloRetryMs ?? 1000,
    maxHelloRetryMs: options.maxHelloRetryMs ?? 30_000,
    maxIncomingRequests: options.maxIncomingRequests ?? 4096,
    maxWriteBacklogBytes: options.maxWriteBacklogBytes ?? 16 * 1024 * 1024,
  };
  for (const key of ['maxLineBytes', 'requestTimeoutMs', 'helloRetryMs', 'maxHelloRetryMs', 'maxIncomingRequests', 'maxWriteBacklogBytes'] as const) {
    const value = resolved[key];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new ConfigError(`Expected the \`${key}\` option to be a non-negative integer, got \`${value}\``);
    }
  }
  return Object.freeze(resolved);
}

/**
 * One end of a connection. Call `start()` once; it sends a bare newline (ending any half line an earlier
 * client left) and a hello. Until the peer's hello reply (or its own hello) arrives, every other line is
 * stale data from an earlier connection and is discarded. Events: `ready` (peerInfo, restarted: boolean),
 * `close` (error?), `handshake-error` (HandshakeError).
 */
export class RpcPeer extends EventEmitter {
  readonly options: ResolvedPeerOptions;
  readonly #channel: ByteChannel;
  readonly #log: Logger;
  readonly #warn: (message: string) => void;
  readonly #requestHandlers = new Map<string, RequestHandler>();
  readonly #notificationHandlers = new Map<string, NotificationHandler>();
  readonly #pending = new Map<number, Pending>();
  readonly #incoming = new Map<RequestId, LazyAbort>();
  readonly #earlyCancels = new Set<RequestId>();
  readonly #reader: LineReader;
  #nonce = createNonce();
  #helloId = '';
  #helloCount = 0;
  #helloTimer: NodeJS.Timeout | undefined;
  #helloDelay = 0;
  #peerInfo: AgentInfo | undefined;
  #ready = false;
  #session = 0;
  #nextId = 1;
  #discarded = 0;
  #closed = false;
  #closeError: Error | undefined;
  #closing: Promise<void> | undefined;
  #paused = false;
  #started = false;
  readonly #early: Buffer[] = [];
  #handshakeError: HandshakeError | undefined;
  #echoWarned = false;
  /** Sends queued until the handshake completes (each checks its request is still pending). */
  readonly #whenReady: Array<() => void> = [];

  constructor(channel: ByteChannel, options: PeerOptions) {
    super();
    this.options = resolveOptions(options);
    this.#channel = channel;
    this.#log = this.options.logger;
    this.#warn = createWarningLimiter(this.#log, 20, 60_000);
    this.#reader = new LineReader({
      maxLineBytes: this.options.maxLineBytes,
      onLine: (line) => this.#onLine(line),
      onProblem: (problem) => this.#onLineProblem(problem),
    });
    channel.onData((chunk) => {
      if (!this.#started) {
        // Held until start(): the handlers are not registered yet. All of it is pre-handshake data.
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
      this.#applyBackpressure();
    });
    channel.onClose((error) => {
      this.#reader.end();
      this.#finish(new ChannelClosedError(`channel ${this.options.label} closed${error ? `: ${error.message}` : ''}`));
    });
    channel.onReset?.(() => this.resync('the other side reconnected'));
    this.handle(METHODS.ping, () => ({ time: Date.now() }));
    this.handle(METHODS.info, () => this.localInfo);
  }

  /** This side's info, with the current connection's nonce. */
  get localInfo(): AgentInfo {
    return { ...this.options.localInfo, nonce: this.#nonce };
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
  /** Register the handler of a notification method. */
  onNotification(method: string, handler: NotificationHandler): void {
    this.#notificationHandlers.set(method, handler);
  }

  /** Begin the handshake. Call once, after the handlers are registered. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    for (const chunk of this.#early.splice(0)) this.#reader.push(chunk);
    this.#sendHello();
  }

  /** Forget the current session (the channel's far end changed) and handshake again. */
  resync(reason: string): void {
    if (this.#closed) return;
    this.#log.info(`resynchronising with ${this.options.label}: ${reason}`);
    this.#endSession(new ChannelClosedError(`${this.options.label}: ${reason}; the request was abandoned`));
    this.#ready = false;
    this.#nonce = createNonce();
    this.#helloDelay = 0;
    // A backlog from the old session says nothing about the new one: read again.
    if (this.#paused) {
      this.#paused = false;
      this.#channel.resume();
    }
    this.#sendHello();
  }

  // Resolve with the peer's info once the handshake is done; reject on timeout, close or handshake error.
  waitForReady(timeoutMs: number = this.options.requestTimeoutMs, signal?: AbortSignal): Promise<AgentInfo> {
    if (this.#ready && this.#peerInfo) return Promise.resolve(this.#peerInfo);
    if (this.#closed) return Promise.reject(this.#closeError ?? new ChannelClosedError(`channel ${this.options.label} is closed`));
    if (this.#handshakeError) return Promise.reject(this.#handshakeError);
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
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
          ? setTimeout(() => {
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
    const id = this.#nextId++;
    const response = new Promise<unknown>((resolve, reject) => {
      if (this.#closed) {
        reject(this.#closeError ?? new ChannelClosedError(`channel ${this.options.label} is closed`));
        return;
      }
      const signal = options.signal;
      const onAbort = (): void => this.#failPending(id, new CanceledError(`request \`${method}\` to ${this.options.label} was canceled`));
      const timer =
        timeoutMs > 0
          ? setTimeout(() => {
              const pending = this.#pending.get(id);
              const hint = pending?.sent ? 'the peer did not answer in time' : 'the handshake with the peer did not complete (is its agent running?)';
              this.#failPending(id, new TimeoutError(`request \`${method}\` to ${this.options.label} timed out after ${timeoutMs} ms: ${hint}`, timeoutMs));
            }, timeoutMs)
          : undefined;
      const cleanup = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      this.#pending.set(id, { method, resolve, reject, sent: false, cleanup });
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      if (this.#ready) this.#sendPending(id, params);
      else this.#whenReady.push(() => this.#sendPending(id, params));
    });
    return { id, response };
  }

  // Send a request and await its result (rejects with RpcError, TimeoutError, CanceledError, ChannelClosedError...).
  request(method: string, params: unknown, options?: RequestOptions): Promise<unknown> {
    return this.startRequest(method, params, options).response;
  }

  // Send a notification now (no answer). Resolves when the bytes are written or can be (backpressure).
  notify(method: string, params: unknown): Promise<void> {
    return this.#send({ jsonrpc: '2.0', method, params });
  }

  /** Send a notification already serialised as one line ending in `\n` (the bulk path: common/wire/bulk-line.ts). */
  notifyLine(line: Buffer): Promise<void> {
    return this.#sendLine(line);
  }

  /** Close the channel; pending requests are rejected, running handlers aborted. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#finish(new ChannelClosedError(`channel ${this.options.label} was closed locally`));
      await this.#channel.close();
    })();
    return this.#closing;
  }

  // ---- sending ---------------------------------------------------------------------------------

  #send(message: object): Promise<void> {
    if (this.#closed) return Promise.resolve();
    let line: string;
    try {
      line = JSON.stringify(message) + '\n';
    } catch (error) {
      this.#log.error(`cannot serialise a message for ${this.options.label}: ${errorMessage(error)}`);
      return Promise.resolve();
    }
    return this.#sendLine(Buffer.from(line, 'utf8'));
  }

  #sendLine(line: Buffer): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return this.#channel.write(line).then(
      () => this.#applyBackpressure(),
      (error: unknown) => {
        this.#finish(new ChannelClosedError(`writing to ${this.options.label} failed: ${errorMessage(error)}`));
        void this.#channel.close();
      },
    );
  }

  #sendPending(id: number, params: unknown): void {
    const pending = this.#pending.get(id);
    if (!pending || pending.sent || this.#closed) return;
    pending.sent = true;
    void this.#send({ jsonrpc: '2.0', id, method: pending.method, params });
  }

  #sendHello(): void {
    clearTimeout(this.#helloTimer);
    if (this.#closed || this.#ready) return;
    // Skip a retry while the previous hello is still unsent (the far end is not reading): no pile-up.
    if (this.#helloCount === 0 || this.#channel.pendingWriteBytes === 0) {
      this.#helloId = `hello-${this.#nonce.slice(0, 8)}-${++this.#helloCount}`;
      // The leading newline ends any half line an earlier client left in the channel.
      void this.#channel.write(Buffer.from('\n')).catch(() => {});
      void this.#send({ jsonrpc: '2.0', id: this.#helloId, method: METHODS.hello, params: this.localInfo });
    }
    this.#helloDelay = Math.min(this.#helloDelay === 0 ? this.options.helloRetryMs : this.#helloDelay * 2, this.options.maxHelloRetryMs);
    if (this.#helloDelay > 0) {
      this.#helloTimer = setTimeout(() => this.#sendHello(), this.#helloDelay);
      this.#helloTimer.unref();
    }
  }

  #respond(id: RequestId, session: number, result: unknown): void {
    if (session !== this.#session) return;
    void this.#send({ jsonrpc: '2.0', id, result: result ?? null });
  }

  #respondError(id: RequestId, session: number, error: unknown): void {
    if (session !== this.#session) return;
    // Our own local errors keep their code (a relay passes a timeout or a closed channel on as such).
    const localCode = error instanceof Error && 'code' in error && typeof error.code === 'number' ? error.code : undefined;
    const rpcError =
      error instanceof RpcError
        ? error
        : localCode !== undefined && KNOWN_CODES.has(localCode)
          ? new RpcError(localCode, (error as Error).message)
          : new RpcError(ERROR_CODES.internalError, `internal error: ${errorMessage(error)}`);
    void this.#send({ jsonrpc: '2.0', id, error: rpcError.toJSON() });
  }

  #applyBackpressure(): void {
    const backlog = this.#channel.pendingWriteBytes;
    if (!this.#paused && backlog > this.options.maxWriteBacklogBytes) {
      this.#paused = true;
      this.#channel.pause();
      this.#log.warn(`${this.options.label} is not reading our messages (${backlog} bytes unsent): pausing reading from it`);
    } else if (this.#paused && backlog <= this.options.maxWriteBacklogBytes / 2) {
      this.#paused = false;
      this.#channel.resume();
    }
  }

  // ---- receiving -------------------------------------------------------------------------------

  #onLineProblem(problem: LineProblem): void {
    const what =
      problem.kind === 'too-long'
        ? `a line of ${problem.bytes} bytes, over the ${this.options.maxLineBytes}-byte limit (\`maxLineBytes\`), was skipped`
        : problem.kind === 'invalid-utf8'
          ? `a line of ${problem.bytes} bytes that is not valid UTF-8 was skipped`
          : `the channel ended in the middle of a line (${problem.bytes} bytes), which was dropped`;
    if (!this.#ready) {
      this.#discarded++;
      this.#log.debug(`before the handshake with ${this.options.label}, ${what}: ${problem.preview}`);
      return;
    }
    this.#warn(`${this.options.label}: ${what}: ${problem.preview}`);
  }

  #onLine(line: string): void {
    const bulk = parseBulkLine(line);
    if (bulk) {
      this.#onNotification(bulk.method, bulk.params);
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch (error) {
      this.#discardOrWarn(`malformed JSON (${errorMessage(error)}): ${truncateForLog(line, 80)}`);
      return;
    }
    if (!isRecord(message) || message.jsonrpc !== '2.0') {
      const id = isRecord(message) && isRequestId(message.id) && typeof message.method === 'string' ? message.id : undefined;
      if (id !== undefined && this.#ready) {
        this.#respondError(id, this.#session, new RpcError(ERROR_CODES.invalidRequest, 'invalid request: expected a JSON-RPC 2.0 object with `"jsonrpc": "2.0"`'));
        return;
      }
      this.#discardOrWarn(`not a JSON-RPC 2.0 message: ${truncateForLog(line, 80)}`);
      return;
    }
    if (typeof message.method === 'string') {
      if ('id' in message) this.#onRequest(message.id, message.method, message.params);
      else this.#onNotification(message.method, message.params);
    } else if ('id' in message && ('result' in message || 'error' in message)) {
      this.#onResponse(message);
    } else {
      this.#discardOrWarn(`message is neither a request, a notification nor a response: ${truncateForLog(line, 80)}`);
    }
  }

  #discardOrWarn(what: string): void {
    if (!this.#ready) {
      this.#discarded++;
      this.#log.debug(`discarded before the handshake with ${this.options.label}: ${what}`);
    } else {
      this.#warn(`${this.options.label}: ${what}`);
    }
  }

  #onRequest(id: unknown, method: string, params: unknown): void {
    if (method === METHODS.hello) {
      this.#onHelloRequest(id, params);
      return;
    }
    if (!this.#ready) {
      this.#discardOrWarn(`request \`${truncateForLog(method, 40)}\``);
      return;
    }
    const session = this.#session;
    if (!isRequestId(id)) {
      this.#warn(`${this.options.label}: request \`${truncateForLog(method, 40)}\` has an invalid id ${truncateForLog(JSON.stringify(id), 40)}; ignored`);
      return;
    }
    if (this.#incoming.has(id)) {
      this.#respondError(id, session, new RpcError(ERROR_CODES.invalidRequest, `duplicate request id ${JSON.stringify(id)}: a request with this id is still running`));
      return;
    }
    if (this.#earlyCancels.delete(id)) {
      this.#respondError(id, session, new RpcError(ERROR_CODES.requestCanceled, `request ${JSON.stringify(id)} was canceled before it started`));
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
    const controller = new LazyAbort();
    this.#incoming.set(id, controller);
    const peerInfo = this.#peerInfo!;
    const context: RequestContext = {
      id,
      get signal() {
        return controller.signal;
      },
      peerInfo,
      notify: (m, p) => (session === this.#session ? this.notify(m, p) : Promise.resolve()),
      sendLine: (line) => (session === this.#session ? this.#sendLine(line) : Promise.resolve()),
    };
    void (async () => {
      try {
        const result = await handler(params, context);
        this.#respond(id, session, result);
      } catch (error) {
        if (!(error instanceof RpcError)) this.#log.debug(`handler of \`${method}\` failed: ${errorMessage(error)}`);
        this.#respondError(id, session, error);
      } finally {
        if (this.#incoming.get(id) === controller) this.#incoming.delete(id);
      }
    })();
  }

  #onNotification(method: string, params: unknown): void {
    if (!this.#ready) {
      this.#discardOrWarn(`notification \`${truncateForLog(method, 40)}\``);
      return;
    }
    if (method === METHODS.cancel) {
      const id = isRecord(params) ? params.id : undefined;
      if (!isRequestId(id)) {
        this.#warn(`${this.options.label}: \`cancel\` without a valid \`id\`; ignored`);
        return;
      }
      const controller = this.#incoming.get(id);
      if (controller) controller.abort(new CanceledError(`request ${JSON.stringify(id)} was canceled by ${this.options.label}`));
      else if (this.#earlyCancels.size < 1024) this.#earlyCancels.add(id);
      return;
    }
    const handler = this.#notificationHandlers.get(method);
    if (!handler) {
      this.#warn(`${this.options.label}: unknown notification \`${truncateForLog(method, 60)}\`; ignored`);
      return;
    }
    try {
      handler(params);
    } catch (error) {
      this.#warn(`${this.options.label}: notification \`${method}\` failed: ${errorMessage(error)}`);
    }
  }

  #onResponse(message: Record<string, unknown>): void {
    const id = message.id;
    if (id === this.#helloId && this.#helloId !== '') {
      this.#onHelloResponse(message);
      return;
    }
    if (!this.#ready) {
      this.#discardOrWarn(`response to request ${truncateForLog(JSON.stringify(id), 40)}`);
      return;
    }
    const pending = typeof id === 'number' ? this.#pending.get(id) : undefined;
    if (!pending) {
      const late = typeof id === 'string' && id.startsWith('hello-');
      if (!late) this.#warn(`${this.options.label}: response for unknown request id ${truncateForLog(JSON.stringify(id), 40)} (answered after its timeout?); ignored`);
      return;
    }
    this.#pending.delete(id as number);
    pending.cleanup();
    if ('error' in message) pending.reject(RpcError.fromWire(message.error));
    else pending.resolve(message.result);
  }

  #onHelloRequest(id: unknown, params: unknown): void {
    if (!isRequestId(id)) {
      this.#warn(`${this.options.label}: hello with an invalid id; ignored`);
      return;
    }
    if (this.#isOwnEcho(params)) return;
    let info: AgentInfo;
    try {
      info = validatePeerHello(params, this.localInfo);
    } catch (error) {
      void this.#send({ jsonrpc: '2.0', id, error: (error as RpcError).toJSON() });
      this.#handshakeFailed(error as RpcError);
      return;
    }
    void this.#send({ jsonrpc: '2.0', id, result: this.localInfo });
    this.#adoptPeer(info);
  }

  #onHelloResponse(message: Record<string, unknown>): void {
    if ('error' in message) {
      this.#handshakeFailed(RpcError.fromWire(message.error));
      return;
    }
    if (this.#isOwnEcho(message.result)) return;
    try {
      this.#adoptPeer(validatePeerHello(message.result, this.localInfo));
    } catch (error) {
      this.#handshakeFailed(error as RpcError);
    }
  }

  // A channel that echoes (a serial line not yet in raw mode) hands us our own hello: never adopt ourselves.
  #isOwnEcho(info: unknown): boolean {
    if (!isRecord(info) || info.nonce !== this.#nonce) return false;
    if (!this.#echoWarned) {
      this.#echoWarned = true;
      this.#log.warn(`${this.options.label} sent back our own hello: the channel echoes what we write (a serial line not in raw mode?); ignoring it`);
    }
    return true;
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
    clearTimeout(this.#helloTimer);
    if (this.#discarded > 0) {
      this.#log.info(`discarded ${this.#discarded} stale line(s) from ${this.options.label} before the handshake`);
      this.#discarded = 0;
    }
    for (const send of this.#whenReady.splice(0)) send();
    if (!wasReady || restarted) this.emit('ready', info, restarted);
  }

  // End the current session: abandon requests in both directions (sent ones only: unsent ones wait).
  #endSession(error: Error): void {
    this.#session++;
    for (const [id, pending] of this.#pending) {
      if (pending.sent) this.#failPending(id, error);
    }
    for (const controller of this.#incoming.values()) controller.abort(error);
    this.#incoming.clear();
    this.#earlyCancels.clear();
  }

  #failPending(id: number, error: Error): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    pending.cleanup();
    // Tell the serving side to stop work nobody will read (ignored if it already finished).
    if (pending.sent && !this.#closed && !(error instanceof PeerRestartedError) && !(error instanceof ChannelClosedError)) {
      void this.notify(METHODS.cancel, { id });
    }
    pending.reject(error);
  }

  #finish(error: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeError = error;
    this.#whenReady.length = 0;
    for (const id of [...this.#pending.keys()]) this.#failPending(id, error);
    clearTimeout(this.#helloTimer);
    for (const controller of this.#incoming.values()) controller.abort(error);
    this.#incoming.clear();
    this.#ready = false;
    this.emit('close', error);
  }
}
