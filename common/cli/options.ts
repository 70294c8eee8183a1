// Option parsing shared by both CLIs (commander), validated at the edge with messages that name the fix.
import { InvalidArgumentError, Option, type Command, type OptionValues } from 'commander';
import { EXIT_CODES, formatCliError } from './actions.js';
import path from 'node:path';
import { systemIdentities, type IdentityLookup } from '../base/identity.js';
import { parseSize } from '../base/size.js';
import type { LogLevel } from '../base/logger.js';
import { DEFAULT_COMMAND_DIRECTORY, type ServingOptions } from '../daemon/serving-options.js';

export { DEFAULT_COMMAND_DIRECTORY, type ServingOptions };

// `--timeout SECONDS` (decimals allowed, 0 = none) to milliseconds.
export function parseTimeoutSeconds(value: string): number {
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < 0) {
    throw new InvalidArgumentError(`expected a number of seconds >= 0 (0 = no timeout), got \`${value}\``);
  }
  const ms = Math.round(seconds * 1000);
  if (!Number.isSafeInteger(ms)) throw new InvalidArgumentError(`expected at most ${Math.floor(Number.MAX_SAFE_INTEGER / 1000)} seconds, got \`${value}\``);
  return ms;
}

// A positive (or, with allowZero, non-negative) integer option.
export function parseCount(allowZero: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || (!allowZero && n === 0)) {
      throw new InvalidArgumentError(`expected a ${allowZero ? 'non-negative' : 'positive'} integer, got \`${value}\``);
    }
    return n;
  };
}

// Sizes like `64M`, `1G`, `4096`, `0` (none).
export function parseBytes(value: string): number {
  const bytes = parseSize(value);
  if (bytes === undefined) throw new InvalidArgumentError(`expected a size like 4096, 64M or 1G (0 = no limit), got \`${value}\``);
  return bytes;
}

// `--control-mode OCTAL`: a socket file mode such as 0600 or 0660 (at most 0777). Checked here, at
// parsing, so a bad value is a usage error before anything is created or listens.
export function parseFileMode(value: string): number {
  if (!/^[0-7]{1,4}$/.test(value.trim()) || parseInt(value, 8) > 0o777) {
    throw new InvalidArgumentError(`expected an octal file mode such as 0600 or 0660 (digits 0-7, at most 0777), got \`${value}\``);
  }
  return parseInt(value, 8);
}

// A repeatable absolute directory option.
export function collectDirectory(value: string, previous: string[] | undefined): string[] {
  if (!path.isAbsolute(value)) throw new InvalidArgumentError(`expected an absolute directory path, got \`${value}\``);
  return [...(previous ?? []), path.normalize(value)];
}

// -v / -q counts to a log level (default info).
export function logLevelOf(verbose: number, quiet: number): LogLevel {
  const levels: LogLevel[] = ['error', 'warn', 'info', 'debug'];
  return levels[Math.max(0, Math.min(levels.length - 1, 2 + verbose - quiet))]!;
}

// Counter for repeatable flags (-v -v).
export function increment(_value: string, previous: number): number {
  return previous + 1;
}

// `--control-group`: a group name or number to a gid, as the system resolves it (getent, then /etc/group).
export function parseGroup(value: string): number {
  return resolveGroup(value, systemIdentities);
}

// parseGroup with the lookup given (commander passes a second argument, so the seam is not a default).
export function resolveGroup(value: string, identities: IdentityLookup): number {
  if (/^\d+$/.test(value)) return Number(value);
  const group = identities.group(value);
  if (!group) throw new InvalidArgumentError(`no group \`${value}\` (create it with groupadd, or give a number)`);
  return group.gid;
}

/** The options of a CLI that asks the other side (not the daemon's), as parsed. */
export interface ClientOptions {
  timeoutMs: number;
  json: boolean;
  /** false with `--no-stdin`. */
  stdin: boolean;
}

// `-t/--timeout`, `--json` (`jsonWhat`: the results it applies to) and `-n/--no-stdin`.
export function addClientOptions(program: Command, jsonWhat: string): Command {
  return program
    .addOption(new Option('-t, --timeout <seconds>', 'deadline of a request; the command is terminated after it (0 = none)').default(10_000, '10').argParser(parseTimeoutSeconds))
    .option('--json', `print machine-readable results (${jsonWhat})`, false)
    .option('-n, --no-stdin', 'do not forward stdin to the command (it reads /dev/null)');
}

// The ClientOptions out of commander's parsed values.
export function clientOptionsOf(parsed: Record<string, unknown>): ClientOptions {
  return { timeoutMs: parsed.timeout as number, json: parsed.json as boolean, stdin: parsed.stdin as boolean };
}

/** The daemon's control socket options, as parsed. */
export interface ControlOptions {
  controlSocket: string;
  controlMode: number;
  controlGroup?: number;
}

// `--control-socket`, `--control-mode` and `--control-group`, with each side's defaults and notes.
export function addControlOptions(program: Command, side: { socket: string; mode: number; modeNote: string; groupNote: string }): Command {
  return program
    .option('--control-socket <path>', 'the daemon\'s socket for local CLIs', side.socket)
    .addOption(new Option('--control-mode <octal>', `file mode of the control socket${side.modeNote}`).default(side.mode, `0${side.mode.toString(8)}`).argParser(parseFileMode))
    .addOption(new Option('--control-group <group>', `daemon: let this group use the control socket (${side.groupNote})`).argParser(parseGroup));
}

// The ControlOptions out of commander's parsed values.
export function controlOptionsOf(parsed: Record<string, unknown>): ControlOptions {
  return {
    controlSocket: parsed.controlSocket as string,
    controlMode: parsed.controlMode as number,
    ...(parsed.controlGroup !== undefined ? { controlGroup: parsed.controlGroup as number } : {}),
  };
}

// Add the options that shape how a daemon serves commands, and -v/-q; `channelNoun` and `peerNoun`
// name the other side in the help ("guest channel" / "a guest").
export function addServingOptions(program: Command, channelNoun: string, peerNoun: string): Command {
  return program
    .option('--commands-dir <dir>', `daemon: a command directory (repeatable, first wins; default ${DEFAULT_COMMAND_DIRECTORY})`, collectDirectory)
    .option('--no-builtin-commands', 'daemon: do not offer the built-in read-only commands')
    .addOption(new Option('--max-concurrent <n>', `daemon: commands running at once per ${channelNoun}`).default(8).argParser(parseCount(false)))
    .addOption(new Option('--max-queued <n>', 'daemon: commands waiting for a slot per channel; more are refused as busy').default(1024).argParser(parseCount(true)))
    .addOption(new Option('--max-command-time <seconds>', `daemon: longest any command may run, whatever ${peerNoun} asks (0 = no cap)`).default(3_600_000, '3600').argParser(parseTimeoutSeconds))
    .addOption(new Option('--max-output <size>', 'daemon: stdout (and stderr) bytes sent per command; the rest is dropped and reported (0 = no cap)').default(1024 ** 3, '1G').argParser(parseBytes))
    .addOption(new Option('--kill-grace <seconds>', "daemon: between SIGTERM and SIGKILL of a command's process group").default(5000, '5').argParser(parseTimeoutSeconds))
    .addOption(new Option('--prespawn <n>', 'daemon: /bin/sh launchers kept ready so that a command starts without a fork of the daemon (0 = fork for every command)').default(2).argParser(parseCount(true)))
    .addOption(
      new Option('--rlimit <name=value>', 'daemon: a resource limit for every command (repeatable; nofile, nproc, as, cpu, fsize, core; e.g. nofile=1024 as=2G), applied with prlimit')
        .default([] as string[], 'none')
        .argParser((v: string, prev: string[]) => [...prev, v]),
    )
    .option('--run-as <user>', "daemon: run commands as this user (default: the daemon's user)")
    .addOption(new Option('--max-line-bytes <size>', 'longest protocol line accepted').default(1024 * 1024, '1M').argParser(parseBytes))
    .addOption(new Option('--peer-timeout <seconds>', `fail the requests waiting on ${peerNoun === 'a guest' ? 'a guest\'s' : 'the host\'s'} agent when it answers nothing (not even a keepalive ping) for this long: it died, hangs or its machine reset (0 = wait for each request's own --timeout)`).default(15_000, '15').argParser(parseTimeoutSeconds))
    .addOption(new Option('--grace <seconds>', 'daemon: on SIGTERM, how long running commands may finish before they are canceled').default(10_000, '10').argParser(parseTimeoutSeconds))
    .option('-v, --verbose', 'more log lines (repeat for debug)', increment, 0)
    .option('-q, --quiet', 'fewer log lines (repeat for errors only)', increment, 0);
}

// The ServingOptions out of commander's parsed values.
export function servingOptionsOf(parsed: Record<string, unknown>): ServingOptions {
  return {
    commandsDir: parsed.commandsDir as string[] | undefined,
    builtinCommands: parsed.builtinCommands as boolean,
    maxConcurrent: parsed.maxConcurrent as number,
    maxQueued: parsed.maxQueued as number,
    maxCommandTimeMs: parsed.maxCommandTime as number,
    maxOutputBytes: parsed.maxOutput as number,
    killGraceMs: parsed.killGrace as number,
    prespawn: parsed.prespawn as number,
    rlimits: parsed.rlimit as string[],
    ...(parsed.runAs !== undefined ? { runAs: parsed.runAs as string } : {}),
    maxLineBytes: parsed.maxLineBytes as number,
    graceMs: parsed.grace as number,
    peerTimeoutMs: parsed.peerTimeout as number,
    logLevel: logLevelOf(parsed.verbose as number, parsed.quiet as number),
  };
}

// The `main() -> exit code` shape of both binaries: parse (a usage error exits 2), run, then exit with
// the code once stdout has drained (nothing, such as a pending stdin read, may hold the process).
export async function runMain(program: Command, programName: string, run: (parsed: OptionValues) => Promise<number>): Promise<void> {
  try {
    program.parse(process.argv);
  } catch (error) {
    const code = (error as { exitCode?: number }).exitCode;
    process.exit(code === 0 ? EXIT_CODES.ok : EXIT_CODES.usage);
  }
  try {
    const code = await run(program.opts());
    process.exitCode = code;
    process.stdout.write('', () => process.exit(code));
  } catch (error) {
    process.stderr.write(formatCliError(programName, error));
    process.exit(error instanceof Error && error.name === 'ConfigError' ? EXIT_CODES.usage : EXIT_CODES.failure);
  }
}
