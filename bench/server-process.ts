// Start the benchmark server as a separate node process (as a real agent is) and stop it again.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Workspace } from './workspace.js';

const SERVER_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bench-server.js');
const START_TIMEOUT_MS = 10_000;

/** A running server process. `stop()` is idempotent. */
export interface ServerProcess {
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

// Spawn `node dist/bench/bench-server.js` on the workspace; resolves once it listens. `nodeArgs` go to
// node itself (for instance `--cpu-prof`).
export async function startServerProcess(workspace: Workspace, nodeArgs: readonly string[] = []): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...nodeArgs, SERVER_SCRIPT, '--socket', workspace.socketPath, '--commands', workspace.commandsDir], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await waitForListening(child);
  let stopping: Promise<void> | undefined;
  return {
    pid: child.pid,
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

function waitForListening(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => fail(new Error(`the benchmark server did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
    };
    const fail = (error: Error): void => {
      cleanup();
      child.kill('SIGKILL');
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      if (output.includes('\n')) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null, signal: string | null): void =>
      fail(new Error(`the benchmark server exited before listening (code ${code}, signal ${signal}); see its stderr above`));
    child.stdout?.on('data', onData);
    child.once('exit', onExit);
  });
}
