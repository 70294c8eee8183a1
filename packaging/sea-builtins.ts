// Inside a single executable: the built-in commands travel as assets (packaging/sea.ts) but must be files
// to be run, so the first daemon that needs them writes them to a private folder, once per user and
// build: BASE/negotiator-builtins-UID-DIGEST, mode 0700, where BASE is $XDG_RUNTIME_DIR, else for root
// /run/negotiator (beside the control sockets; the Debian packages' purge removes it), else the
// temporary folder.
// Hazard: the temporary folder is shared. A folder of that name that is not ours, not a folder, or open
// to others is never used (another user could have planted commands in it): we fall back to a fresh
// mkdtemp folder, removed at exit. Inside our 0700 folder nobody else can write, and every file is
// compared with its asset at each start and rewritten (write + rename) when it differs.
import { getAsset } from 'node:sea';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The asset that lists the others: written by packaging/sea.ts. */
export const BUILTINS_MANIFEST_ASSET = 'builtin-commands.json';
export const BUILTIN_ASSET_PREFIX = 'builtin-commands/';

export interface BuiltinsManifest {
  /** Hex digest of the names and contents: names the folder, so two builds never share one. */
  digest: string;
  names: string[];
}

const ROOT_BASE = '/run/negotiator';

// A real folder (not a link) owned by us that nobody else can write to; `private`: nor read.
function isFolderOfOurs(dir: string, privateToUs = false): boolean {
  try {
    const stat = lstatSync(dir);
    return stat.isDirectory() && stat.uid === process.getuid?.() && (stat.mode & (privateToUs ? 0o077 : 0o022)) === 0;
  } catch {
    return false;
  }
}

function runtimeBase(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && path.isAbsolute(runtime)) {
    try {
      if (statSync(runtime).isDirectory()) return runtime;
    } catch {
      // unset in effect: fall through to the temporary folder
    }
  }
  if (process.getuid?.() === 0) {
    try {
      mkdirSync(ROOT_BASE, { recursive: true, mode: 0o755 });
      if (isFolderOfOurs(ROOT_BASE)) return ROOT_BASE;
    } catch {
      // a read-only /run: fall through to the temporary folder
    }
  }
  return os.tmpdir();
}

// Write `bytes` to `file` (mode 0755) unless it already holds them.
function ensureFile(file: string, bytes: Buffer): void {
  try {
    const stat = lstatSync(file);
    if (stat.isFile() && (stat.mode & 0o777) === 0o755 && readFileSync(file).equals(bytes)) return;
  } catch {
    // missing: written below
  }
  const partial = `${file}.partial-${process.pid}`;
  writeFileSync(partial, bytes, { mode: 0o755 });
  renameSync(partial, file);
}

/** Write the embedded built-in commands to a private folder (see the header) and return its path. */
export function extractBuiltinCommands(): string {
  const manifest = JSON.parse(Buffer.from(getAsset(BUILTINS_MANIFEST_ASSET)).toString('utf8')) as BuiltinsManifest;
  const base = runtimeBase();
  let dir = path.join(base, `negotiator-builtins-${process.getuid?.() ?? 'user'}-${manifest.digest}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  if (!isFolderOfOurs(dir, true)) {
    dir = mkdtempSync(path.join(base, 'negotiator-builtins-'));
    const temporary = dir;
    process.once('exit', () => rmSync(temporary, { recursive: true, force: true }));
  }
  for (const name of manifest.names) {
    if (name.includes('/') || name.startsWith('.')) throw new Error(`Embedded built-in command name \`${name}\` is not a plain file name: rebuild the executable.`);
    ensureFile(path.join(dir, name), Buffer.from(getAsset(`${BUILTIN_ASSET_PREFIX}${name}`)));
  }
  return dir;
}
