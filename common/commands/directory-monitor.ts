// Keeps one watcher per command directory in line with the file system: a directory that is missing at
// start is picked up when it appears, one that is removed or replaced is re-watched, and each directory's
// problem (missing, not a directory, unreadable) is logged once.
//
// Idle means idle (issue 14): nothing runs on a timer while every directory is watched. A missing
// directory is waited for through a watch on its nearest existing parent; a directory on a network file
// system (9p, NFS, SMB, FUSE: inotify misses changes made on the other machine) is not watched but read at
// each use; `readNames` checks each watched directory's identity, so a replaced one is seen at the next use
// even if no event said so. Only a directory that can be neither watched nor waited for (its watcher failed,
// or no parent can be watched) is checked again every `checkIntervalMs`.
import { watch as watchPath, type FSWatcher } from 'node:fs';
import { readdir, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import {
  COMMAND_CHANGE_TYPES,
  watchCommandDirectory,
  type CommandChangeEvent,
  type CommandDirectoryWatcher,
} from './directory-watcher.js';
import { isCommandFileName } from './name.js';
import { errorMessage } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';

/** Options of {@link createCommandDirectoryMonitor}. */
export interface CommandDirectoryMonitorOptions {
  /** Absolute, normalized, unique paths in precedence order. */
  directories: readonly string[];
  logger: Logger;
  /** False: no watchers and no timer; `readNames` reads the directories on every call. */
  watch: boolean;
  /** Pause between checks of a directory that can be neither watched nor waited for (see the header). */
  checkIntervalMs: number;
  /** Every add/remove/change after the initial scan; not called after `close()`. Must not throw. */
  onChange: (event: CommandChangeEvent) => void;
  /** Longest wait for a new watcher's first scan; then it is dropped and tried again at the next check. Default 10000. */
  watcherReadyTimeoutMs?: number;
  /** What the files are, for log lines: `command` (default) or `service`. */
  kind?: 'command' | 'service';
}

const DEFAULT_WATCHER_READY_TIMEOUT_MS = 10_000;

/**
 * The candidate file names of a list of command directories.
 *
 * Lifecycle: `ready` resolves when the initial scan is done and never rejects. With `watch`, watchers and a
 * timer keep the process alive until `close()`, which is idempotent. After `close()`, `readNames` reads
 * the directories directly.
 */
export interface CommandDirectoryMonitor {
  readonly ready: Promise<void>;
  /** Candidate names per directory, in the order of `directories`; executability is not checked. */
  readNames(): Promise<string[][]>;
  close(): Promise<void>;
}

interface DirectoryState {
  readonly directory: string;
  watcher: CommandDirectoryWatcher | undefined;
  /** `dev:ino` of the watched directory: a different one means it was replaced and needs a new watcher. */
  identity: string | undefined;
  /** The problem last logged for this directory. */
  problem: string | undefined;
  /** Missing (or not a directory): a watch on the nearest existing parent, which says when to look again. */
  parentWatch: { path: string; watcher: FSWatcher } | undefined;
  /** On a network file system: read at each use, never watched. */
  readOnUse: boolean;
}

// Linux statfs(2) magic numbers of file systems whose inotify events miss changes made elsewhere.
const NETWORK_FILE_SYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x01021997, '9p'],
  [0x6969, 'NFS'],
  [0xff534d42, 'SMB'],
  [0xfe534d42, 'SMB'],
  [0x517b, 'SMB'],
  [0x65735546, 'FUSE (virtiofs, sshfs, ...)'],
  [0x00c36400, 'Ceph'],
  [0x6b414653, 'AFS'],
  [0x5346414f, 'AFS'],
]);

// The network file system `directory` is on, or undefined (local, or statfs could not say).
async function networkFileSystemOf(directory: string): Promise<string | undefined> {
  try {
    return NETWORK_FILE_SYSTEMS.get((await statfs(directory)).type);
  } catch {
    return undefined;
  }
}

// The nearest existing directory above `directory` (`/` at worst).
async function nearestExistingParent(directory: string): Promise<string> {
  let candidate = path.dirname(directory);
  for (;;) {
    try {
      if ((await stat(candidate)).isDirectory()) return candidate;
    } catch {
      // Missing or unreadable: look further up.
    }
    const parent = path.dirname(candidate);
    if (parent === candidate) return candidate;
    candidate = parent;
  }
}

// Say what is wrong with a command (or service) directory and how to fix it, from the error of stat/readdir.
function describeDirectoryProblem(directory: string, error: unknown, watching: boolean, kind: 'command' | 'service'): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const create = `create it (\`mkdir -p ${directory}\`)`;
  const Kind = kind === 'command' ? 'Command' : 'Service';
  if (code === 'ENOENT') {
    return `${Kind} directory \`${directory}\` does not exist: its ${kind}s are unavailable until you ${create}.${
      watching ? ' It will be picked up when it appears.' : ''
    }`;
  }
  const retry = watching ? ' It is checked again periodically.' : '';
  if (code === 'ENOTDIR') {
    return `${Kind} directory \`${directory}\` is not a directory: move that file away and ${create}.${retry}`;
  }
  return `Cannot read ${kind} directory \`${directory}\`: ${errorMessage(error)}. Check its permissions.${retry}`;
}

class DirectoryMonitor implements CommandDirectoryMonitor {
  readonly ready: Promise<void>;
  readonly #options: CommandDirectoryMonitorOptions;
  readonly #states: DirectoryState[];
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<void> | undefined;
  #checkAgain = false;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: CommandDirectoryMonitorOptions) {
    this.#options = options;
    this.#states = options.directories.map((directory) => ({ directory, watcher: undefined, identity: undefined, problem: undefined, parentWatch: undefined, readOnUse: false }));
    if (!options.watch) {
      this.ready = Promise.resolve();
      return;
    }
    this.ready = this.#checkDirectories().then(() => {
      this.#started = true;
    });
  }

  async readNames(): Promise<string[][]> {
    if (this.#options.watch && !this.#closed && (await this.#anyWatchedDirectoryChanged())) await this.#checkDirectories();
    return Promise.all(this.#states.map((state) => this.#readDirectoryNames(state)));
  }

  // Whether a watched directory is gone or was replaced (one stat each): events can be missed (a directory
  // renamed away, a watcher that fell behind), a use must not be answered from a stale index.
  async #anyWatchedDirectoryChanged(): Promise<boolean> {
    const changed = await Promise.all(
      this.#states.map(async (state) => {
        if (state.watcher === undefined) return false;
        try {
          const stats = await stat(state.directory);
          return `${stats.dev}:${stats.ino}` !== state.identity;
        } catch {
          return true;
        }
      }),
    );
    return changed.includes(true);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      clearTimeout(this.#timer);
      await this.#checking;
      for (const state of this.#states) this.#dropParentWatch(state);
      await Promise.all(this.#states.map((state) => this.#dropWatcher(state)));
    })();
    return this.#closing;
  }

  async #readDirectoryNames(state: DirectoryState): Promise<string[]> {
    // Without a watcher (not watching, closed, or the directory is missing or its watcher failed): read it.
    if (this.#options.watch && !this.#closed && state.watcher !== undefined) return [...state.watcher.names];
    try {
      const names = (await readdir(state.directory)).filter(isCommandFileName);
      // It was missing or unwatchable and is readable now: watch it from here on.
      if (this.#options.watch && !this.#closed && !state.readOnUse && state.problem !== undefined) void this.#checkDirectories();
      if (!this.#options.watch || state.readOnUse) state.problem = undefined;
      return names;
    } catch (error) {
      this.#reportProblem(state, error);
      return [];
    }
  }

  // Log a directory's problem once: a missing directory must not produce a warning at every check.
  #reportProblem(state: DirectoryState, error: unknown): void {
    const problem = describeDirectoryProblem(state.directory, error, this.#options.watch && !this.#closed, this.#options.kind ?? 'command');
    if (state.problem === problem) return;
    state.problem = problem;
    this.#options.logger.warn(problem);
  }

  // Check every directory. Serialized: a request made while a check runs makes it run once more instead.
  #checkDirectories(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#checking !== undefined) {
      this.#checkAgain = true;
      return this.#checking;
    }
    this.#checking = (async () => {
      do {
        this.#checkAgain = false;
        await Promise.all(this.#states.map((state) => this.#checkDirectory(state)));
      } while (this.#checkAgain && !this.#closed);
    })().finally(() => {
      this.#checking = undefined;
      this.#scheduleCheck();
    });
    return this.#checking;
  }

  // A timer only for a directory that nothing else will bring back to our attention.
  #scheduleCheck(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#closed || !this.#states.some((state) => state.watcher === undefined && state.parentWatch === undefined && !state.readOnUse)) return;
    this.#timer = setTimeout(() => void this.#checkDirectories(), this.#options.checkIntervalMs);
  }

  // Watch the nearest existing parent of a missing directory: any change there may be the directory (or a
  // level of it) appearing. Without a usable parent watch, the timer of #scheduleCheck takes over.
  async #watchParent(state: DirectoryState): Promise<void> {
    const parent = await nearestExistingParent(state.directory);
    if (this.#closed || state.parentWatch?.path === parent) return;
    this.#dropParentWatch(state);
    try {
      const watcher = watchPath(parent, { persistent: true }, () => void this.#checkDirectories());
      watcher.on('error', () => {
        if (state.parentWatch?.watcher !== watcher) return;
        this.#dropParentWatch(state);
        this.#scheduleCheck();
      });
      state.parentWatch = { path: parent, watcher };
      this.#options.logger.debug(`waiting for command directory ${state.directory} through a watch on ${parent}`);
      // What appeared between the parent's stat and its watch raised no event: look once more.
      if (await stat(state.directory).then(() => true, () => false)) this.#checkAgain = true;
    } catch (error) {
      this.#options.logger.debug(`cannot watch ${parent} for command directory ${state.directory} to appear (${errorMessage(error)}): checking every ${this.#options.checkIntervalMs} ms`);
    }
  }

  #dropParentWatch(state: DirectoryState): void {
    state.parentWatch?.watcher.close();
    state.parentWatch = undefined;
  }

  async #checkDirectory(state: DirectoryState): Promise<void> {
    const { logger } = this.#options;
    try {
      let identity: string;
      try {
        const stats = await stat(state.directory);
        if (!stats.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
        identity = `${stats.dev}:${stats.ino}`;
      } catch (error) {
        if (this.#closed) return;
        if (state.watcher !== undefined) {
          await this.#dropWatcher(state);
          state.problem = undefined;
        }
        state.readOnUse = false;
        this.#reportProblem(state, error);
        await this.#watchParent(state);
        return;
      }
      if (this.#closed) return;
      this.#dropParentWatch(state);
      if ((state.watcher !== undefined || state.readOnUse) && state.identity === identity) return;
      if (state.watcher !== undefined) await this.#dropWatcher(state);
      if (this.#closed) return;
      if (state.problem !== undefined) logger.info(`command directory appeared: ${state.directory}`);
      state.problem = undefined;
      state.identity = identity;
      const network = await networkFileSystemOf(state.directory);
      state.readOnUse = network !== undefined;
      if (network !== undefined) {
        logger.info(`command directory ${state.directory} is on ${network}, where changes made on the other side raise no event: it is read at each use instead of watched`);
        return;
      }
      state.watcher = watchCommandDirectory({
        directory: state.directory,
        reportInitial: this.#started,
        onChange: (event) => this.#emit(event),
        onDirectoryGone: () => void this.#checkDirectories(),
        onError: (error) => logger.warn(`watching command directory ${state.directory} failed: ${error.message}`),
      });
      // chokidar never reports ready when its first readdir fails with anything but ENOENT, EPERM, EACCES or
      // ELOOP (ENOTDIR: replaced by a file meanwhile; EMFILE): unbounded, that wait would hold this check, and
      // so the registry's `ready`, every list() and resolve() and close(), for ever.
      const watcher = state.watcher;
      if (!(await settlesWithin(watcher.ready, this.#options.watcherReadyTimeoutMs ?? DEFAULT_WATCHER_READY_TIMEOUT_MS))) {
        logger.warn(`watching command directory ${state.directory}: the first scan did not finish; reading it directly until the next check`);
        if (state.watcher === watcher) await this.#dropWatcher(state);
        return;
      }
      logger.debug(`watching command directory ${state.directory} (${watcher.names.size} candidate files)`);
    } catch (error) {
      logger.error(`checking command directory ${state.directory} failed: ${errorMessage(error)}`);
    }
  }

  // Stop watching a directory that went away or was replaced; its files are reported removed.
  async #dropWatcher(state: DirectoryState): Promise<void> {
    const watcher = state.watcher;
    if (watcher === undefined) return;
    state.watcher = undefined;
    state.identity = undefined;
    const names = [...watcher.names];
    await watcher.close();
    for (const name of names) this.#emit({ type: COMMAND_CHANGE_TYPES.remove, name, directory: state.directory });
  }

  #emit(event: CommandChangeEvent): void {
    if (!this.#closed) this.#options.onChange(event);
  }
}

// Whether `promise` settles within `ms` (the timer goes away either way).
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

// Start monitoring command directories (watchers only with `watch`); never throws, problems are logged.
export function createCommandDirectoryMonitor(options: CommandDirectoryMonitorOptions): CommandDirectoryMonitor {
  return new DirectoryMonitor(options);
}
