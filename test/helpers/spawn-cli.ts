// Spawn the built CLIs (dist/) as real processes, collecting output, with a timeout.
import { execa, type ResultPromise } from 'execa';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GUEST_CLI = path.join(DIST, 'guest', 'cli.js');
export const HOST_CLI = path.join(DIST, 'host', 'cli.js');

export interface CliRun {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
}

// Run a CLI to completion (killed after timeoutMs).
export async function runCli(cli: string, args: string[], options: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<CliRun> {
  const result = await execa(process.execPath, [cli, ...args], {
    reject: false,
    stripFinalNewline: false,
    timeout: options.timeoutMs ?? 30_000,
    ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' }),
    env: { ...options.env, NODE_OPTIONS: '' },
  });
  return { exitCode: result.exitCode, stdout: String(result.stdout), stderr: String(result.stderr) };
}

// Start a long-running CLI (a daemon); the caller kills it.
export function startCli(cli: string, args: string[], env: Record<string, string> = {}): ResultPromise {
  return execa(process.execPath, [cli, ...args], { reject: false, stdin: 'ignore', buffer: true, all: true, env: { ...env, NODE_OPTIONS: '' } });
}

// Resolve when `text` appears in the process's combined output (rejects after timeoutMs).
export function waitForOutput(child: ResultPromise, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no output matching ${pattern} within ${timeoutMs} ms; got:\n${seen}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString();
      const match = pattern.exec(seen);
      if (match) {
        cleanup();
        resolve(match[0]);
      }
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
}
