// What an RpcPeer is configured with and what its handlers see: options resolved once into a frozen,
// complete object (chokidar's habit), the request context, and the bulk message shape.
import { ConfigError } from './errors.js';
import type { MemoryBudget } from './memory-budget.js';
import type { RequestNotificationHandlers } from './requests.js';
import { silentLogger, type Logger } from '../base/logger.js';
import { DEFAULT_MAX_LINE_BYTES, DEFAULT_PEER_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, type AgentInfo, type OutputStream, type RequestId } from './protocol.js';

/** A notification that carries bytes (`execute.output`, `execute.input`): sent without JSON-escaping them. */
export interface BulkMessage {
  method: string;
  id: RequestId;
  stream?: OutputStream;
  data: Buffer;
}

/** What a request handler gets besides the params. */
export interface RequestContext {
  id: RequestId;
  /** Aborted when the caller cancels, the peer restarts or the channel closes. */
  signal: AbortSignal;
  peerInfo: AgentInfo;
  /** Send a notification in this request's session; dropped once the session is over. */
  notify(method: string, params: unknown): Promise<void>;
  /** Send a bulk notification for this request, in its session; dropped once the session is over. */
  sendBulk(method: string, stream: OutputStream | undefined, data: Buffer): Promise<void>;
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
  /**
   * Longest wait for the handshake when a request or `waitForReady` has no deadline of its own (0):
   * "no timeout" bounds the command, never the wait for an agent that is not there. Default 10 000.
   */
  handshakeTimeoutMs?: number;
  /** First hello retry interval, ms, doubling up to `maxHelloRetryMs`. Defaults 1 000 / 30 000. */
  helloRetryMs?: number;
  maxHelloRetryMs?: number;
  /** Requests from the peer being handled at once; more are answered `busy`. Default 4 096. */
  maxIncomingRequests?: number;
  /**
   * Silence of the peer, while requests we sent wait, after which it is declared lost and those requests
   * fail (keepalive.ts: pings go out after a third of it). 0 = never. Default 15 000.
   */
  peerTimeoutMs?: number;
  /**
   * Memory held for this peer (unsent writes with their overhead, its requests in flight, relay buffers:
   * memory-budget.ts) above which we stop reading it until half has drained. Default 8 MiB.
   */
  maxWriteBacklogBytes?: number;
  /** The budget of everything the process holds for its peers; default the process's own. */
  memoryBudget?: MemoryBudget;
  /**
   * The connection is a new one of its own (a control socket's client), so no earlier agent can have left a
   * half frame in it: sessions open with one newline instead of FRAME_SYNC_BYTES (frame-codec.ts). Leave
   * it false on a guest channel, which outlives the agents at its ends. Default false.
   */
  freshConnection?: boolean;
}
export type ResolvedPeerOptions = Readonly<Required<Omit<PeerOptions, 'localInfo' | 'memoryBudget'>> & Pick<PeerOptions, 'localInfo' | 'memoryBudget'>>;

export interface RequestOptions {
  /** Deadline in ms (0 = none); default the peer's `requestTimeoutMs`. Covers waiting for the handshake. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /**
   * Listeners of the notifications the peer sends about this request (their `params.id` is its id, as
   * `execute.output`), by method; called until the request settles. Others of those methods are dropped.
   */
  notifications?: RequestNotificationHandlers;
}

// Fill in the defaults and check every number before any I/O.
export function resolvePeerOptions(options: PeerOptions): ResolvedPeerOptions {
  const resolved = {
    localInfo: options.localInfo,
    label: options.label ?? 'peer',
    logger: options.logger ?? silentLogger,
    maxLineBytes: options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    helloRetryMs: options.helloRetryMs ?? 1000,
    maxHelloRetryMs: options.maxHelloRetryMs ?? 30_000,
    maxIncomingRequests: options.maxIncomingRequests ?? 4096,
    maxWriteBacklogBytes: options.maxWriteBacklogBytes ?? 8 * 1024 * 1024,
    ...(options.memoryBudget ? { memoryBudget: options.memoryBudget } : {}),
    peerTimeoutMs: options.peerTimeoutMs ?? DEFAULT_PEER_TIMEOUT_MS,
    freshConnection: options.freshConnection ?? false,
  };
  for (const key of ['maxLineBytes', 'requestTimeoutMs', 'handshakeTimeoutMs', 'helloRetryMs', 'maxHelloRetryMs', 'maxIncomingRequests', 'maxWriteBacklogBytes', 'peerTimeoutMs'] as const) {
    const value = resolved[key];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new ConfigError(`Expected the \`${key}\` option to be a non-negative integer, got \`${value}\``);
    }
  }
  return Object.freeze(resolved);
}
