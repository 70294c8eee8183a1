// A live index of the candidate files in one existing command directory, kept by a chokidar watcher.
// It only knows names: whether a file is executable is checked by the registry on every use.
// chokidar reads a directory before it starts watching it, so a file created in between is never reported;
// `reconcile()` (run once the initial scan is done, then on the owner's schedule) closes that gap.
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { isCommandFileName } from './name.js';

/** What happened to a file in a command directory. */
export const COMMAND_CHANGE_TYPES = { add: 'add', remove: 'remove', change: 'change' } as const;
export type CommandChangeType = (typeof COMMAND_CHANGE_TYPES)[keyof typeof COMMAND_CHANGE_TYPES];

/**
 * A candidate file appeared in, disappeared from, or changed in one command directory. Reported per
 * directory: a name shadowed by a higher-precedence directory is still reported. A chmod may or may not be
 * reported (as `change`), so listeners should not infer executability from events.
 */
export interface CommandChangeEvent {
  type: CommandChangeType;
  name: string;
  directory: string;
}

/** Options of {@link watchCommandDirectory}. */
export interface CommandDirectoryWatcherOptions {
  /** Absolute, normalized path of a directory that exists now. */
  directory: string;
  /** Report the files found by the initial scan as `add` events (for a directory that appeared late). */
  reportInitial: boolean;
  /** Called for every change; must not throw. */
  onChange: (event: CommandChangeEvent) => void;
  /** The directory itself was removed: the owner should check it and replace this watcher. */
  onDirectoryGone: () => void;
  /** A watcher error (permissions, too many watches); the watcher keeps running. */
  onError: (error: Error) => void;
}

/**
 * The names of candidate files (valid command file names, any type or mode) in one directory.
 *
 * Lifecycle: `ready` resolves once the initial scan is done (or the watcher was closed first) and never
 * rejects. `close()` is idempotent; no callback runs after it was called.
 */
export interface CommandDirectoryWatcher {
  readonly directory: string;
  readonly names: ReadonlySet<string>;
  readonly ready: Promise<void>;
  /** Compare the index with a fresh read of the directory and report the differences. Never rejects. */
  reconcile(): Promise<void>;
  close(): Promise<void>;
}

class ChokidarDirectoryWatcher implements CommandDirectoryWatcher {
  readonly directory: string;
  readonly ready: Promise<void>;
  readonly #names = new Set<string>();
  /** Names `reconcile()` found before chokidar did: chokidar's own later `add` of them is not reported again. */
  readonly #reconciled = new Set<string>();
  readonly #options: CommandDirectoryWatcherOptions;
  readonly #watcher: FSWatcher;
  #markReady: () => void = () => {};
  #isReady = false;
  #closing: Promise<void> | undefined;

  constructor(options: CommandDirectoryWatcherOptions) {
    this.#options = options;
    this.directory = options.directory;
    this.ready = new Promise((resolve) => {
      this.#markReady = resolve;
    });
    const directory = options.directory;
    this.#watcher = watch(directory, {
      depth: 0,
      followSymlinks: true,
      ignoreInitial: false,
      persistent: true,
      // Skip junk (editor leftovers, dot files) before chokidar stats it or opens a watch on it.
      ignored: (entry: string) => path.dirname(entry) === directory && !isCommandFileName(path.basename(entry)),
    });
    this.#watcher.on('add', (entry) => this.#handleFile(entry, 'add'));
    this.#watcher.on('change', (entry) => this.#handleFile(entry, 'change'));
    this.#watcher.on('unlink', (entry) => this.#handleFile(entry, 'remove'));
    this.#watcher.on('unlinkDir', (entry) => {
      if (entry === directory && this.#closing === undefined) options.onDirectoryGone();
    });
    this.#watcher.on('error', (error) => {
      if (this.#closing === undefined) options.onError(error instanceof Error ? error : new Error(String(error)));
    });
    this.#watcher.on('ready', () => {
      this.#isReady = true;
      void this.reconcile().finally(() => this.#markReady());
    });
  }

  get names(): ReadonlySet<string> {
    return this.#names;
  }

  #handleFile(entry: string, type: CommandChangeType): void {
    if (this.#closing !== undefined || path.dirname(entry) !== this.directory) return;
    const name = path.basename(entry);
    if (!isCommandFileName(name)) return;
    let reported: CommandChangeType = type;
    const reconciled = this.#reconciled.delete(name);
    if (type === COMMAND_CHANGE_TYPES.add && reconciled && this.#names.has(name)) return;
    if (type === COMMAND_CHANGE_TYPES.remove) {
      if (!this.#names.delete(name)) return;
    } else {
      // An `add` for a known name (an atomic replace seen as unlink + add) is a change of that file.
      if (type === COMMAND_CHANGE_TYPES.add && this.#names.has(name)) reported = COMMAND_CHANGE_TYPES.change;
      this.#names.add(name);
    }
    if (this.#isReady || this.#options.reportInitial) {
      this.#options.onChange({ type: reported, name, directory: this.directory });
    }
  }

  async reconcile(): Promise<void> {
    let present: Set<string>;
    try {
      present = await this.#readCandidateNames();
    } catch (error) {
      // A directory that went away is the owner's business (unlinkDir / its periodic check).
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && this.#closing === undefined) {
        this.#options.onError(error instanceof Error ? error : new Error(String(error)));
      }
      return;
    }
    if (this.#closing !== undefined) return;
    for (const name of present) {
      if (this.#names.has(name)) continue;
      this.#names.add(name);
      this.#reconciled.add(name);
      this.#options.onChange({ type: COMMAND_CHANGE_TYPES.add, name, directory: this.directory });
    }
    for (const name of this.#names) {
      if (present.has(name)) continue;
      this.#names.delete(name);
      this.#reconciled.delete(name);
      this.#options.onChange({ type: COMMAND_CHANGE_TYPES.remove, name, directory: this.directory });
    }
  }

  // The names chokidar would report as files: no directories, no links to directories, no dangling links.
  async #readCandidateNames(): Promise<Set<string>> {
    const entries = (await readdir(this.directory, { withFileTypes: true })).filter((entry) => isCommandFileName(entry.name));
    const kept = await Promise.all(
      entries.map(async (entry) => {
        if (!entry.isSymbolicLink()) return !entry.isDirectory();
        try {
          return !(await stat(path.join(this.directory, entry.name))).isDirectory();
        } catch {
          return false;
        }
      }),
    );
    return new Set(entries.filter((_, index) => kept[index]).map((entry) => entry.name));
  }

  close(): Promise<void> {
    this.#closing ??= this.#watcher.close().finally(() => this.#markReady());
    return this.#closing;
  }
}

// Start watching one existing command directory (depth 0, following links).
export function watchCommandDirectory(options: CommandDirectoryWatcherOptions): CommandDirectoryWatcher {
  return new ChokidarDirectoryWatcher(options);
}
