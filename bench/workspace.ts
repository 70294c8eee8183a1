// The benchmark's scratch directory: the server's socket and a command directory whose commands are
// symlinks to system binaries (no shell in between, so the RPC figures and the bare ones spawn the same file).
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Commands the benchmarks call, and the binaries they link to. */
export const BENCH_COMMANDS = { true: '/bin/true', head: '/usr/bin/head' } as const;

export interface Workspace {
  dir: string;
  socketPath: string;
  commandsDir: string;
  /** Delete the directory (idempotent). */
  remove(): void;
}

// Create a fresh workspace under the OS temp directory.
export function createWorkspace(prefix = 'negotiator-bench-'): Workspace {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const commandsDir = path.join(dir, 'commands');
  mkdirSync(commandsDir);
  for (const [name, target] of Object.entries(BENCH_COMMANDS)) symlinkSync(target, path.join(commandsDir, name));
  return {
    dir,
    socketPath: path.join(dir, 'agent.sock'),
    commandsDir,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
