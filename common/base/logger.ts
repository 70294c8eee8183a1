// common/base/: leaf utilities every layer may use (logging, rate-limited warnings, long timers, identity
// look-ups, a worker pool); nothing here imports anything else of the project.
//
// Line-oriented logging to stderr with levels. Under systemd (JOURNAL_STREAM set) each line starts with
// the sd-daemon priority prefix (`<3>` ...) so journald keeps the right priority; elsewhere (supervisord,
// a terminal) each line starts with an ISO timestamp and the level name.

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const SYSLOG_PRIORITY: Record<LogLevel, number> = { error: 3, warn: 4, info: 6, debug: 7 };

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  /** A logger whose lines carry `[scope]` after this logger's own scope. */
  child(scope: string): Logger;
  readonly level: LogLevel;
}

export interface LoggerOptions {
  level?: LogLevel;
  /** `journal`: sd-daemon priority prefixes; `plain`: timestamp + level. Default: journal when JOURNAL_STREAM is set. */
  format?: 'journal' | 'plain';
  /** Where lines go; default process.stderr. */
  write?: (line: string) => void;
  scope?: string;
}

// Create a logger; lines below `level` are dropped before they are formatted.
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  const format = options.format ?? (process.env.JOURNAL_STREAM ? 'journal' : 'plain');
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const threshold = LOG_LEVELS.indexOf(level);
  const make = (scope: string | undefined): Logger => {
    const emit = (lineLevel: LogLevel, message: string): void => {
      if (LOG_LEVELS.indexOf(lineLevel) > threshold) return;
      // One event, one line: a message never spans lines (journald and supervisord split on them).
      const text = (scope ? `[${scope}] ` : '') + message.replace(/[\r\n]+/g, ' | ');
      write(
        format === 'journal'
          ? `<${SYSLOG_PRIORITY[lineLevel]}>${text}\n`
          : `${new Date().toISOString()} ${lineLevel.toUpperCase().padEnd(5)} ${text}\n`,
      );
    };
    return {
      level,
      error: (m) => emit('error', m),
      warn: (m) => emit('warn', m),
      info: (m) => emit('info', m),
      debug: (m) => emit('debug', m),
      child: (s) => make(scope ? `${scope}] [${s}` : s),
    };
  };
  return make(options.scope);
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = {
  level: 'error',
  error() {},
  warn() {},
  info() {},
  debug() {},
  child() {
    return silentLogger;
  },
};
