// Benchmark helper processes (the benchmark server, the simulated guest fleet): a separate node process
// that prints one JSON line on stdout when ready, then answers one stdout line per stdin line, and exits
// when its stdin closes (the benchmark ended or died).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Workspace } from './workspace.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SERVER_SCRIPT = path.join(HERE, 'bench-server.js');
const START_TIMEOUT_MS = 10_000;

/** A running server process. `stop()` is idempotent. */
export interface ServerProcess {
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

/** A running helper process. Call `request` one at a time or concurrently: replies come in order. */
export interface BenchProcess extends ServerProcess {
  /** The ready line, parsed. */
  readonly ready: unknown;
  /** Send one JSON line; resolves with the next reply line, parsed. */
  request(message: unknown): Promise<unknown>;
}

export interface BenchProcessOptions {
  /** node options (`--cpu-prof ...`). */
  nodeArgs?: readonly string[];
  startTimeoutMs?: number;
}

// Spawn `node dist/bench/<script> ...args`; resolves once it printed its ready line.
export async function startBenchProcess(script: string, args: readonly string[], options: BenchProcessOptions = {}): Promise<BenchProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), path.join(HERE, script), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readLines(child);
  const startTimeoutMs = options.startTimeoutMs ?? START_TIMEOUT_MS;
  const ready = await lines.next(startTimeoutMs).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw new Error(`${script} did not start: ${error instanceof Error ? error.message : String(error)}`);
  });
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid,
    ready: JSON.parse(ready) as unknown,
    async request(message) {
      const reply = lines.next(0);
      child.stdin?.write(JSON.stringify(message) + '\n');
      return JSON.parse(await reply) as unknown;
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = once(child, 'exit');
        // Closing its stdin asks it to exit cleanly (a CPU profile is written on a clean exit).
        child.stdin?.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

// Spawn `node dist/bench/bench-server.js` on the workspace; resolves once it listens. `nodeArgs` go to
// node itself (for instance `--cpu-prof`); `prespawn` to the agent's command service.
export async function startServerProcess(workspace: Workspace, nodeArgs: readonly string[] = [], prespawn = 2): Promise<ServerProcess> {
  return startBenchProcess('bench-server.js', ['--socket', workspace.socketPath, '--commands', workspace.commandsDir, '--prespawn', String(prespawn)], { nodeArgs });
}

/** Lines of a child's stdout, taken in order; `next` rejects when the child exits first or after `timeoutMs` (0: no limit). */
interface LineQueue {
  next(timeoutMs: number): Promise<string>;
}

function readLines(child: ChildProcess): LineQueue {
  const lines: string[] = [];
  const waiters: Array<{ resolve: (line: string) => void; reject: (error: Error) => void }> = [];
  let held = '';
  let ended: Error | undefined;
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    held += chunk;
    for (let end = held.indexOf('\n'); end !== -1; end = held.indexOf('\n')) {
      const line = held.slice(0, end);
      held = held.slice(end + 1);
      const waiter = waiters.shift();
      if (waiter) waiter.resolve(line);
      else lines.push(line);
    }
  });
  child.once('exit', (code, signal) => {
    ended = new Error(`the process exited (code ${code}, signal ${signal}); see its stderr above`);
    for (const waiter of waiters.splice(0)) waiter.reject(ended);
  });
  return {
    next(timeoutMs) {
      const line = lines.shift();
      if (line !== undefined) return Promise.resolve(line);
      if (ended) return Promise.reject(ended);
      return new Promise((resolve, reject) => {
        const timer = timeoutMs > 0 ? setTimeout(() => fail(new Error(`no line within ${timeoutMs} ms`)), timeoutMs) : undefined;
        const waiter = {
          resolve: (value: string) => (clearTimeout(timer), resolve(value)),
          reject: (error: Error) => (clearTimeout(timer), reject(error)),
        };
        const fail = (error: Error): void => {
          const index = waiters.indexOf(waiter);
          if (index !== -1) waiters.splice(index, 1);
          reject(error);
        };
        waiters.push(waiter);
      });
    },
  };
}
