// common/execute/: `execute` on the wire, above commands/: the server (runs a command for the peer), the
// client (asks the peer), the relay (a daemon passing a CLI's request on), flow windows, params checks.
//
// The execute server: serves `commands.list` and `execute` on a peer. Resolves the command in the command directories,
// runs it under the limits, streams its output with flow control and answers with its outcome.
import type { Readable } from 'node:stream';
import { bulkDataOf } from '../wire/bulk-line.js';
import { buildCommandEnv } from '../commands/env.js';
import { runCommand, type RunningCommand } from '../commands/runner.js';
import { CanceledError, ConfigError, RpcError, errorMessage } from '../wire/errors.js';
import { validateExecuteParams } from './params.js';
import { describeValue } from '../wire/json-limits.js';
import { AckBatch, FlowWindow } from './flow-window.js';
import { pumpReadable } from './read-pump.js';
import { RunSlots } from './run-slots.js';
import { sharedLauncherPool, type LauncherPool } from '../commands/launcher-pool.js';
import { silentLogger, type Logger } from '../base/logger.js';
import {
  ERROR_CODES,
  MAX_CHUNK_BYTES,
  METHODS,
  isRecord,
  isRequestId,
  type AgentInfo,
  type CommandInfo,
  type ExecuteParams,
  type ExecuteResult,
  type OutputStream,
  type RequestId,
  type Side,
} from '../wire/protocol.js';
import type { RequestContext, RpcPeer } from '../wire/rpc-peer.js';

/** Where commands come from (common/commands/registry.ts implements it). */
export interface CommandSource {
  list(): Promise<CommandInfo[]>;
  resolve(name: string): Promise<{ path: string; launchable?: boolean } | undefined>;
}

export interface ExecuteServerOptions {
  side: Side;
  commands: CommandSource;
  logger?: Logger;
  /** Commands running at once on this connection; more wait in a queue. Default 8. */
  maxConcurrent?: number;
  /** Requests waiting for a slot; more are answered `busy`. Default 1 024. */
  maxQueued?: number;
  /** Longest a command may run, whatever the caller asks; 0 = no cap. Default 1 hour. */
  maxTimeoutMs?: number;
  /** Bytes of stdout (and of stderr) sent per command; the rest is read and dropped, and the result says so. 0 = no cap. Default 1 GiB. */
  maxOutputBytes?: number;
  /** SIGTERM-to-SIGKILL delay. Default 5 000 ms. */
  killGraceMs?: number;
  /** Grace for leftovers holding the output open after the command exits. Default 1 000 ms. */
  exitDrainMs?: number;
  /**
   * Pre-forked launchers kept ready for this daemon's commands (common/commands/launcher-pool.ts): a command then
   * starts without a fork of the daemon. Shared by every connection of the process. 0 = always spawn
   * directly. Default 2.
   */
  prespawn?: number;
  /** The launchers to use when `prespawn` > 0, owned and closed by the caller (the daemon); default a process-wide pool never closed. */
  launchers?: LauncherPool;
  /** argv prefix applied to every command (resource limits, e.g. `prlimit ... --`). */
  wrapper?: readonly string[];
  /** Run commands as this user and group (`--run-as`), with `home` as HOME. */
  uid?: number;
  gid?: number;
  home?: string;
  /** NEGOTIATOR_CHANNEL for commands: the channel's name (`negotiator-host-to-guest.0`); default the peer's label. */
  channelName?: string;
  /** Extra environment for commands run for this peer (the host adds NEGOTIATOR_GUEST). */
  extraEnv?: (peer: AgentInfo) => Record<string, string>;
  /** Called once per finished execute (for the daemons' logs). */
  onExecuted?: (record: ExecutedRecord) => void;
}
type ResolvedOptions = Readonly<Required<Omit<ExecuteServerOptions, 'uid' | 'gid' | 'home' | 'channelName' | 'extraEnv' | 'onExecuted' | 'launchers'>>> &
  Pick<ExecuteServerOptions, 'uid' | 'gid' | 'home' | 'channelName' | 'extraEnv' | 'onExecuted' | 'launchers'>;

export interface ExecutedRecord {
  command: string;
  args: string[];
  requestId: RequestId;
  peer: AgentInfo;
  result?: ExecuteResult;
  error?: string;
}

// One log phrase for a finished execute: "`name` (2 args): exit 0 in 12 ms".
export function describeExecuted(record: ExecutedRecord): string {
  const result = record.result;
  const outcome = result
    ? `exit ${result.exitCode ?? result.signal}${result.timedOut ? ' (timed out)' : ''}${result.outputTruncated ? ' (output capped)' : ''} in ${result.durationMs} ms`
    : `failed: ${record.error}`;
  return `\`${record.command}\` (${record.args.length} args): ${outcome}`;
}

/** Handle to a registered service; `cancelAll` and `idle` serve the daemons' shutdown. */
export interface ExecuteServer {
  readonly running: number;
  readonly queued: number;
  /** Abort every queued and running execute. */
  cancelAll(reason: string): void;
  /** Resolves when nothing runs or waits (or after `timeoutMs`, with false). */
  idle(timeoutMs: number): Promise<boolean>;
}

interface OutputCounters {
  stdout: number;
  stderr: number;
  truncated: boolean;
}

interface Execution {
  params: ExecuteParams;
  output: FlowWindow;
  /** stdin chunks received before the command started. */
  earlyInput: Buffer[];
  earlyInputBytes: number;
  /** stdin written to the command, acknowledged in batches. */
  inputAcks: AckBatch;
  inputEnded: boolean;
  child?: RunningCommand;
  context: RequestContext;
  abort: (error: Error) => void;
}

function resolveOptions(options: ExecuteServerOptions): ResolvedOptions {
  const resolved = {
    ...options,
    logger: options.logger ?? silentLogger,
    maxConcurrent: options.maxConcurrent ?? 8,
    maxQueued: options.maxQueued ?? 1024,
    maxTimeoutMs: options.maxTimeoutMs ?? 3_600_000,
    maxOutputBytes: options.maxOutputBytes ?? 1024 ** 3,
    killGraceMs: options.killGraceMs ?? 5000,
    exitDrainMs: options.exitDrainMs ?? 1000,
    prespawn: options.prespawn ?? 2,
    wrapper: options.wrapper ?? [],
  };
  for (const key of ['maxConcurrent', 'maxQueued', 'maxTimeoutMs', 'maxOutputBytes', 'killGraceMs', 'exitDrainMs', 'prespawn'] as const) {
    const value = resolved[key];
    if (!Number.isSafeInteger(value) || value < 0 || (key === 'maxConcurrent' && value === 0)) {
      throw new ConfigError(`Expected the \`${key}\` option to be a ${key === 'maxConcurrent' ? 'positive' : 'non-negative'} integer, got \`${value}\``);
    }
  }
  return Object.freeze(resolved);
}

// Register `commands.list`, `execute` and the execute stream notifications on `peer`.
export function registerExecuteServer(peer: RpcPeer, options: ExecuteServerOptions): ExecuteServer {
  const config = resolveOptions(options);
  const log = config.logger;
  const launchers =
    config.prespawn > 0
      ? config.launchers ?? sharedLauncherPool({ size: config.prespawn, cwd: '/', ...(config.uid !== undefined ? { uid: config.uid } : {}), ...(config.gid !== undefined ? { gid: config.gid } : {}) })
      : undefined;
  launchers?.warm();
  const executions = new Map<RequestId, Execution>();
  const slots = new RunSlots(config.maxConcurrent, config.maxQueued);

  peer.handle(METHODS.listCommands, async () => ({ commands: await config.commands.list() }));

  peer.handle(METHODS.execute, async (rawParams, context) => {
    const params = validateExecuteParams(rawParams);
    const receivedAt = Date.now();
    const record: ExecutedRecord = { command: params.command, args: params.args, requestId: context.id, peer: context.peerInfo };
    const controller = new AbortController();
    const onContextAbort = (): void => controller.abort(context.signal.reason);
    context.signal.addEventListener('abort', onContextAbort, { once: true });
    const execution: Execution = {
      params,
      output: new FlowWindow(params.window),
      earlyInput: [],
      earlyInputBytes: 0,
      inputAcks: new AckBatch(params.window, (bytes) => void context.notify(METHODS.executeInputAck, { id: context.id, bytes })),
      inputEnded: !params.stdin,
      context,
      abort: (error) => controller.abort(error),
    };
    executions.set(context.id, execution);
    try {
      const resolved = await config.commands.resolve(params.command);
      if (!resolved) {
        const available = (await config.commands.list()).map((c) => c.name);
        throw new RpcError(
          ERROR_CODES.commandNotFound,
          `command \`${params.command}\` not found on the ${config.side}; available: ${available.join(', ') || '(none)'}`,
          { command: params.command, available },
        );
      }
      await slots.acquire(controller.signal);
      try {
        const result = await runExecution(execution, resolved, receivedAt, controller.signal);
        record.result = result;
        // Canceled (a `cancel`, a flow-control violation, shutdown): answered with that error, as
        // docs/protocol.md says, once the command's process group has ended.
        if (result.isCanceled) throw controller.signal.reason instanceof Error ? controller.signal.reason : new CanceledError('canceled');
        return result;
      } finally {
        slots.release();
      }
    } catch (error) {
      record.error = errorMessage(error);
      throw error;
    } finally {
      context.signal.removeEventListener('abort', onContextAbort);
      execution.output.close();
      executions.delete(context.id);
      config.onExecuted?.(record);
    }
  });

  async function runExecution(execution: Execution, command: { path: string; launchable?: boolean }, receivedAt: number, signal: AbortSignal): Promise<ExecuteResult> {
    const { params, context } = execution;
    // The caller's deadline counts from when the request arrived, time in the queue included.
    const requested = params.timeoutMs === 0 ? config.maxTimeoutMs : Math.min(params.timeoutMs, config.maxTimeoutMs || params.timeoutMs);
    const remaining = requested === 0 ? 0 : requested - (Date.now() - receivedAt);
    if (requested !== 0 && remaining <= 0) {
      throw new RpcError(ERROR_CODES.requestTimeout, `command \`${params.command}\` did not start within its ${requested} ms deadline (waiting for a free slot)`);
    }
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new CanceledError('canceled');
    const env = buildCommandEnv({
      side: config.side,
      command: params.command,
      requestId: context.id,
      peer: context.peerInfo,
      channel: config.channelName ?? peer.options.label,
      timeoutSeconds: Math.ceil(remaining / 1000),
      extra: config.extraEnv?.(context.peerInfo) ?? {},
      ...(config.home !== undefined ? { home: config.home } : {}),
    });
    const child = runCommand({
      file: command.path,
      launchable: command.launchable === true,
      args: params.args,
      env,
      stdin: params.stdin,
      timeoutMs: remaining,
      killGraceMs: config.killGraceMs,
      exitDrainMs: config.exitDrainMs,
      signal,
      wrapper: config.wrapper,
      ...(launchers ? { launchers } : {}),
      ...(config.uid !== undefined ? { uid: config.uid } : {}),
      ...(config.gid !== undefined ? { gid: config.gid } : {}),
    });
    execution.child = child;
    if (child.stdin) {
      for (const chunk of execution.earlyInput) writeInput(execution, chunk);
      execution.earlyInput = [];
      if (execution.inputEnded) child.stdin.end();
    }
    const counters: OutputCounters = { stdout: 0, stderr: 0, truncated: false };
    const pumps = Promise.all([
      pumpOutput(execution, child.stdout, 'stdout', counters),
      pumpOutput(execution, child.stderr, 'stderr', counters),
    ]);
    // Awaited below; this only keeps a spawn failure (outcome rejects first) from leaving it unhandled.
    pumps.catch(() => {});
    // Output still buffered when the command exits is delivered in full: the window closes only when
    // nobody will read any more (cancel, or the session ended).
    const closeWindow = (): void => execution.output.close();
    signal.addEventListener('abort', closeWindow, { once: true });
    let outcome;
    try {
      outcome = await child.outcome;
      await pumps;
    } finally {
      signal.removeEventListener('abort', closeWindow);
    }
    return {
      ...outcome,
      stdoutBytes: counters.stdout,
      stderrBytes: counters.stderr,
      outputTruncated: counters.truncated,
    };
  }

  // Forward one output stream to the caller, at most a window ahead of its acknowledgements.
  async function pumpOutput(execution: Execution, stream: Readable, name: OutputStream, counters: OutputCounters): Promise<void> {
    await pumpReadable(stream, async (chunk) => (await sendOutput(execution, chunk, name, counters), true));
  }

  // Send one read of output within the window; past the cap or once the window closed (request over),
  // it is dropped, and the pipe is still drained so that the command is not blocked.
  async function sendOutput(execution: Execution, data: Buffer, name: OutputStream, counters: OutputCounters): Promise<void> {
    let chunk = data;
    const cap = config.maxOutputBytes;
    if (cap > 0 && counters[name] + chunk.length > cap) {
      if (!counters.truncated) log.warn(`command \`${execution.params.command}\`: ${name} exceeded the ${cap}-byte cap (\`maxOutputBytes\`); the rest is dropped`);
      counters.truncated = true;
      chunk = chunk.subarray(0, Math.max(0, cap - counters[name]));
    }
    for (let offset = 0; offset < chunk.length; offset += execution.output.maxPiece) {
      const piece = chunk.subarray(offset, offset + execution.output.maxPiece);
      if (!(await execution.output.reserve(piece.length))) return;
      counters[name] += piece.length;
      await execution.context.sendBulk(METHODS.executeOutput, name, piece);
    }
  }

  function writeInput(execution: Execution, chunk: Buffer): void {
    const stdin = execution.child?.stdin;
    if (!stdin || stdin.destroyed) return;
    stdin.write(chunk, () => execution.inputAcks.add(chunk.length));
  }

  peer.onNotification(METHODS.executeOutputAck, (params) => {
    const execution = findExecution(params, 'execute.outputAck');
    if (!execution || !isRecord(params)) return;
    if (!execution.output.ack(params.bytes as number)) {
      log.warn(`${peer.options.label}: \`execute.outputAck\` of ${describeValue(params.bytes)} bytes for request ${String(execution.context.id)} is more than was sent; canceling it`);
      execution.abort(new RpcError(ERROR_CODES.flowControl, 'flow-control violation: acknowledged more output than was sent'));
    }
  });

  peer.onNotification(METHODS.executeInput, (params) => {
    const execution = findExecution(params, 'execute.input');
    if (!execution || !isRecord(params)) return;
    if (!execution.params.stdin || execution.inputEnded) {
      log.warn(`${peer.options.label}: \`execute.input\` for request ${String(execution.context.id)} that takes no (more) stdin; ignored`);
      return;
    }
    const chunk = bulkDataOf(params);
    if (chunk) {
      const child = execution.child;
      const buffered = child?.stdin ? child.stdin.writableLength : execution.earlyInputBytes;
      if (buffered + chunk.length > execution.params.window * 2) {
        execution.abort(new RpcError(ERROR_CODES.flowControl, `flow-control violation: more than ${execution.params.window * 2} stdin bytes sent without acknowledgement`));
        return;
      }
      if (child) writeInput(execution, chunk);
      else {
        execution.earlyInput.push(chunk);
        execution.earlyInputBytes += chunk.length;
      }
    }
    if (params.eof === true) {
      execution.inputEnded = true;
      execution.child?.stdin?.end();
    }
  });

  function findExecution(params: unknown, method: string): Execution | undefined {
    const id = isRecord(params) ? params.id : undefined;
    const execution = isRequestId(id) ? executions.get(id) : undefined;
    if (!execution) log.debug(`${peer.options.label}: \`${method}\` for unknown or finished request ${describeValue(id)}; ignored`);
    return execution;
  }

  return {
    get running() {
      return slots.running;
    },
    get queued() {
      return slots.queued;
    },
    cancelAll(reason) {
      for (const execution of executions.values()) execution.abort(new CanceledError(reason));
    },
    idle: (timeoutMs) => slots.idle(timeoutMs),
  };
}
