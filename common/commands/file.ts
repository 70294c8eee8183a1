// One candidate file in a command directory: is it runnable right now, and what does its first comment say.
// Executability is always read from the file system, never from a watcher's cache: a chmod may go unreported.
import { constants, type Stats } from 'node:fs';
import { access, open, stat } from 'node:fs/promises';
import path from 'node:path';

/** Bytes read from the start of a file to find its description. */
export const DESCRIPTION_READ_BYTES = 4096;

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** A candidate file that is a regular file (after following links) with an execute bit the process may use. */
export interface ExecutableFile {
  path: string;
  stats: Stats;
}

/** Why a candidate file is not a command, for debug logs. */
export interface SkippedFile {
  path: string;
  reason: string;
}

// Stat `directory/name` (following links) and tell whether this process may execute it.
export async function inspectCommandFile(directory: string, name: string): Promise<ExecutableFile | SkippedFile> {
  const filePath = path.join(directory, name);
  let stats: Stats;
  try {
    stats = await stat(filePath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    return { path: filePath, reason: code === 'ENOENT' ? 'missing or a dangling link' : `cannot stat (${code})` };
  }
  if (!stats.isFile()) return { path: filePath, reason: 'not a regular file' };
  if ((stats.mode & 0o111) === 0) return { path: filePath, reason: 'no execute bit (chmod +x to enable it)' };
  try {
    await access(filePath, constants.X_OK);
  } catch {
    return { path: filePath, reason: 'not executable by this user' };
  }
  return { path: filePath, stats };
}

// Narrow an inspection result to a runnable file.
export function isExecutableFile(file: ExecutableFile | SkippedFile): file is ExecutableFile {
  return 'stats' in file;
}

// Pull the description out of a file's first bytes: the first `# text` comment, skipping a `#!` line.
export function parseCommandDescription(head: Buffer, complete: boolean): string {
  // Binaries (ELF, anything with NUL bytes) have no description, even when bytes happen to start with `#`.
  if (head.includes(0) || head.subarray(0, 4).equals(ELF_MAGIC)) return '';
  const lines = head.toString('utf8').split('\n');
  // When the file is longer than what was read, the last line may be cut in the middle: ignore it.
  if (!complete) lines.pop();
  let index = 0;
  if (lines[0]?.startsWith('#!')) index = 1;
  for (; index < lines.length; index++) {
    const line = (lines[index] ?? '').trim();
    if (line === '') continue;
    if (!line.startsWith('#')) return '';
    const text = line
      .replace(/^#+/, '')
      .replace(/[\u0000-\u001f\u007f]/g, ' ')
      .trim();
    if (text !== '') return text;
  }
  return '';
}

/** How execve(2) would start a file, from its first bytes. */
export type ExecFormat = { kind: 'elf' } | { kind: 'script'; interpreter: string } | { kind: 'other' };

// The kernel reads this much of a file to find a `#!` line (BINPRM_BUF_SIZE).
const EXEC_HEAD_BYTES = 256;

// Tell an ELF binary and a `#!` script (with its interpreter) from a file execve would refuse (ENOEXEC).
export function parseExecFormat(head: Buffer): ExecFormat {
  if (head.subarray(0, 4).equals(ELF_MAGIC)) return { kind: 'elf' };
  if (head[0] !== 0x23 || head[1] !== 0x21) return { kind: 'other' };
  const interpreter = /^#![ \t]*(\S+)/.exec(head.subarray(0, EXEC_HEAD_BYTES).toString('latin1').split('\n', 1)[0] ?? '')?.[1];
  return interpreter !== undefined && path.isAbsolute(interpreter) ? { kind: 'script', interpreter } : { kind: 'other' };
}

/** What a command file's first bytes say. */
export interface CommandFileHead {
  description: string;
  format: ExecFormat;
}

// Read the first bytes of a file once: its description and how execve would start it.
export async function readCommandFileHead(filePath: string): Promise<CommandFileHead> {
  // O_NONBLOCK: a file swapped for a FIFO since its stat must not block this open (and a threadpool thread) for ever.
  const handle = await open(filePath, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const buffer = Buffer.alloc(DESCRIPTION_READ_BYTES);
    let filled = 0;
    // A read may return fewer bytes than asked for (pipes, network file systems): loop until full or EOF.
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    const head = buffer.subarray(0, filled);
    return { description: parseCommandDescription(head, filled < buffer.length), format: parseExecFormat(head) };
  } finally {
    await handle.close();
  }
}

// Whether execve would start a file of this format (one already known executable) with no shell's help:
// an ELF binary, or a `#!` script whose interpreter is executable, checked now (it may come or go).
export async function canExecDirectly(format: ExecFormat): Promise<boolean> {
  if (format.kind === 'elf') return true;
  if (format.kind !== 'script') return false;
  try {
    await access(format.interpreter, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Remembers each file's head (description, exec format) per path while its identity, size and mtime stay the same. */
export interface CommandFileCache {
  /** The head of an executable file, read at most once per version of the file. Never rejects. */
  get(file: ExecutableFile): Promise<CommandFileHead>;
  /** Forget every path not in `paths` (files that are gone or no longer commands). */
  retain(paths: Iterable<string>): void;
}

const UNREADABLE: CommandFileHead = Object.freeze({ description: '', format: Object.freeze({ kind: 'other' as const }) });

// Create a file head cache keyed by path and validated by inode, size and mtime.
export function createCommandFileCache(onReadError?: (filePath: string, error: unknown) => void): CommandFileCache {
  const entries = new Map<string, { key: string; head: Promise<CommandFileHead> }>();
  return {
    get(file) {
      const key = `${file.stats.dev}:${file.stats.ino}:${file.stats.size}:${file.stats.mtimeMs}`;
      const cached = entries.get(file.path);
      if (cached?.key === key) return cached.head;
      const head: Promise<CommandFileHead> = readCommandFileHead(file.path).catch((error: unknown) => {
        onReadError?.(file.path, error);
        // Do not remember a failure (the file may become readable), unless a newer read replaced it already.
        if (entries.get(file.path)?.head === head) entries.delete(file.path);
        return UNREADABLE;
      });
      entries.set(file.path, { key, head });
      return head;
    },
    retain(paths) {
      const keep = new Set(paths);
      for (const filePath of entries.keys()) if (!keep.has(filePath)) entries.delete(filePath);
    },
  };
}
