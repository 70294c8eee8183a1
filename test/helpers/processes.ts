// Waiting on processes and conditions in tests, with a deadline so that a failure names what it waited for.
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger } from '../../common/base/logger.js';
import { LAUNCHER_NAME } from '../../common/commands/launcher-pool.js';
import { FIXTURE_COMMANDS } from './socket-agent.js';

/** Whether a process with this pid exists (signal 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Poll `check` every 10 ms until it holds; throws naming `what` after `timeoutMs`. */
export async function waitUntil(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}

/** Pids of the pre-forked command launchers (common/commands/launcher-pool.ts) whose parent is `parent`. */
export function launchersOf(parent: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      const ppid = statOf(Number(entry)).ppid;
      if (ppid === parent && cmdline.includes(LAUNCHER_NAME)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Parent and process group of a running process, from /proc/PID/stat (throws when it is gone). */
export function statOf(pid: number): { ppid: number; pgrp: number } {
  // The fields after "(comm)": state, ppid, pgrp, ...
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ').at(-1)!.split(' ');
  return { ppid: Number(fields[1]), pgrp: Number(fields[2]) };
}

// End the process group of each command whose pid a test command wrote to a file (`hang-with-child`):
// a SIGKILLed daemon cannot end its commands itself.
export function killRecordedGroups(pidFiles: readonly string[]): void {
  for (const file of pidFiles) {
    try {
      process.kill(-statOf(Number(readFileSync(file, 'utf8'))).pgrp, 'SIGKILL');
    } catch {
      // Never started, or already gone.
    }
  }
}

/** What both daemons take in the launcher tests: the fixture commands, three prespawned launchers, quiet. */
export function launcherTestDaemonOptions(controlSocket: string) {
  return {
    commandDirectories: [FIXTURE_COMMANDS],
    controlSocket,
    controlMode: 0o600,
    limits: { prespawn: 3 },
    requestTimeoutMs: 10_000,
    maxLineBytes: 1024 * 1024,
    graceMs: 1000,
    logger: createLogger({ level: 'error' }),
  };
}
