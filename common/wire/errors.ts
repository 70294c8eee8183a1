// Errors: one wire error type (RpcError, serialized by toJSON) and a few local Error subclasses with
// stable names. Messages say what failed, the offending value, and the fix.
import { ERROR_CODES, isRecord, type ErrorObject } from './protocol.js';

/** An error that crosses the wire as `{code, message, data?}`. */
export class RpcError extends Error {
  override name = 'RpcError';
  readonly code: number;
  readonly data: unknown;

  constructor(code: number, message: string, data?: unknown, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.data = data;
  }

  toJSON(): ErrorObject {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }

  // Rebuild an error received from the peer; a malformed one becomes an internal error that says so.
  static fromWire(value: unknown): RpcError {
    if (isRecord(value) && typeof value.code === 'number' && typeof value.message === 'string') {
      return new RpcError(value.code, value.message, value.data);
    }
    return new RpcError(ERROR_CODES.internalError, `peer sent a malformed error object: ${truncateForLog(JSON.stringify(value))}`);
  }
}

/** The request's deadline passed before an answer came. */
export class TimeoutError extends Error {
  override name = 'TimeoutError';
  readonly code = ERROR_CODES.requestTimeout;
  readonly timeoutMs: number;
  constructor(message: string, timeoutMs: number, options?: ErrorOptions) {
    super(message, options);
    this.timeoutMs = timeoutMs;
  }
}

/** The caller aborted the request (AbortSignal, Ctrl-C). */
export class CanceledError extends Error {
  override name = 'CanceledError';
  readonly code = ERROR_CODES.requestCanceled;
}

/** The channel closed (or a write failed) while the request was pending. */
export class ChannelClosedError extends Error {
  override name = 'ChannelClosedError';
  readonly code = ERROR_CODES.channelClosed;
}

/** The peer started a new session (it restarted): requests of the old session are abandoned. */
export class PeerRestartedError extends Error {
  override name = 'PeerRestartedError';
  readonly code = ERROR_CODES.peerRestarted;
}

/** The handshake failed: incompatible protocol versions or a malformed hello. */
export class HandshakeError extends Error {
  override name = 'HandshakeError';
  readonly code = ERROR_CODES.versionMismatch;
}

/** A local option or argument is invalid; thrown before any I/O. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

// Cut a string for a log line or an error message, saying how much was left out.
export function truncateForLog(text: string, max = 120): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max)}... (${text.length - max} more characters)`;
}

// The message of anything thrown, for logs and wire errors.
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const KNOWN_CODES = new Set<number>(Object.values(ERROR_CODES));

// The wire error for anything a handler threw: an RpcError as it is, our own local errors with their
// code (a relay passes a timeout or a closed channel on as such), anything else as an internal error.
export function toRpcError(error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  const code = error instanceof Error && 'code' in error && typeof error.code === 'number' ? error.code : undefined;
  if (code !== undefined && KNOWN_CODES.has(code)) return new RpcError(code, (error as Error).message);
  return new RpcError(ERROR_CODES.internalError, `internal error: ${errorMessage(error)}`);
}
