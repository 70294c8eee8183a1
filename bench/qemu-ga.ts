// The QEMU guest agent (issue 7) as benchmark contenders: guest-ping round trips, guest-exec of /bin/true
// polled with guest-exec-status until it exited, and output captured by guest-exec (capture-output).
// `npm run bench` interleaves these with the negotiator figures when qemu-ga is installed;
// `npm run bench:qga` (this file) measures qemu-ga alone.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { connectQemuGa, findQemuGa, startQemuGa, type QgaClient } from './qga-client.js';
import { describeMachine, fixed, formatTable } from './report.js';
import { sampleLatencies, sampleTransfers } from './sampling.js';
import { MIB, medianOf, summarizeLatencies, summarizeTransfers } from './stats.js';

/** qemu-ga keeps at most this much captured output per process (GUEST_EXEC_MAX_OUTPUT). */
export const QGA_CAPTURE_LIMIT_BYTES = 16 * MIB;

/** A qemu-ga started on a scratch socket, driven by one synchronised client. `close()` stops it (idempotent). */
export interface QgaContenders {
  version: string;
  /** Pause between guest-exec-status polls, ms; 0 polls back to back (the best case for latency). */
  pollIntervalMs: number;
  /** How many guest-exec-status polls each `execTrue` needed. */
  readonly polls: number[];
  ping(): Promise<void>;
  /** guest-exec /bin/true, then guest-exec-status until `exited`. */
  execTrue(): Promise<void>;
  /** guest-exec `head -c N /dev/zero` with capture-output, polled until exited, out-data decoded. */
  capture(bytes: number): Promise<void>;
  /** qemu-ga's own CPU time so far, ms. */
  readCpuMs(): Promise<number>;
  close(): Promise<void>;
}

interface ExecStatus {
  exited?: boolean;
  exitcode?: number;
  'out-data'?: string;
  'out-truncated'?: boolean;
}

// Run a program under guest-exec and poll until it exited; returns the final status and the poll count.
async function execAndWait(client: QgaClient, file: string, args: string[], pollIntervalMs: number): Promise<{ status: ExecStatus; polls: number }> {
  const started = (await client.call('guest-exec', { path: file, arg: args, 'capture-output': true })) as { pid?: number };
  for (let polls = 1; ; polls++) {
    const status = (await client.call('guest-exec-status', { pid: started.pid })) as ExecStatus;
    if (status.exited) return { status, polls };
    if (pollIntervalMs > 0) await sleep(pollIntervalMs);
  }
}

// Start qemu-ga and connect; `{skipped}` (not an error) when qemu-ga is not installed.
export async function openQemuGa(pollIntervalMs = 0): Promise<QgaContenders | { skipped: string }> {
  const binary = findQemuGa();
  if (!binary) return { skipped: 'qemu-ga is not installed (Debian: apt-get install -y qemu-guest-agent)' };
  const version = execFileSync(binary, ['-V'], { encoding: 'utf8' }).split('\n')[0]?.trim() ?? 'unknown';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-bench-qga-'));
  const agent = await startQemuGa(binary, dir).catch((error: unknown) => {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  });
  const client = await connectQemuGa(agent.socketPath);
  const polls: number[] = [];
  let closing: Promise<void> | undefined;
  return {
    version,
    pollIntervalMs,
    polls,
    async ping() {
      await client.call('guest-ping');
    },
    async execTrue() {
      const { status, polls: count } = await execAndWait(client, '/bin/true', [], pollIntervalMs);
      if (status.exitcode !== 0) throw new Error(`qemu-ga: /bin/true exited with ${JSON.stringify(status.exitcode)}`);
      polls.push(count);
    },
    async capture(bytes) {
      if (bytes > QGA_CAPTURE_LIMIT_BYTES) throw new RangeError(`qemu-ga captures at most ${QGA_CAPTURE_LIMIT_BYTES} bytes, asked for ${bytes}`);
      const { status } = await execAndWait(client, '/usr/bin/head', ['-c', String(bytes), '/dev/zero'], pollIntervalMs);
      const received = Buffer.from(status['out-data'] ?? '', 'base64').length;
      if (received !== bytes || status['out-truncated']) {
        throw new Error(`qemu-ga captured ${received} of ${bytes} bytes${status['out-truncated'] ? ' (truncated at its output cap)' : ''}`);
      }
    },
    readCpuMs: () => agent.readCpuMs(),
    close() {
      closing ??= (async () => {
        client.close();
        await agent.stop();
        rmSync(dir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}

async function main(): Promise<number> {
  const machine = describeMachine();
  console.log(`qemu-ga alone: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, 1-min load ${machine.loadavgStart}`);
  const qga = await openQemuGa();
  if ('skipped' in qga) {
    console.log(`qemu-ga: skipped: ${qga.skipped}`);
    return 0;
  }
  try {
    const cpu = { readServerCpuMs: () => qga.readCpuMs() };
    const ping = await sampleLatencies({ qga: qga.ping }, { warmup: 500, count: 5000, rounds: 1, ...cpu });
    const exec = await sampleLatencies({ qga: qga.execTrue }, { warmup: 20, count: 200, rounds: 1, ...cpu });
    const rows = [
      ['guest-ping', summarizeLatencies(ping.qga!.times, ping.qga!.cpuMs)],
      [`guest-exec /bin/true + status (median ${medianOf(qga.polls)} polls)`, summarizeLatencies(exec.qga!.times, exec.qga!.cpuMs)],
    ] as const;
    console.log(
      formatTable(
        [qga.version, 'median us', 'p99 us', 'CPU us/call', 'n'],
        rows.map(([name, s]) => [name, fixed(s.medianUs), fixed(s.p99Us), fixed(s.cpuUsPerCall ?? Number.NaN), String(s.count)]),
      ) + '\n',
    );
    const captures = [];
    for (const mib of [1, 16]) {
      const samples = await sampleTransfers({ qga: qga.capture }, { bytes: mib * MIB, reps: 5, ...cpu });
      captures.push(summarizeTransfers(mib * MIB, samples.qga!));
    }
    console.log(
      formatTable(
        ['guest-exec capture-output', 'MiB/s median', 'min..max', 'ms median', 'CPU ms/MiB', 'reps'],
        captures.map((c) => [`${c.bytes / MIB} MiB`, fixed(c.medianMiBps), `${fixed(c.minMiBps)}..${fixed(c.maxMiBps)}`, fixed(c.medianMs), fixed(c.cpuMsPerMiB, 2), String(c.reps)]),
      ),
    );
    return 0;
  } finally {
    await qga.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(`qemu-ga benchmark failed: ${error instanceof Error ? error.stack : String(error)}`);
      process.exit(1);
    },
  );
}
