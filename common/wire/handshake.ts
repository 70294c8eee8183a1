// The hello exchange: validating the peer's AgentInfo and checking protocol compatibility.
import { randomBytes } from 'node:crypto';
import { RpcError } from './errors.js';
import { ERROR_CODES, SIDES, isRecord, type AgentInfo, type OsInfo, type Side } from './protocol.js';

// A fresh random nonce: 128 bits, hex.
export function createNonce(): string {
  return randomBytes(16).toString('hex');
}

const MAX_TEXT = 256;

function readText(record: Record<string, unknown>, key: string, required: boolean): string | undefined {
  const value = record[key];
  if (value === undefined && !required) return undefined;
  if (typeof value !== 'string' || value.length > MAX_TEXT) {
    throw new RpcError(ERROR_CODES.invalidParams, `hello: \`${key}\` must be a string of at most ${MAX_TEXT} characters, got ${JSON.stringify(value)?.slice(0, 60)}`);
  }
  return value;
}

// Check an untrusted hello (params or result) and return it as AgentInfo; throws RpcError invalidParams
// for a malformed one and versionMismatch for another protocol version (naming both versions).
export function validatePeerHello(value: unknown, local: AgentInfo): AgentInfo {
  if (!isRecord(value)) {
    throw new RpcError(ERROR_CODES.invalidParams, 'hello: expected an object with the agent info');
  }
  const protocol = value.protocol;
  const name = readText(value, 'name', true)!;
  const version = readText(value, 'version', true)!;
  if (typeof protocol !== 'number' || !Number.isSafeInteger(protocol)) {
    throw new RpcError(ERROR_CODES.invalidParams, `hello: \`protocol\` must be an integer, got ${JSON.stringify(protocol)}`);
  }
  if (protocol !== local.protocol) {
    throw new RpcError(
      ERROR_CODES.versionMismatch,
      `protocol version mismatch: this ${local.side} agent (${local.name} ${local.version}) speaks protocol ${local.protocol}, ` +
        `the peer (${name} ${version}) speaks protocol ${protocol}; install the same negotiator release on host and guest`,
      { local: local.protocol, peer: protocol },
    );
  }
  const side = value.side;
  if (typeof side !== 'string' || !(SIDES as readonly string[]).includes(side)) {
    throw new RpcError(ERROR_CODES.invalidParams, `hello: \`side\` must be "host" or "guest", got ${JSON.stringify(side)}`);
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
