// Runs one command file: no shell, a clean environment, its own process group, and a deadline after
// which (or on abort) the whole group gets SIGTERM, then SIGKILL after a grace delay.
//
// node:child_process rather than execa on this path: execa's per-call machinery was a large share of an
// `execute true`, and the garbage it leaves grows the daemon's RSS, which fork() (libuv spawns by
// fork + exec) pays for on every later command (figures in docs/benchmarks.md, issue 7).
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { RpcError, errorMessage } from '../wire/errors.js';
import type { LauncherPool } from './launcher-pool.js';
import { setLongTimeout, type LongTimer } from '../base/long-timer.js';
import { ERROR_CODES } from '../wire/protocol.js';

/** The PATH every command gets, whatever the daemon's own environment. */
export const COMMAND_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface RunCommandOptions {
  file: string;
  args: string[];
  /** The complete environment (nothing is inherited). */
  env: Record<string, string>;
  /** Pipe stdin (true) or give the command /dev/null (false). */
  stdin: boolean;
  /** 0 = no deadline. */
  timeoutMs: number;
  /** Delay between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** After the command exits, how long processes it left behind may keep its output open. */
  exitDrainMs: number;
  signal: AbortSignal;
  cwd?: string;
  /** argv prefix (for instance `prlimit --nofile=1024 --`) resolved at start-up. */
  wrapper?: readonly string[];
  uid?: number;
  gid?: number;
  /** Pre-forked launchers (working directory `/`) to start it with when one is ready and `cwd` is not given (common/commands/launcher-pool.ts); else spawned here. */
  launchers?: LauncherPool;
  /** execve would start `file` with no shell's help (ResolvedCommand.launchable): only then may a launcher start it. */
  launchable?: boolean;
}

export interface CommandOutcome {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  isCanceled: boolean;
  durationMs: number;
}

/** A started command. Read `stdout` and `stderr` to the end; `outcome` settles after the exit. */
export interface RunningCommand {
  pid: number | undefined;
  stdout: Readable;
  stderr: Readable;
  stdin: Writable | null;
  outcome: Promise<CommandOutcome>;
}

// Spawn the command; spawn failures (not executable, bad interpreter) reject `outcome` with RpcError spawnFailed.
export function runCommand(options: RunCommandOptions): RunningCommand {
  const started = performance.now();
  const [file, ...prefixArgs] = options.wrapper && options.wrapper.length > 0 ? [...options.wrapper, options.file] : [options.file];
  const argv = [file!, ...prefixArgs, ...options.args];
  // The launchers run commands from `/`; any other cwd is spawned here.
  const launchers = options.cwd === undefined ? options.launchers : undefined;
  const subprocess = launchers?.launch(argv, options.env, options.stdin, options.launchable === true) ?? spawnDirect(argv, options);
  const stdout = subprocess.stdout!;
  const stderr = subprocess.stderr!;
  let timedOut = false;
  let isCanceled = false;
  let killTimer: LongTimer | undefined;
  let exited = false;

  const killGroup = (signal: NodeJS.Signals): void => {
    const pid = subprocess.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // The group is already gone.
    }
  };
  const terminate = (): void => {
    if (killTimer) return;
    killGroup('SIGTERM');
    killTimer = setLongTimeout(() => killGroup('SIGKILL'), options.killGraceMs).unref();
  };
  const deadline =
    options.timeoutMs > 0
      ? setLongTimeout(() => {
          timedOut = true;
          terminate();
        }, options.timeoutMs)
      : undefined;
  const onAbort = (): void => {
    isCanceled = true;
    terminate();
  };
  if (options.signal.aborted) onAbort();
  else options.signal.addEventListener('abort', onAbort, { once: true });

  // A command that exits while something it started still holds its stdout would otherwise keep the
  // request open forever: give leftovers `exitDrainMs`, then end the group.
  subprocess.on('exit', () => {
    exited = true;
    const drain = setTimeout(() => {
      if (!stdout.readableEnded || !stderr.readableEnded) terminate();
    }, options.exitDrainMs);
    drain.unref();
    stdout.once('close', () => clearTimeout(drain));
  });
  subprocess.stdin?.on('error', () => {
    // EPIPE: the command stopped reading its stdin; not an error of the request.
  });

  // A spawn failure emits 'error' (pid undefined), then 'close'; 'close' always ends it, after the exit
  // and once stdout and stderr are closed.
  let spawnFailure: NodeJS.ErrnoException | undefined;
  subprocess.on('error', (error: NodeJS.ErrnoException) => {
    if (subprocess.pid === undefined) spawnFailure = error;
  });
  const outcome = new Promise<CommandOutcome>((resolve, reject) => {
    subprocess.once('close', (exitCode: number | null, signal: NodeJS.Signals | null) => {
      deadline?.clear();
      options.signal.removeEventListener('abort', onAbort);
      if (killTimer && exited) killTimer.clear();
      if (spawnFailure) {
        reject(spawnError(options.file, spawnFailure));
        return;
      }
      resolve({
        exitCode,
        signal,
        timedOut,
        isCanceled: isCanceled && !timedOut,
        durationMs: Math.round(performance.now() - started),
      });
    });
  });
  return { pid: subprocess.pid, stdout, stderr, stdin: options.stdin ? subprocess.stdin : null, outcome };
}

// Some spawn failures throw at once instead of emitting 'error' (E2BIG: an argument over the kernel's
// 128 KiB per-string limit): they are the command's failure to start, answered `spawnFailed`.
function spawnDirect(argv: string[], options: RunCommandOptions): ChildProcess {
  try {
    return spawn(argv[0]!, argv.slice(1), {
      env: options.env,
      shell: false,
      cwd: options.cwd ?? '/',
      stdio: [options.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      // Own process group, so that a deadline or cancel reaches everything the command started.
      detached: true,
      ...(options.uid !== undefined ? { uid: options.uid } : {}),
      ...(options.gid !== undefined ? { gid: options.gid } : {}),
    });
  } catch (error) {
    const cause = error as NodeJS.ErrnoException;
    if (typeof cause.errno === 'number' || (cause.code !== undefined && /^E[A-Z0-9]+$/.test(cause.code))) throw spawnError(options.file, cause);
    throw error;
  }
}

function spawnError(file: string, cause: NodeJS.ErrnoException): RpcError {
  const hints: Record<string, string> = {
    ENOENT: 'the file or its interpreter (the #! line) does not exist',
    EACCES: 'permission denied: the file is not executable by the daemon user',
    ENOEXEC: 'not an executable format: add a #! line to the script',
    E2BIG: 'the arguments are too long',
  };
  const hint = (cause.code && hints[cause.code]) ?? errorMessage(cause);
  return new RpcError(ERROR_CODES.spawnFailed, `cannot run ${file}: ${hint} (${cause.code})`, { code: cause.code });
}

// The home directory commands get: the daemon user's.
export function commandHome(): string {
  try {
    return os.homedir();
  } catch {
    return '/';
  }
}
