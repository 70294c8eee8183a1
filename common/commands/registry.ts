// common/commands/: what may run and how it starts: command names, candidate files, the registry and its
// directory watching, the environment, the runner, the launcher pool, resource limits, the built-ins.
//
// The command registry: which commands the command directories offer, in precedence order, kept live.
// The directory monitor tells which names exist; every list/resolve re-stats the files, since a chmod may
// go unreported by the watcher.
import {
  canExecDirectly,
  createCommandFileCache,
  inspectCommandFile,
  isExecutableFile,
  type CommandFileCache,
  type ExecutableFile,
} from './file.js';
import { createCommandDirectoryMonitor, type CommandDirectoryMonitor } from './directory-monitor.js';
import type { CommandChangeEvent } from './directory-watcher.js';
import { validateCommandName } from './name.js';
import {
  resolveCommandRegistryOptions,
  type CommandRegistryOptions,
  type ResolvedCommandRegistryOptions,
} from './registry-options.js';
import { errorMessage } from '../wire/errors.js';
import type { CommandInfo } from '../wire/protocol.js';

export { COMMAND_CHANGE_TYPES, type CommandChangeEvent, type CommandChangeType } from './directory-watcher.js';
export type { CommandRegistryOptions, ResolvedCommandRegistryOptions } from './registry-options.js';

/** A command found in a directory: an executable regular file (links followed) with a valid name. */
export interface ResolvedCommand extends CommandInfo {
  /** The file to run: `directory` joined with `name` (not the link target). */
  path: string;
  /** The command directory it was found in. */
  directory: string;
  /**
   * execve would start it with no shell's help (an ELF binary, or a `#!` script whose interpreter is
   * executable), so a pre-forked launcher may exec it (common/commands/launcher-pool.ts). Read with the
   * description, once per version of the file; the interpreter is checked at every resolve.
   */
  launchable: boolean;
}

/**
 * The commands offered by a list of command directories.
 *
 * Lifecycle: `ready` resolves when the initial scan is done and never rejects; `list` and `resolve` wait for
 * it. With `watch` the registry holds file watchers and a timer (keeping the process alive) until `close()`,
 * which is idempotent and returns the same promise every time. After `close()`, `list` and `resolve` still
 * work by reading the directories directly, and no listener is called any more.
 */
export interface CommandRegistry {
  readonly options: ResolvedCommandRegistryOptions;
  readonly ready: Promise<void>;
  /** The commands, sorted by name, one per name (the highest-precedence directory that has it executable). */
  list(): Promise<CommandInfo[]>;
  /** The command to run for `name`, or undefined; throws RpcError(invalidCommandName) for a bad name. */
  resolve(name: string): Promise<ResolvedCommand | undefined>;
  /** Call `listener` for each add/remove/change seen after the initial scan; returns the unsubscribe function. */
  onChange(listener: (event: CommandChangeEvent) => void): () => void;
  close(): Promise<void>;
}

const CHANGE_VERBS = { add: 'added', remove: 'removed', change: 'changed' } as const;

class CommandRegistryImpl implements CommandRegistry {
  readonly options: ResolvedCommandRegistryOptions;
  readonly ready: Promise<void>;
  readonly #monitor: CommandDirectoryMonitor;
  readonly #listeners = new Set<(event: CommandChangeEvent) => void>();
  readonly #heads: CommandFileCache;
  #closing: Promise<void> | undefined;

  constructor(options: ResolvedCommandRegistryOptions) {
    this.options = options;
    const { logger } = options;
    this.#heads = createCommandFileCache((filePath, error) =>
      logger.debug(`cannot read the description of ${filePath}: ${errorMessage(error)}`),
    );
    this.#monitor = createCommandDirectoryMonitor({
      directories: options.directories,
      logger,
      watch: options.watch,
      checkIntervalMs: options.directoryCheckIntervalMs,
      onChange: (event) => this.#emit(event),
    });
    this.ready = this.#monitor.ready;
  }

  async list(): Promise<CommandInfo[]> {
    const commands = await this.#findCommands();
    return commands.map(({ name, description }) => ({ name, description }));
  }

  async resolve(name: string): Promise<ResolvedCommand | undefined> {
    const valid = validateCommandName(name);
    await this.ready;
    // Straight to the file system: a resolve must not miss a file the watcher has not reported yet.
    const { directories } = this.options;
    const files = await Promise.all(directories.map((directory) => inspectCommandFile(directory, valid)));
    const index = files.findIndex(isExecutableFile);
    const file = files[index];
    const directory = directories[index];
    if (file === undefined || directory === undefined || !isExecutableFile(file)) return undefined;
    const { description, format } = await this.#heads.get(file);
    return { name: valid, path: file.path, directory, description, launchable: await canExecDirectly(format) };
  }

  onChange(listener: (event: CommandChangeEvent) => void): () => void {
    // A wrapper, so that subscribing the same function twice gives two independent subscriptions.
    const entry = (event: CommandChangeEvent): void => listener(event);
    this.#listeners.add(entry);
    return () => void this.#listeners.delete(entry);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#listeners.clear();
      await this.#monitor.close();
    })();
    return this.#closing;
  }

  async #findCommands(): Promise<Array<Omit<ResolvedCommand, 'launchable'>>> {
    await this.ready;
    const { directories } = this.options;
    const names = await this.#monitor.readNames();
    const inspected = await Promise.all(
      directories.flatMap((directory, index) =>
        (names[index] ?? []).map(async (name) => ({ name, directory, file: await inspectCommandFile(directory, name) })),
      ),
    );
    // `inspected` is in precedence order, so the first executable file of a name wins.
    const winners = new Map<string, { name: string; directory: string; file: ExecutableFile }>();
    for (const { name, directory, file } of inspected) {
      if (!isExecutableFile(file)) {
        this.options.logger.debug(`skipping ${file.path}: ${file.reason}`);
      } else if (!winners.has(name)) {
        winners.set(name, { name, directory, file });
      }
    }
    const commands = await Promise.all(
      [...winners.values()].map(async ({ name, directory, file }) => ({
        name,
        path: file.path,
        directory,
        description: (await this.#heads.get(file)).description,
      })),
    );
    this.#heads.retain(commands.map((command) => command.path));
    return commands.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  #emit(event: CommandChangeEvent): void {
    this.options.logger.info(`command ${CHANGE_VERBS[event.type]}: ${event.name} (${event.directory})`);
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.options.logger.error(`a command change listener threw: ${errorMessage(error)}`);
      }
    }
  }
}

// Create a registry over command directories; options are checked (ConfigError) before any I/O.
export function createCommandRegistry(options: CommandRegistryOptions): CommandRegistry {
  return new CommandRegistryImpl(resolveCommandRegistryOptions(options));
}
