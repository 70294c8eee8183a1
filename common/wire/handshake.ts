// The hello exchange. Each side writes a bare newline (ending any half line an earlier client left) and
// a hello carrying its agent info and a fresh nonce, retried with backoff until answered; the peer's hello
// (request or answer) is validated here before anything else of the connection is believed.
import type { Logger } from '../base/logger.js';
import { randomHex } from '../base/random.js';
import { RpcError } from './errors.js';
import { describeValue } from './json-limits.js';
import { FRAME_SYNC_BYTES } from './frame-codec.js';
import type { MessageWriter } from './message-writer.js';
import { ERROR_CODES, METHODS, SIDES, isRecord, type AgentInfo, type OsInfo, type Side } from './protocol.js';

// A fresh random nonce: 128 bits, hex.
export function createNonce(): string {
  return randomHex(16);
}

const MAX_TEXT = 256;

function readText(record: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const value = record[key];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value.length > MAX_TEXT) {
    throw new RpcError(ERROR_CODES.invalidParams, `hello: \`${key}\` must be a string of at most ${MAX_TEXT} characters, got ${describeValue(value)}`);
  }
  return value;
}

// Check an untrusted hello (params or result) and return it as AgentInfo; throws RpcError invalidParams
// for a malformed one and versionMismatch for another protocol version (naming both versions). The
// protocol number is a major version: it changes only for an incompatible break, so releases that differ
// only in features (capabilities) always talk; each side uses a feature only when the other offers it.
export function validatePeerHello(value: unknown, local: AgentInfo): AgentInfo {
  if (!isRecord(value)) {
    throw new RpcError(ERROR_CODES.invalidParams, 'hello: expected an object with the agent info');
  }
  const protocol = value.protocol;
  const name = readText(value, 'name', true)!;
  const version = readText(value, 'version', true)!;
  if (typeof protocol !== 'number' || !Number.isSafeInteger(protocol)) {
    throw new RpcError(ERROR_CODES.invalidParams, `hello: \`protocol\` must be an integer, got ${describeValue(protocol)}`);
  }
  if (protocol !== local.protocol) {
    throw new RpcError(
      ERROR_CODES.versionMismatch,
      `protocol version mismatch: this ${local.side} agent (${local.name} ${local.version}) speaks protocol ${local.protocol}, ` +
        `the peer (${name} ${version}) speaks protocol ${protocol}, and protocols change only for incompatible breaks; ` +
        `upgrade the ${protocol < local.protocol ? 'peer' : `${local.side} agent`} to a release that speaks protocol ${Math.max(protocol, local.protocol)}`,
      { local: local.protocol, peer: protocol },
    );
  }
  const side = value.side;
  if (typeof side !== 'string' || !(SIDES as readonly string[]).includes(side)) {
    throw new RpcError(ERROR_CODES.invalidParams, `hello: \`side\` must be "host" or "guest", got ${describeValue(side)}`);
  }
  const nonce = readText(value, 'nonce', true)!;
  if (nonce.length < 8) throw new RpcError(ERROR_CODES.invalidParams, 'hello: `nonce` must be at least 8 characters');
  const osValue = isRecord(value.os) ? value.os : {};
  const os: OsInfo = {
    type: readText(osValue, 'type', false) ?? '',
    version: readText(osValue, 'version', false) ?? '',
    hostname: readText(osValue, 'hostname', false) ?? '',
  };
  for (const key of ['distributor', 'release', 'codename'] as const) {
    const text = readText(osValue, key, false);
    if (text !== undefined) os[key] = text;
  }
  const capabilities = Array.isArray(value.capabilities)
    ? value.capabilities.filter((c): c is string => typeof c === 'string' && c.length <= 64).slice(0, 64)
    : [];
  const pid = typeof value.pid === 'number' && Number.isSafeInteger(value.pid) ? value.pid : 0;
  return { protocol, name, version, side: side as Side, os, capabilities, nonce, pid };
}

const SYNC = Buffer.alloc(FRAME_SYNC_BYTES, 0x0a);
const NEWLINE = Buffer.from('\n');

export interface HelloSenderOptions {
  label: string;
  logger: Logger;
  /** First retry interval, ms, doubling up to `maxRetryMs`; 0 = no retries. */
  retryMs: number;
  maxRetryMs: number;
  /** This side's info with the current nonce. */
  localInfo(): AgentInfo;
  /** True once no hello is needed (handshake done, or the peer closed): retries stop. */
  isSettled(): boolean;
  /** The connection is new and carries nothing of an earlier agent: a session opens with one newline. */
  freshConnection: boolean;
}

/**
 * Our side of the hello: the nonce of the current session, the hello sent and retried, and the checks
 * that tell an answer to our hello (and our own hello echoed back) from anything else.
 */
export class HelloSender {
  readonly #writer: MessageWriter;
  readonly #options: HelloSenderOptions;
  #nonce = createNonce();
  #helloId = '';
  #count = 0;
  #delay = 0;
  #timer: NodeJS.Timeout | undefined;
  #echoWarned = false;

  constructor(writer: MessageWriter, options: HelloSenderOptions) {
    this.#writer = writer;
    this.#options = options;
  }

  get nonce(): string {
    return this.#nonce;
  }

  /** A new session: a fresh nonce, and retries start again from the first interval. */
  renew(): void {
    this.#nonce = createNonce();
    this.#delay = 0;
  }

  // Send a hello now and schedule the next retry (until `stop()`).
  send(): void {
    clearTimeout(this.#timer);
    if (this.#options.isSettled()) return;
    // Skip a retry while the previous hello is still unsent (the far end is not reading): no pile-up.
    if (this.#count === 0 || this.#writer.pendingBytes === 0) {
      // The leading newline ends any half line an earlier client left in the channel; a session's first
      // hello comes after enough of them to end a half frame too (frame-codec.ts).
      void this.#writer.writeLine(this.#delay === 0 && !this.#options.freshConnection ? SYNC : NEWLINE);
      this.#helloId = `hello-${this.#nonce.slice(0, 8)}-${++this.#count}`;
      void this.#writer.write({ jsonrpc: '2.0', id: this.#helloId, method: METHODS.hello, params: this.#options.localInfo() });
    }
    this.#delay = Math.min(this.#delay === 0 ? this.#options.retryMs : this.#delay * 2, this.#options.maxRetryMs);
    if (this.#delay > 0) {
      this.#timer = setTimeout(() => this.send(), this.#delay);
      this.#timer.unref();
    }
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  /** Is this the id of one of our hellos of the current nonce (a retry may have overtaken its answer)? */
  isAnswerToHello(id: unknown): boolean {
    return this.#helloId !== '' && typeof id === 'string' && id.startsWith(`hello-${this.#nonce.slice(0, 8)}-`);
  }

  // A channel that echoes (a serial line not yet in raw mode) hands us our own hello: never adopt ourselves.
  isOwnEcho(info: unknown): boolean {
    if (!isRecord(info) || info.nonce !== this.#nonce) return false;
    if (!this.#echoWarned) {
      this.#echoWarned = true;
      this.#options.logger.warn(`${this.#options.label} sent back our own hello: the channel echoes what we write (a serial line not in raw mode?); ignoring it`);
    }
    return true;
  }
}
