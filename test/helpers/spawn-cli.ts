// Spawn the built CLIs (dist/) as real processes, collecting output, with a timeout.
import { execa, type ResultPromise } from 'execa';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GUEST_CLI = path.join(DIST, 'guest', 'cli.js');
export const HOST_CLI = path.join(DIST, 'host', 'cli.js');
/** The commands npm installs: sh launchers that start the CLIs above with the `node` on PATH (tests run the CLIs directly). */
export const LAUNCHERS = { host: path.join(DIST, '..', 'bin', 'negotiator-host'), guest: path.join(DIST, '..', 'bin', 'negotiator-guest') } as const;

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

const outputs = new WeakMap<ResultPromise, { text: string; listeners: Set<() => void> }>();

// Start a long-running CLI (a daemon); the caller kills it. Its output is kept for waitForOutput.
export function startCli(cli: string, args: string[], env: Record<string, string> = {}): ResultPromise {
  const child = execa(process.execPath, [cli, ...args], { reject: false, stdin: 'ignore', buffer: true, all: true, env: { ...env, NODE_OPTIONS: '' } });
  const record = { text: '', listeners: new Set<() => void>() };
  outputs.set(child, record);
  child.all?.on('data', (chunk: Buffer) => {
    record.text += chunk.toString();
    for (const listener of record.listeners) listener();
  });
  return child;
}

// How much output the child has produced so far (pass it to waitForOutput to wait for newer output).
export function outputMark(child: ResultPromise): number {
  return outputs.get(child)?.text.length ?? 0;
}

// The child's output after `since` (a mark from outputMark).
export function outputSince(child: ResultPromise, since: number): string {
  return outputs.get(child)?.text.slice(since) ?? '';
}

// Resolve when `pattern` appears in the child's output after `since` (rejects after timeoutMs).
export function waitForOutput(child: ResultPromise, pattern: RegExp, timeoutMs = 10_000, since = 0): Promise<string> {
  const record = outputs.get(child);
  if (!record) return Promise.reject(new Error('waitForOutput needs a child started with startCli'));
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const match = pattern.exec(record.text.slice(since));
      if (match) {
        cleanup();
        resolve(match[0]);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no output matching ${pattern} within ${timeoutMs} ms; got:\n${record.text.slice(since)}`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      record.listeners.delete(check);
    };
    record.listeners.add(check);
    check();
  });
}
