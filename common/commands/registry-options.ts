// Options of the command registry: the partial input type, its defaults, and the check done before any I/O.
import path from 'node:path';
import { ConfigError, truncateForLog } from '../wire/errors.js';
import { silentLogger, type Logger } from '../base/logger.js';
import { isRecord } from '../wire/protocol.js';

/** Default pause between checks for command directories that are missing, appeared, or were replaced. */
export const DEFAULT_DIRECTORY_CHECK_INTERVAL_MS = 5000;

/** What a caller passes to `createCommandRegistry`. */
export interface CommandRegistryOptions {
  /**
   * Absolute paths in precedence order: on a name clash the first directory holding an executable file of
   * that name wins, so user directories come before the built-in one. Duplicates are dropped.
   */
  directories: readonly string[];
  /** Where `command added/removed/changed` (info) and directory problems (warn) go. Default: silent. */
  logger?: Logger;
  /** Keep a live index with chokidar (default true). False: read the directories on every call (one-shot CLIs). */
  watch?: boolean;
  /** With `watch`: how often missing directories are checked for appearing, and watched ones for removal. Default 5000 (`DEFAULT_DIRECTORY_CHECK_INTERVAL_MS`). */
  directoryCheckIntervalMs?: number;
}

/** The options with every default filled in; frozen. */
export interface ResolvedCommandRegistryOptions {
  readonly directories: readonly string[];
  readonly logger: Logger;
  readonly watch: boolean;
  readonly directoryCheckIntervalMs: number;
}

function show(value: unknown): string {
  return truncateForLog(typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value)));
}

function isLogger(value: unknown): value is Logger {
  return isRecord(value) && ['error', 'warn', 'info', 'debug'].every((level) => typeof value[level] === 'function');
}

// Check the registry options and fill in defaults; throws a ConfigError naming the bad option.
export function resolveCommandRegistryOptions(input: CommandRegistryOptions): ResolvedCommandRegistryOptions {
  if (!isRecord(input)) {
    throw new ConfigError(`Expected the command registry options to be an object, got \`${show(input)}\`.`);
  }
  const { directories, logger, watch, directoryCheckIntervalMs } = input;
  if (!Array.isArray(directories) || directories.length === 0) {
    throw new ConfigError(
      `Expected the \`directories\` option to be a non-empty array of absolute paths, got \`${show(directories)}\`. ` +
        'List the user command directories first and the built-in one last.',
    );
  }
  const unique: string[] = [];
  directories.forEach((entry: unknown, index) => {
    if (typeof entry !== 'string' || !path.isAbsolute(entry) || entry.includes('\0')) {
      throw new ConfigError(
        `Expected \`directories[${index}]\` to be an absolute path, got \`${show(entry)}\`. ` +
          'Pass absolute paths (for example resolve them with path.resolve()).',
      );
    }
    const normalized = path.resolve(entry);
    if (!unique.includes(normalized)) unique.push(normalized);
  });
  if (logger !== undefined && !isLogger(logger)) {
    throw new ConfigError(`Expected the \`logger\` option to be a Logger (error/warn/info/debug methods), got \`${show(logger)}\`.`);
  }
  if (watch !== undefined && typeof watch !== 'boolean') {
    throw new ConfigError(`Expected the \`watch\` option to be a boolean, got \`${show(watch)}\`.`);
  }
  if (
    directoryCheckIntervalMs !== undefined &&
    !(Number.isSafeInteger(directoryCheckIntervalMs) && directoryCheckIntervalMs > 0)
  ) {
    throw new ConfigError(
      `Expected the \`directoryCheckIntervalMs\` option to be a positive integer, got \`${show(directoryCheckIntervalMs)}\`.`,
    );
  }
  return Object.freeze({
    directories: Object.freeze(unique),
    logger: logger ?? silentLogger,
    watch: watch ?? true,
    directoryCheckIntervalMs: directoryCheckIntervalMs ?? DEFAULT_DIRECTORY_CHECK_INTERVAL_MS,
  });
}
