// What an agent says about itself (hello, info): OS facts, package version, capabilities; and the one
// cleanup applied to whatever the peer says about itself before it reaches a log line or an environment.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomHex } from '../base/random.js';
import { ConfigError } from './errors.js';
import { CAPABILITIES, PROTOCOL_VERSION, type AgentInfo, type OsInfo, type Side } from './protocol.js';

/** Where os-release(5) says to look, in order; the first file that exists is the only one read. */
export const OS_RELEASE_PATHS = ['/etc/os-release', '/usr/lib/os-release'] as const;

/** Options of {@link readOsInfo}. */
export interface ReadOsInfoOptions {
  /** Read this file instead of /etc/os-release (falling back to /usr/lib/os-release). */
  osReleasePath?: string;
}

/** Input of {@link createAgentInfo}. */
export interface AgentInfoInput {
  side: Side;
  os: OsInfo;
  /** Fresh for every connection; default: 16 random bytes in hex. */
  nonce?: string;
}

// Read one shell-quoted os-release value: '...' is literal, "..." honours \" \\ \$ \` escapes, a bare
// backslash escapes the next character, and unquoted whitespace ends it (only a `# comment` may follow).
function parseShellValue(raw: string): string | undefined {
  let value = '';
  let index = 0;
  while (index < raw.length) {
    const char = raw.charAt(index);
    if (char === "'") {
      const end = raw.indexOf("'", index + 1);
      if (end < 0) return undefined;
      value += raw.slice(index + 1, end);
      index = end + 1;
    } else if (char === '"') {
      index++;
      let closed = false;
      while (index < raw.length) {
        const inner = raw.charAt(index);
        const next = raw.charAt(index + 1);
        if (inner === '\\' && next !== '' && '"\\$`'.includes(next)) {
          value += next;
          index += 2;
        } else if (inner === '"') {
          closed = true;
          index++;
          break;
        } else {
          value += inner;
          index++;
        }
      }
      if (!closed) return undefined;
    } else if (char === '\\') {
      value += raw.charAt(index + 1);
      index += 2;
    } else if (/\s/.test(char)) {
      const rest = raw.slice(index).trimStart();
      return rest === '' || rest.startsWith('#') ? value : undefined;
    } else {
      value += char;
      index++;
    }
  }
  return value;
}

// Parse os-release(5) text into its variables; malformed lines are skipped, a later assignment wins.
export function parseOsRelease(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const trimmed = line.trimStart();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(trimmed);
    if (!match) continue;
    const value = parseShellValue(match[2] ?? '');
    if (value !== undefined) fields[match[1] ?? ''] = value;
  }
  return fields;
}

async function readOsReleaseFields(paths: readonly string[]): Promise<Record<string, string>> {
  for (const candidate of paths) {
    try {
      return parseOsRelease(await readFile(candidate, 'utf8'));
    } catch {
      // Missing or unreadable: OS facts are best effort, an agent must start without them.
    }
  }
  return {};
}

// Collect the OS facts an agent reports: kernel type, release and host name, plus os-release fields.
export async function readOsInfo(options: ReadOsInfoOptions = {}): Promise<OsInfo> {
  const fields = await readOsReleaseFields(options.osReleasePath === undefined ? OS_RELEASE_PATHS : [options.osReleasePath]);
  const info: OsInfo = { type: os.type(), version: os.release(), hostname: os.hostname() };
  if (fields.ID) info.distributor = fields.ID;
  if (fields.VERSION_ID) info.release = fields.VERSION_ID;
  if (fields.VERSION_CODENAME) info.codename = fields.VERSION_CODENAME;
  return info;
}

let packageVersion: string | undefined;

// Set by the bundler (esbuild `define`) in the single executables, which carry no package.json.
declare const NEGOTIATOR_BUNDLED_VERSION: string | undefined;

// Return this package's version, from the nearest package.json above this module (read once).
export function readPackageVersion(): string {
  if (packageVersion !== undefined) return packageVersion;
  if (typeof NEGOTIATOR_BUNDLED_VERSION === 'string') return (packageVersion = NEGOTIATOR_BUNDLED_VERSION);
  // dist/common/wire/agent-info.js and common/wire/agent-info.ts both find the package root's package.json first.
  let directory = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(directory, 'package.json');
    let text: string | undefined;
    try {
      text = readFileSync(candidate, 'utf8');
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      const parsed: unknown = JSON.parse(text);
      const version = typeof parsed === 'object' && parsed !== null ? (parsed as { version?: unknown }).version : undefined;
      if (typeof version !== 'string' || version === '') {
        throw new Error(`\`${candidate}\` has no \`version\` string: reinstall the package.`);
      }
      packageVersion = version;
      return version;
    }
    const parent = path.dirname(directory);
    if (parent === directory) {
      throw new Error(`No package.json found above \`${fileURLToPath(import.meta.url)}\`: reinstall the package.`);
    }
    directory = parent;
  }
}

// Describe this agent for `hello` and `info`.
export function createAgentInfo(input: AgentInfoInput): AgentInfo {
  return {
    protocol: PROTOCOL_VERSION,
    name: 'negotiator',
    version: readPackageVersion(),
    side: input.side,
    os: input.os,
    capabilities: [...CAPABILITIES],
    nonce: input.nonce ?? randomHex(16),
    pid: process.pid,
  };
}

// Control characters, line and paragraph separators, bidi overrides, BOM, and unpaired surrogates.
const LINE_BREAKS = /[\t\n\v\f\r\u0085\u2028\u2029]+/g;
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

// Make an untrusted peer string safe for a log line or an environment variable: no control characters
// (line breaks become spaces), trimmed, at most `max` characters (code points). Non-strings become ''.
export function sanitizePeerText(value: unknown, max = 256): string {
  if (!Number.isSafeInteger(max) || max < 0) {
    throw new ConfigError(`Expected \`max\` to be a non-negative integer, got \`${String(max)}\`.`);
  }
  const text = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' ? String(value) : '';
  const clean = text.replace(LINE_BREAKS, ' ').replace(UNSAFE, '').trim();
  const codePoints = Array.from(clean);
  return codePoints.length <= max ? clean : codePoints.slice(0, max).join('').trimEnd();
}

// This agent's info without a nonce (the peer adds a fresh one per connection): what daemons and CLIs announce.
export async function readLocalAgentInfo(side: AgentInfo['side']): Promise<Omit<AgentInfo, 'nonce'>> {
  const { nonce: _nonce, ...info } = createAgentInfo({ side, os: await readOsInfo(), nonce: '' });
  return info;
}
