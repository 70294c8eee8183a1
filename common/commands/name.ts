// Command names: what a peer may ask for and which files in a command directory count as commands.
// A name is a plain file name, so a check here is what keeps `execute` inside the command directories.
import { RpcError } from '../wire/errors.js';
import { ERROR_CODES } from '../wire/protocol.js';

/** Longest accepted command name, in characters. */
export const MAX_COMMAND_NAME_LENGTH = 128;

/** Endings of files left behind by editors and package managers; such files are never commands. */
export const LEFTOVER_SUFFIXES = [
  '~',
  '.swp',
  '.swo',
  '.bak',
  '.orig',
  '.rej',
  '.tmp',
  '.dpkg-old',
  '.dpkg-new',
  '.dpkg-dist',
  '.rpmnew',
  '.rpmsave',
] as const;

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const RULE = 'Command names are file names in the command directories (letters, digits, `.`, `_`, `+`, `-`).';

// Say what is wrong with a command name, or undefined when it is acceptable.
function findNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'names may not be empty';
  if (name.length > MAX_COMMAND_NAME_LENGTH) {
    return `names are at most ${MAX_COMMAND_NAME_LENGTH} characters, this one has ${name.length}`;
  }
  if (name.includes('/') || name.includes('..')) return 'names may not contain `/` or `..`';
  if (name.includes('\0')) return 'names may not contain NUL bytes';
  if (name.startsWith('.') || name.startsWith('-')) return 'names may not start with `.` or `-`';
  const suffix = LEFTOVER_SUFFIXES.find((ending) => name.endsWith(ending));
  if (suffix !== undefined) {
    return `names ending in \`${suffix}\` are editor or package-manager leftovers, never commands`;
  }
  if (name.length > 1 && name.startsWith('#') && name.endsWith('#')) {
    return 'names of the form `#name#` are editor autosave files, never commands';
  }
  if (!NAME_PATTERN.test(name)) return 'names may only contain letters, digits, `.`, `_`, `+` and `-`';
  return undefined;
}

// Show an untrusted name inside backticks: control characters escaped, long names cut.
function displayName(name: string): string {
  const printable = name.replace(
    /[\u0000-\u001f\u007f-\u009f`]/g,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return printable.length <= 80 ? printable : `${printable.slice(0, 80)}... (${printable.length - 80} more characters)`;
}

// Return `name` when it is a valid command name; otherwise throw an RpcError (invalidCommandName) saying why.
export function validateCommandName(name: unknown): string {
  if (typeof name !== 'string') {
    const shown = name === null ? 'null' : typeof name;
    throw new RpcError(
      ERROR_CODES.invalidCommandName,
      `Invalid command name: expected a string, got ${shown}. ${RULE}`,
      { name: null },
    );
  }
  const problem = findNameProblem(name);
  if (problem !== undefined) {
    throw new RpcError(
      ERROR_CODES.invalidCommandName,
      `Invalid command name \`${displayName(name)}\`: ${problem}. ${RULE}`,
      { name: name.slice(0, 256) },
    );
  }
  return name;
}

// True when a file with this name in a command directory is a command candidate (same rule, no throw).
export function isCommandFileName(name: string): boolean {
  return findNameProblem(name) === undefined;
}
