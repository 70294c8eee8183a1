// Validation of `execute` params from an untrusted peer.
import { validateCommandName } from '../commands/name.js';
import { RpcError } from '../wire/errors.js';
import { ERROR_CODES, MAX_CHUNK_BYTES, isRecord, type ExecuteParams } from '../wire/protocol.js';

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
    throw invalid(`\`timeoutMs\` must be a non-negative integer (0 = none), got ${JSON.stringify(timeoutMs)}`);
  }
  const window = params.window ?? MIN_WINDOW;
  if (typeof window !== 'number' || !Number.isSafeInteger(window) || window < MIN_WINDOW || window > MAX_WINDOW) {
    throw invalid(`\`window\` must be an integer from ${MIN_WINDOW} to ${MAX_WINDOW}, got ${JSON.stringify(window)}`);
  }
  return { command, args: args as string[], stdin, timeoutMs, window };
}
