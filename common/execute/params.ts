// Validation of `execute` params and results from an untrusted peer.
import { validateCommandName } from '../commands/name.js';
import { RpcError } from '../wire/errors.js';
import { describeValue } from '../wire/json-limits.js';
import { ERROR_CODES, MAX_CHUNK_BYTES, isRecord, type ExecuteParams, type ExecuteResult } from '../wire/protocol.js';

const MAX_ARGS = 4096;
const MAX_ARGS_BYTES = 1024 * 1024;
const MIN_WINDOW = MAX_CHUNK_BYTES;
const MAX_WINDOW = 64 * 1024 * 1024;

function invalid(message: string): RpcError {
  return new RpcError(ERROR_CODES.invalidParams, `execute: ${message}`);
}

// Check and normalise `execute` params; throws RpcError invalidParams / invalidCommandName.
export function validateExecuteParams(params: unknown): ExecuteParams {
  if (!isRecord(params)) throw invalid('params must be an object `{command, args, stdin, timeoutMs, window}`');
  const command = validateCommandName(params.command);
  const args = params.args ?? [];
  if (!Array.isArray(args) || args.length > MAX_ARGS) throw invalid(`\`args\` must be an array of at most ${MAX_ARGS} strings`);
  let total = 0;
  for (const [index, arg] of args.entries()) {
    if (typeof arg !== 'string') throw invalid(`\`args[${index}]\` must be a string, got ${typeof arg}`);
    if (arg.includes('\0')) throw invalid(`\`args[${index}]\` contains a NUL byte, which no program can receive`);
    total += Buffer.byteLength(arg);
  }
  if (total > MAX_ARGS_BYTES) throw invalid(`the arguments total ${total} bytes, over the ${MAX_ARGS_BYTES}-byte limit`);
  const stdin = params.stdin ?? false;
  if (typeof stdin !== 'boolean') throw invalid('`stdin` must be a boolean');
  const timeoutMs = params.timeoutMs ?? 0;
  if (typeof timeoutMs !== 'number' || !Number.isSafeInteger(timeoutMs) || timeoutMs < 0) {
    throw invalid(`\`timeoutMs\` must be a non-negative integer (0 = none), got ${describeValue(timeoutMs)}`);
  }
  const window = params.window ?? MIN_WINDOW;
  if (typeof window !== 'number' || !Number.isSafeInteger(window) || window < MIN_WINDOW || window > MAX_WINDOW) {
    throw invalid(`\`window\` must be an integer from ${MIN_WINDOW} to ${MAX_WINDOW}, got ${describeValue(window)}`);
  }
  return { command, args: args as string[], stdin, timeoutMs, window };
}

const SIGNAL_NAME = /^SIG[A-Z0-9+-]{1,16}$/;
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

// Check the serving side's answer to `execute` and rebuild it field by field: the CLI's exit code comes
// from it, so `{"timedOut":"no"}` or `"x"` must fail the request (exit 255), not pass for an outcome.
export function validateExecuteResult(value: unknown): ExecuteResult {
  const bad = (what: string): RpcError => new RpcError(ERROR_CODES.internalError, `the other side answered \`execute\` with a malformed result: ${what}`);
  if (!isRecord(value)) throw bad(`expected an object, got ${describeValue(value)}`);
  const { exitCode, signal } = value;
  if (exitCode !== null && !(typeof exitCode === 'number' && Number.isSafeInteger(exitCode) && exitCode >= 0 && exitCode <= 255)) {
    throw bad(`\`exitCode\` must be null or an integer 0..255, got ${describeValue(exitCode)}`);
  }
  if (signal !== null && !(typeof signal === 'string' && SIGNAL_NAME.test(signal))) throw bad(`\`signal\` must be null or a signal name, got ${describeValue(signal)}`);
  if (exitCode === null && signal === null) throw bad('neither `exitCode` nor `signal` is set');
  for (const key of ['timedOut', 'isCanceled', 'outputTruncated'] as const) {
    if (typeof value[key] !== 'boolean') throw bad(`\`${key}\` must be a boolean, got ${describeValue(value[key])}`);
  }
  for (const key of ['durationMs', 'stdoutBytes', 'stderrBytes'] as const) {
    if (!isCount(value[key])) throw bad(`\`${key}\` must be a non-negative integer, got ${describeValue(value[key])}`);
  }
  return {
    exitCode,
    signal,
    timedOut: value.timedOut as boolean,
    isCanceled: value.isCanceled as boolean,
    durationMs: value.durationMs as number,
    stdoutBytes: value.stdoutBytes as number,
    stderrBytes: value.stderrBytes as number,
    outputTruncated: value.outputTruncated as boolean,
  };
}
