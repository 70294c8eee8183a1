// One run of a program as a user's shell would see it: wall time from spawn to its exit with its output
// read, its own CPU time, and (optionally, in a separate run) its peak resident memory via /usr/bin/time.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readReapedChildrenCpuMs } from './proc-stats.js';

export const TIME_BINARY = '/usr/bin/time';

export interface TimedRun {
  /** Wall clock (ms since the epoch, high resolution) just before the spawn. */
  startEpochMs: number;
  wallMs: number;
  /** User + system CPU of the program (10 ms resolution per run; sums over many runs are exact). */
  cpuMs: number;
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

export interface RunSpec {
  file: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
}

// Run to completion with stdin from /dev/null; never rejects for a non-zero exit.
export function runTimed(spec: RunSpec): Promise<TimedRun> {
  return new Promise((resolve, reject) => {
    const cpuBefore = readReapedChildrenCpuMs();
    const start = performance.now();
    const child = spawn(spec.file, [...spec.args], { stdio: ['ignore', 'pipe', 'pipe'], env: spec.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (exitCode) => {
      const wallMs = performance.now() - start;
      resolve({ startEpochMs: performance.timeOrigin + start, wallMs, cpuMs: readReapedChildrenCpuMs() - cpuBefore, exitCode, stdout, stderr });
    });
  });
}

// Peak resident set of one run, KiB, from `/usr/bin/time -f %M` (GNU time: getrusage's ru_maxrss).
export async function measurePeakRssKiB(spec: RunSpec): Promise<number> {
  if (!existsSync(TIME_BINARY)) throw new Error(`${TIME_BINARY} is missing (Debian: apt-get install -y time)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-bench-time-'));
  try {
    const output = path.join(dir, 'time.out');
    const run = await runTimed({ ...spec, file: TIME_BINARY, args: ['-f', '%M', '-o', output, spec.file, ...spec.args] });
    if (run.exitCode !== 0) throw new Error(`${spec.file} ${spec.args.join(' ')} exited with ${run.exitCode}: ${run.stderr.trim()}`);
    const kib = Number(readFileSync(output, 'utf8').trim().split('\n').at(-1));
    if (!Number.isFinite(kib)) throw new Error(`${TIME_BINARY} wrote no %M figure`);
    return kib;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
