// Commands must not outlive a daemon that was killed (SIGKILL, OOM killer, a crash): each command runs in
// its own process group, and those groups are recorded in a state file beside the control socket. The
// next daemon to start there ends the groups its predecessor recorded, but only those whose leader is
// still the same process (same pid and same start time in /proc/PID/stat), so a recycled pid is never
// signalled. Under systemd the units' KillMode=mixed already does this (examples/services/); this covers
// every other set-up. Writes are coalesced to one per event-loop turn.
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { errorMessage } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';

/** Running process groups of this process's commands: leader pid -> its start time (clock ticks since boot). */
const groups = new Map<number, string>();
let stateFile: string | undefined;
let writeScheduled = false;

// Field 22 of /proc/PID/stat (start time): with the pid, it names one process for the machine's uptime.
export function readStartTime(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Record a command's process group (its leader's pid) until the returned function is called. */
export function trackCommandGroup(pid: number): () => void {
  const start = readStartTime(pid);
  if (start === undefined) return () => {};
  groups.set(pid, start);
  scheduleWrite();
  return () => {
    if (groups.get(pid) === start && groups.delete(pid)) scheduleWrite();
  };
}

/** The state file this process's groups go to from now on (a daemon, once it owns its control socket). */
export function recordCommandGroupsIn(path: string): void {
  stateFile = path;
  scheduleWrite();
}

/** The groups a predecessor recorded in `path` (read before this daemon records its own there). */
export function readRecordedGroups(path: string): Array<{ pid: number; start: string }> {
  try {
    const entries = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    if (!Array.isArray(entries)) return [];
    return entries.filter((e): e is { pid: number; start: string } => Number.isSafeInteger(e?.pid) && e.pid > 1 && typeof e?.start === 'string');
  } catch {
    return [];
  }
}

// End (SIGKILL) the recorded groups whose leader is still the process that was recorded; returns how many.
export function endRecordedGroups(recorded: ReadonlyArray<{ pid: number; start: string }>, logger: Logger): number {
  let ended = 0;
  for (const { pid, start } of recorded) {
    if (readStartTime(pid) !== start) continue;
    try {
      process.kill(-pid, 'SIGKILL');
      ended++;
    } catch (error) {
      logger.warn(`cannot end process group ${pid} left by the previous daemon: ${errorMessage(error)}`);
    }
  }
  if (ended > 0) logger.warn(`ended ${ended} command process group(s) left running by a previous daemon that did not stop cleanly`);
  return ended;
}

function scheduleWrite(): void {
  if (stateFile === undefined || writeScheduled) return;
  writeScheduled = true;
  setImmediate(() => {
    writeScheduled = false;
    if (stateFile === undefined) return;
    try {
      // No command running: no file (a daemon that stopped cleanly leaves nothing beside its socket).
      if (groups.size === 0) {
        rmSync(stateFile, { force: true });
        return;
      }
      // Written aside and renamed: a daemon killed mid-write leaves the previous whole file.
      writeFileSync(`${stateFile}.tmp`, JSON.stringify([...groups].map(([pid, start]) => ({ pid, start }))));
      renameSync(`${stateFile}.tmp`, stateFile);
    } catch {
      // The directory went away (a test, a cleaned /run): nothing to protect any more.
    }
  });
}

/**
 * For a daemon that now owns `controlSocket` (so no other daemon runs there): end the command groups the
 * previous daemon recorded beside it, then record ours there.
 */
export function takeOverCommandGroups(controlSocket: string, logger: Logger): void {
  const path = `${controlSocket}.commands`;
  endRecordedGroups(readRecordedGroups(path), logger);
  recordCommandGroupsIn(path);
}
