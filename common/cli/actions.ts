// common/cli/: what both CLIs share: options, the actions (--execute, --list-commands, --connect,
// --forward) with exit codes scripts can trust, reaching a daemon or a channel, the doctor report.
//
// What `--execute` and `--list-commands` do once a peer is connected (directly or through a daemon's
// control socket), shared by negotiator-host and negotiator-guest. Returns exit codes scripts can trust.
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { splitCommandLine } from './command-line.js';
import { RpcError, errorMessage } from '../wire/errors.js';
import { executeRemote } from '../execute/client.js';
import { ERROR_CODES, METHODS, type CommandInfo, type ExecuteResult } from '../wire/protocol.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

/** Exit codes of the CLIs besides the remote command's own (documented in the README). */
export const EXIT_CODES = {
  ok: 0,
  usage: 2,
  /** The command was ended by its deadline (`--timeout`). */
  timedOut: 124,
  /** The command exists but could not be run. */
  cannotRun: 126,
  /** No such command on the other side (or an invalid name). */
  notFound: 127,
  /** Interrupted by Ctrl-C: the remote command was canceled. */
  interrupted: 130,
  /** negotiator itself failed: no channel, no answer, a protocol error. */
  failure: 255,
} as const;

export interface CliIo {
  stdin: Readable & { isTTY?: boolean };
  stdout: Writable;
  stderr: Writable;
}

export interface ExecuteActionOptions {
  peer: RpcPeer;
  /** `CMD ARGS`, split like a shell would (no shell runs). */
  commandLine: string;
  /** Only through a host daemon's control socket. */
  guest?: string;
  timeoutMs: number;
  json: boolean;
  /** Forward our stdin to the command (false: it gets /dev/null). */
  forwardStdin: boolean;
  /** The peer is the local daemon, which relays (and times out) on its own. */
  viaDaemon?: boolean;
  io: CliIo;
  signal: AbortSignal;
}

/** Largest output `--json` collects per stream; past it the JSON says `truncated`. */
const JSON_OUTPUT_CAP = 64 * 1024 * 1024;

// Run a command on the other side, streaming its output to ours; resolve with the exit code to use.
export async function runExecuteAction(options: ExecuteActionOptions): Promise<number> {
  const words = splitCommandLine(options.commandLine);
  const [command, ...args] = words;
  if (command === undefined) throw new RpcError(ERROR_CODES.invalidParams, 'nothing to execute: `--execute` needs a command name, e.g. --execute "uptime"');
  const collected = { stdout: [] as Buffer[], stderr: [] as Buffer[], bytes: { stdout: 0, stderr: 0 }, truncated: false };
  const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    if (collected.bytes[stream] + chunk.length > JSON_OUTPUT_CAP) {
      collected.truncated = true;
      return;
    }
    collected[stream].push(chunk);
    collected.bytes[stream] += chunk.length;
  };
  const result = await executeRemote(options.peer, {
    command,
    args,
    timeoutMs: options.timeoutMs,
    signal: options.signal,
    ...(options.viaDaemon ? { answerGraceMs: 4000 } : {}),
    ...(options.guest !== undefined ? { guest: options.guest } : {}),
    ...(options.forwardStdin ? { stdin: options.io.stdin } : {}),
    stdout: options.json ? collect('stdout') : options.io.stdout,
    stderr: options.json ? collect('stderr') : options.io.stderr,
  });
  if (options.json) {
    options.io.stdout.write(
      `${JSON.stringify({
        command,
        args,
        ...(options.guest !== undefined ? { guest: options.guest } : {}),
        ...result,
        ...encodeOutput('stdout', Buffer.concat(collected.stdout)),
        ...encodeOutput('stderr', Buffer.concat(collected.stderr)),
        jsonTruncated: collected.truncated,
      })}\n`,
    );
  } else if (result.timedOut) {
    options.io.stderr.write(`negotiator: \`${command}\` was terminated after its ${options.timeoutMs / 1000} s timeout (use --timeout to allow more)\n`);
  } else if (result.outputTruncated) {
    options.io.stderr.write(`negotiator: the output of \`${command}\` exceeded the other side's cap and was cut\n`);
  }
  return exitCodeOf(result);
}

// The CLI exit code for a finished command: its own, 128+N for a signal, 124 when its deadline ended it.
export function exitCodeOf(result: ExecuteResult): number {
  if (result.timedOut) return EXIT_CODES.timedOut;
  if (result.exitCode !== null) return result.exitCode;
  const number = result.signal ? (osConstants.signals as Record<string, number>)[result.signal] : undefined;
  return number !== undefined ? 128 + number : EXIT_CODES.failure;
}

function encodeOutput(name: 'stdout' | 'stderr', bytes: Buffer): Record<string, string> {
  const text = bytes.toString('utf8');
  return Buffer.from(text, 'utf8').equals(bytes) ? { [name]: text } : { [`${name}Base64`]: bytes.toString('base64') };
}

export interface ListActionOptions {
  peer: RpcPeer;
  guest?: string;
  timeoutMs: number;
  json: boolean;
  io: CliIo;
}

// Print the other side's commands (a table, or JSON).
export async function runListAction(options: ListActionOptions): Promise<number> {
  const params = options.guest !== undefined ? { guest: options.guest } : {};
  const result = (await options.peer.request(METHODS.listCommands, params, { timeoutMs: options.timeoutMs })) as { commands: CommandInfo[] };
  if (options.json) {
    options.io.stdout.write(`${JSON.stringify(result.commands)}\n`);
    return EXIT_CODES.ok;
  }
  const width = Math.max(0, ...result.commands.map((c) => c.name.length));
  for (const command of result.commands) {
    options.io.stdout.write(command.description ? `${command.name.padEnd(width)}  ${command.description}\n` : `${command.name}\n`);
  }
  return EXIT_CODES.ok;
}

// The exit code for a failure of the request itself.
export function exitCodeOfError(error: unknown): number {
  const code = error instanceof Error && 'code' in error ? (error as { code: unknown }).code : undefined;
  if (code === ERROR_CODES.commandNotFound || code === ERROR_CODES.invalidCommandName) return EXIT_CODES.notFound;
  if (code === ERROR_CODES.spawnFailed) return EXIT_CODES.cannotRun;
  if (code === ERROR_CODES.requestCanceled || (error instanceof Error && error.name === 'CanceledError')) return EXIT_CODES.interrupted;
  if (error instanceof Error && error.name === 'ConfigError') return EXIT_CODES.usage;
  return EXIT_CODES.failure;
}

// One line for stderr: `negotiator-host: error: <what failed and what to do>`.
export function formatCliError(program: string, error: unknown): string {
  return `${program}: error: ${errorMessage(error)}\n`;
}
