// Option parsing shared by both CLIs (commander), validated at the edge with messages that name the fix.
import { InvalidArgumentError } from 'commander';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { LogLevel } from './logger.js';

/** The user's command directory, as Negotiator's. */
export const DEFAULT_COMMAND_DIRECTORY = '/usr/lib/negotiator/commands';

// `--timeout SECONDS` (decimals allowed, 0 = none) to milliseconds.
export function parseTimeoutSeconds(value: string): number {
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < 0) {
    throw new InvalidArgumentError(`expected a number of seconds >= 0 (0 = no timeout), got \`${value}\``);
  }
  return Math.round(seconds * 1000);
}

// A positive (or, with allowZero, non-negative) integer option.
export function parseCount(allowZero: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || (!allowZero && n === 0)) {
      throw new InvalidArgumentError(`expected a ${allowZero ? 'non-negative' : 'positive'} integer, got \`${value}\``);
    }
    return n;
  };
}

// Sizes like `64M`, `1G`, `4096`, `0` (none).
export function parseBytes(value: string): number {
  const match = /^(\d+)([KMG]i?B?)?$/i.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`expected a size like 4096, 64M or 1G (0 = no limit), got \`${value}\``);
  const unit = (match[2] ?? '').charAt(0).toUpperCase();
  const factor = unit === 'K' ? 1024 : unit === 'M' ? 1024 ** 2 : unit === 'G' ? 1024 ** 3 : 1;
  return Number(match[1]) * factor;
}

// A repeatable absolute directory option.
export function collectDirectory(value: string, previous: string[] | undefined): string[] {
  if (!path.isAbsolute(value)) throw new InvalidArgumentError(`expected an absolute directory path, got \`${value}\``);
  return [...(previous ?? []), path.normalize(value)];
}

// -v / -q counts to a log level (default info).
export function logLevelOf(verbose: number, quiet: number): LogLevel {
  const levels: LogLevel[] = ['error', 'warn', 'info', 'debug'];
  return levels[Math.max(0, Math.min(levels.length - 1, 2 + verbose - quiet))]!;
}

// Counter for repeatable flags (-v -v).
export function increment(_value: string, previous: number): number {
  return previous + 1;
}

// A group name or number to a gid: `getent group` (sees LDAP/sssd groups), else /etc/group.
export function parseGroup(value: string): number {
  if (/^\d+$/.test(value)) return Number(value);
  let line: string | undefined;
  try {
    line = execFileSync('getent', ['group', value], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0];
  } catch {
    line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[0] === value);
  }
  const gid = line?.split(':')[2];
  if (!gid) throw new InvalidArgumentError(`no group \`${value}\` (create it with groupadd, or give a number)`);
  return Number(gid);
}
