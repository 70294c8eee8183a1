// The negotiator wire protocol: JSON-RPC 2.0 messages, one per line (NDJSON), over any byte stream.
// Every method, event and error code lives here; docs/protocol.md describes them for humans.

/** Bumped on any incompatible change of a message's shape or meaning. */
export const PROTOCOL_VERSION = 1;

/** Methods (requests) and events (notifications). Names are stable wire strings. */
export const METHODS = {
  /** Request, either side, first message of every connection. */
  hello: 'hello',
  ping: 'ping',
  info: 'info',
  listCommands: 'commands.list',
  execute: 'execute',
  /** Notification from the caller: abort its request `id`. */
  cancel: 'cancel',
  /** Notification from the serving side: a chunk of a running command's stdout or stderr. */
  executeOutput: 'execute.output',
  /** Notification from the caller: output bytes it has consumed (flow-control credit). */
  executeOutputAck: 'execute.outputAck',
  /** Notification from the caller: a chunk of stdin, or its end. */
  executeInput: 'execute.input',
  /** Notification from the serving side: stdin bytes it has handed to the command. */
  executeInputAck: 'execute.inputAck',
  /** Request on a daemon's control socket: the daemon's channels and peers. */
  status: 'status',
  /** Request on the host daemon's control socket: the guests it knows. */
  listGuests: 'guests.list',
  /** Event: the agent has started (params: AgentInfo). */
  agentStarted: 'agent.started',
  /** Event: the agent is stopping (params: StoppingParams). */
  agentStopping: 'agent.stopping',
  /** Request on a daemon's control socket: answer once the other agent answered on every channel (params: {guest?}). */
  agentWait: 'agent.wait',
  /** Request on the host daemon's control socket: stream `events.event` notifications until canceled. */
  eventsFollow: 'events.follow',
  /** Notification for an `events.follow` request (params: {id, event: HostEvent}). */
  eventsEvent: 'events.event',
} as const;
export type Method = (typeof METHODS)[keyof typeof METHODS];

/** Error codes carried in `error.code`. -32700..-32600 are JSON-RPC's own. */
export const ERROR_CODES = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  lineTooLong: -32000,
  requestTimeout: -32001,
  requestCanceled: -32002,
  channelClosed: -32003,
  writeFailed: -32004,
  peerRestarted: -32005,
  versionMismatch: -32010,
  commandNotFound: -32020,
  invalidCommandName: -32021,
  busy: -32022,
  spawnFailed: -32023,
  flowControl: -32024,
  unknownGuest: -32030,
} as const;
export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/** The virtio-serial channel names (`<target type='virtio' name='...'/>` in the domain XML). */
export const CHANNEL_NAMES = {
  hostToGuest: 'negotiator-host-to-guest.0',
  guestToHost: 'negotiator-guest-to-host.0',
} as const;

export const SIDES = ['host', 'guest'] as const;
export type Side = (typeof SIDES)[number];

export type RequestId = number | string;

export interface RequestMessage {
  jsonrpc: '2.0';
  id: RequestId;
  method: string;
  params?: unknown;
}
export interface NotificationMessage {
  jsonrpc: '2.0';
  method: string;
  params?: unknown;
}
export interface ErrorObject {
  code: number;
  message: string;
  data?: unknown;
}
export interface SuccessResponse {
  jsonrpc: '2.0';
  id: RequestId;
  result: unknown;
}
export interface ErrorResponse {
  jsonrpc: '2.0';
  id: RequestId | null;
  error: ErrorObject;
}
export type ResponseMessage = SuccessResponse | ErrorResponse;
export type Message = RequestMessage | NotificationMessage | ResponseMessage;

/** Facts about the operating system an agent runs on. Untrusted when they come from the peer. */
export interface OsInfo {
  /** `os.type()`: `Linux`, ... */
  type: string;
  /** Kernel release (`os.release()`). */
  version: string;
  hostname: string;
  /** From /etc/os-release where present. */
  distributor?: string;
  release?: string;
  codename?: string;
}

/** What an agent says about itself in `hello` and `info`. */
export interface AgentInfo {
  protocol: number;
  name: string;
  version: string;
  side: Side;
  os: OsInfo;
  capabilities: string[];
  /** Random, fresh for every connection: tells a restarted peer from a known one. */
  nonce: string;
  pid: number;
}

export type HelloParams = AgentInfo;
export type HelloResult = AgentInfo;

export interface PingResult {
  /** The responder's clock, milliseconds since the epoch. */
  time: number;
}

export interface CommandInfo {
  name: string;
  /** The script's first comment line, or '' when it has none. */
  description: string;
}
export interface ListCommandsResult {
  commands: CommandInfo[];
}

export interface ExecuteParams {
  command: string;
  args: string[];
  /** True when the caller will send `execute.input` chunks (ending with `eof`); false: stdin is empty. */
  stdin: boolean;
  /** The caller's deadline in ms; 0 = none. The serving side caps it with its own maximum. */
  timeoutMs: number;
  /** Output bytes the serving side may send before it waits for `execute.outputAck`. */
  window: number;
  /** Only on a host daemon's control socket: the guest to run the command on. */
  guest?: string;
}
export type OutputStream = 'stdout' | 'stderr';
export interface ExecuteOutputParams {
  id: RequestId;
  stream: OutputStream;
  /** Base64 of the raw bytes. */
  data: string;
}
export interface ExecuteAckParams {
  id: RequestId;
  bytes: number;
}
export interface ExecuteInputParams {
  id: RequestId;
  /** Base64 of the raw bytes; absent with `eof`. */
  data?: string;
  eof?: boolean;
}
export interface ExecuteResult {
  /** The command's exit code; null when it was ended by a signal. */
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  isCanceled: boolean;
  durationMs: number;
  stdoutBytes: number;
  stderrBytes: number;
  /** True when an output cap was hit: the bytes past it were read and discarded, not sent. */
  outputTruncated: boolean;
}
export interface CancelParams {
  id: RequestId;
}
export interface StoppingParams {
  reason: string;
}

/** Capabilities this implementation offers; a peer may check them before calling. */
export const CAPABILITIES = ['ping', 'info', 'commands.list', 'execute', 'execute.stdin', 'cancel'] as const;

/**
 * Capability an RpcPeer adds to its hello: it names the receiver's session (hello nonce) in a top-level
 * `session` member of each request it sends, and runs only requests naming its own current session.
 * Used on a connection only when both hellos carry it, so older peers still work.
 */
export const SESSION_CAPABILITY = 'session';

/** Execute flow-control window default: output bytes in flight per request. */
export const DEFAULT_WINDOW_BYTES = 4 * 1024 * 1024;
/** Largest raw chunk carried in one `execute.output` / `execute.input` line. */
export const MAX_CHUNK_BYTES = 256 * 1024;
/** Default request deadline, as Negotiator's. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Default silence of a peer with requests waiting before they fail (keepalive.ts). */
export const DEFAULT_PEER_TIMEOUT_MS = 15_000;
/** Default largest line accepted; a line longer than this is skipped and reported. */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

// ---- shape checks for untrusted input -------------------------------------------------------

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// A request id we accept: a safe integer or a short string.
export function isRequestId(value: unknown): value is RequestId {
  return (typeof value === 'number' && Number.isSafeInteger(value)) || (typeof value === 'string' && value.length <= 128);
}
