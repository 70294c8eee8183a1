// Pre-forked launchers: small `/bin/sh` processes, started ahead of time, each waiting to exec one
// command. Starting a command then costs a pipe write and an exec instead of a fork of the daemon.
//
// Why: libuv spawns by fork() + exec(), and fork() copies the page tables of the whole daemon, on the
// event loop (nodejs/node#14917), so a start costs more the bigger the daemon (a host daemon holding 500
// guests is big); through a launcher it does not (`npm run bench:spawn`, figures in docs/benchmarks.md,
// "What changed for `execute`"). A launcher is forked while the daemon is idle, and costs nothing while
// it waits (it sleeps in read(2)).
//
// The shell interprets nothing of the request. The request arrives on fd 3 as lines that `IFS= read -r`
// copies verbatim into variables; each environment entry goes through `export "$kv"` (names are checked
// here) and the argv through `set -- "$@" "$arg"`, then `exec "$@"`: no eval, no expansion of the values,
// no word splitting. What cannot travel as lines (a newline in an argument or a value), and files that
// the kernel would not start itself (missing, not executable, a `#!` interpreter that is missing, no
// `#!` line at all) are not launched here: `launch` returns undefined and the caller spawns them
// directly, which keeps the direct path's behaviour and its spawn errors (a shell would only print
// one and exit 126 or 127). The caller says which files the kernel would start (the command registry
// reads that with the description, asynchronously and once per version of the file): `launch` runs on
// the event loop and touches no file.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Writable } from 'node:stream';

/**
 * The launcher. fd 3 carries the request: a line "1" or "0" (pipe stdin, or give /dev/null), the number
 * of environment entries, the entries (NAME=VALUE), the number of argv words, the words. It starts with
 * an empty environment; `unset` drops what shells add on their own (dash: PWD; busybox: SHLVL, PATH).
 * EOF before a whole request (the daemon closed the pool or died) ends it quietly.
 */
const LAUNCHER_SCRIPT = [
  'exec 4<&0 0<&3 3<&-',
  'unset PWD OLDPWD SHLVL PATH',
  'IFS= read -r stdin || exit 0',
  'IFS= read -r n || exit 0',
  'while [ "$n" -gt 0 ]; do IFS= read -r kv || exit 0; export "$kv"; n=$((n - 1)); done',
  'IFS= read -r n || exit 0',
  'set --',
  'while [ "$n" -gt 0 ]; do IFS= read -r arg || exit 0; set -- "$@" "$arg"; n=$((n - 1)); done',
  'if [ "$stdin" = 1 ]; then exec 0<&4 4<&-; else exec 0</dev/null 4<&-; fi',
  'exec "$@"',
].join('\n');

/** `$0` of the launchers, as `ps` shows them until they exec. */
export const LAUNCHER_NAME = 'negotiator-launcher';

const SHELL = '/bin/sh';
// Quiet time (no command started or ended) after which used launchers are replaced.
const REFILL_AFTER_IDLE_MS = 10;
// Beyond these the request goes the direct way (the shell's `set --` loop is quadratic in the words).
const MAX_WORDS = 256;
const MAX_REQUEST_BYTES = 64 * 1024;
// Names a launcher may export: plain ones, none that the launcher itself uses.
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const LAUNCHER_VARIABLES = new Set(['IFS', 'stdin', 'n', 'kv', 'arg']);

export interface LauncherPoolOptions {
  /** Launchers kept ready. */
  size: number;
  /** Working directory of the commands. */
  cwd: string;
  uid?: number;
  gid?: number;
}

export interface LauncherPoolStats {
  /** Commands started through a launcher. */
  launched: number;
  /** Requests spawned directly: none ready, or a request a launcher cannot carry. */
  direct: number;
  /** Launchers ready now. */
  ready: number;
}

export class LauncherPool {
  readonly #options: LauncherPoolOptions;
  readonly #ready: ChildProcess[] = [];
  #launched = 0;
  #direct = 0;
  #disabled = false;
  #fillTimer: NodeJS.Timeout | undefined;

  constructor(options: LauncherPoolOptions) {
    this.#options = options;
  }

  /**
   * Start `argv` with exactly `env` through a ready launcher, in its own process group (the launcher's),
   * with stdout and stderr piped, and stdin piped (`stdin`) or /dev/null. Undefined: spawn it directly.
   * `launchable`: execve would start the command with no shell's help (ResolvedCommand.launchable); a
   * wrapper in front of it (argv[0], `prlimit`) was checked at start-up.
   */
  launch(argv: readonly string[], env: Readonly<Record<string, string>>, stdin: boolean, launchable: boolean): ChildProcess | undefined {
    const launcher = this.#disabled || !launchable ? undefined : this.#takeReady();
    const request = launcher ? encodeRequest(argv, env, stdin) : undefined;
    if (!launcher || request === undefined) {
      // A request it cannot carry leaves the launcher ready for the next one.
      if (launcher) this.#ready.unshift(launcher);
      this.#direct += 1;
      this.#scheduleFill();
      return undefined;
    }
    this.#launched += 1;
    this.#scheduleFill();
    launcher.once('close', () => this.#scheduleFill());
    setReferenced(launcher, true);
    controlOf(launcher).end(request);
    if (!stdin) launcher.stdin!.destroy();
    return launcher;
  }

  /** Start the launchers now rather than at the first command. */
  warm(): void {
    this.#scheduleFill(0);
  }

  stats(): LauncherPoolStats {
    return { launched: this.#launched, direct: this.#direct, ready: this.#ready.length };
  }

  /** End the ready launchers (they exit on EOF) and keep none from now on. */
  close(): void {
    this.#disabled = true;
    clearTimeout(this.#fillTimer);
    for (const launcher of this.#ready.splice(0)) controlOf(launcher).end();
  }

  #takeReady(): ChildProcess | undefined {
    for (let launcher = this.#ready.shift(); launcher; launcher = this.#ready.shift()) {
      if (launcher.exitCode === null && launcher.signalCode === null) return launcher;
    }
    return undefined;
  }

  // Refill once commands have stopped starting for a moment. A fork stalls the event loop (longer the
  // bigger the daemon, docs/benchmarks.md) and, made while commands keep coming, it would sit in front of the
  // next one: under a steady stream commands are spawned directly, as without a pool, and the launchers
  // are forked in the first pause.
  #scheduleFill(delayMs = REFILL_AFTER_IDLE_MS): void {
    if (this.#disabled) return;
    clearTimeout(this.#fillTimer);
    this.#fillTimer = setTimeout(() => {
      while (!this.#disabled && this.#ready.length < this.#options.size) {
        const launcher = this.#spawnLauncher();
        if (!launcher) return;
        this.#ready.push(launcher);
      }
    }, delayMs);
    this.#fillTimer.unref();
  }

  #spawnLauncher(): ChildProcess | undefined {
    const { cwd, uid, gid } = this.#options;
    const launcher = spawn(SHELL, ['-c', LAUNCHER_SCRIPT, LAUNCHER_NAME], {
      cwd,
      env: {},
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      detached: true,
      ...(uid !== undefined ? { uid } : {}),
      ...(gid !== undefined ? { gid } : {}),
    });
    // Errors of an idle launcher's pipes (it died) are seen through its exit status when taken.
    for (const stream of launcher.stdio) stream?.on('error', () => {});
    launcher.on('error', () => {
      // Cannot fork or no /bin/sh: every command goes the direct way, which reports its own errors.
      if (launcher.pid === undefined) this.close();
    });
    if (launcher.pid === undefined) {
      this.#disabled = true;
      return undefined;
    }
    setReferenced(launcher, false);
    launcher.once('exit', () => {
      const index = this.#ready.indexOf(launcher);
      if (index >= 0) this.#ready.splice(index, 1);
    });
    return launcher;
  }
}

// The pipe the request goes down (the launcher's fd 3).
function controlOf(launcher: ChildProcess): Writable {
  return launcher.stdio[3] as Writable;
}

// A waiting launcher must not keep the daemon (or a test) alive; a launched one must, like any child.
function setReferenced(child: ChildProcess, referenced: boolean): void {
  if (referenced) child.ref();
  else child.unref();
  for (const stream of child.stdio) {
    const socket = stream as unknown as { ref?: () => void; unref?: () => void } | null;
    if (referenced) socket?.ref?.();
    else socket?.unref?.();
  }
}

// The request lines, or undefined when a launcher cannot carry it faithfully.
function encodeRequest(argv: readonly string[], env: Readonly<Record<string, string>>, stdin: boolean): string | undefined {
  const file = argv[0];
  if (file === undefined || !path.isAbsolute(file) || argv.length > MAX_WORDS) return undefined;
  const entries = Object.entries(env);
  const lines = [stdin ? '1' : '0', String(entries.length)];
  for (const [name, value] of entries) {
    if (!ENV_NAME.test(name) || LAUNCHER_VARIABLES.has(name) || value.includes('\n') || value.includes('\0')) return undefined;
    lines.push(`${name}=${value}`);
  }
  lines.push(String(argv.length));
  for (const word of argv) {
    if (word.includes('\n') || word.includes('\0')) return undefined;
    lines.push(word);
  }
  const request = `${lines.join('\n')}\n`;
  return Buffer.byteLength(request) <= MAX_REQUEST_BYTES ? request : undefined;
}

const sharedPools = new Map<string, LauncherPool>();

/**
 * A process-wide pool of `size` launchers for commands run from `cwd` as `uid`:`gid`, for callers that own
 * no pool (a daemon creates and closes its own). Never closed: its waiting launchers end with the process.
 */
export function sharedLauncherPool(options: LauncherPoolOptions): LauncherPool {
  const key = `${options.size}\0${options.cwd}\0${options.uid ?? ''}\0${options.gid ?? ''}`;
  let pool = sharedPools.get(key);
  if (!pool) {
    pool = new LauncherPool(options);
    sharedPools.set(key, pool);
  }
  return pool;
}

// The pool a daemon owns for its commands (run from `/`), or undefined for `prespawn` 0. The daemon
// closes it when it stops.
export function createDaemonLauncherPool(limits: { prespawn?: number; uid?: number; gid?: number }): LauncherPool | undefined {
  const size = limits.prespawn ?? 2;
  if (size <= 0) return undefined;
  return new LauncherPool({ size, cwd: '/', ...(limits.uid !== undefined ? { uid: limits.uid } : {}), ...(limits.gid !== undefined ? { gid: limits.gid } : {}) });
}
