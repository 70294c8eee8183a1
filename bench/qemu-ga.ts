// The QEMU guest agent measured with the same harness (issue 7): guest-ping round trips, guest-exec of
// /bin/true polled with guest-exec-status until it exited, and output captured by guest-exec.
// Standalone: `npm run bench:qga`; `npm run bench` includes it when qemu-ga is installed.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectQemuGa, findQemuGa, startQemuGa, type QgaClient } from './qga-client.js';
import { describeMachine, fixed, formatTable } from './report.js';
import { sampleLatencies } from './sampling.js';
import { MIB, medianOf, summarizeLatencies, summarizeTransfers, type LatencySummary, type ThroughputSummary } from './stats.js';

export interface QgaPlan {
  pings: number;
  execs: number;
  /** Output sizes captured by guest-exec, MiB (qemu-ga caps captured output at 16 MiB). */
  captureMiB: readonly number[];
  captureReps: number;
  /** Pause between guest-exec-status polls, ms; 0 polls back to back (the best case for latency). */
  pollIntervalMs: number;
}

export const DEFAULT_QGA_PLAN: Readonly<QgaPlan> = Object.freeze({ pings: 5000, execs: 200, captureMiB: [1, 16], captureReps: 5, pollIntervalMs: 0 });

export interface QgaResults {
  version: string;
  pollIntervalMs: number;
  ping: LatencySummary;
  /** guest-exec /bin/true, then guest-exec-status until `exited`. */
  execTrue: LatencySummary & { medianPolls: number };
  capture: ThroughputSummary[];
}
export type QgaReport = QgaResults | { skipped: string };

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

// Start qemu-ga, measure it, stop it. Skips (does not fail) when qemu-ga is not installed.
export async function runQemuGaBench(plan: QgaPlan = DEFAULT_QGA_PLAN): Promise<QgaReport> {
  const binary = findQemuGa();
  if (!binary) return { skipped: 'qemu-ga is not installed (Debian: apt-get install -y qemu-guest-agent)' };
  const version = execFileSync(binary, ['-V'], { encoding: 'utf8' }).split('\n')[0]?.trim() ?? 'unknown';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-bench-qga-'));
  const agent = await startQemuGa(binary, dir);
  const client = await connectQemuGa(agent.socketPath);
  try {
    const pings = await sampleLatencies({ qga: () => client.call('guest-ping').then(() => undefined) }, { warmup: Math.min(500, plan.pings), count: plan.pings, rounds: 1, readServerCpuMs: () => agent.readCpuMs() });
    const polls: number[] = [];
    const execs = await sampleLatencies(
      {
        qga: async () => {
          const { status, polls: count } = await execAndWait(client, '/bin/true', [], plan.pollIntervalMs);
          if (status.exitcode !== 0) throw new Error(`qemu-ga: /bin/true exited with ${JSON.stringify(status.exitcode)}`);
          polls.push(count);
        },
      },
      { warmup: Math.min(20, plan.execs), count: plan.execs, rounds: 1, readServerCpuMs: () => agent.readCpuMs() },
    );
    const capture: ThroughputSummary[] = [];
    for (const mib of plan.captureMiB) {
      const bytes = mib * MIB;
      const samples = [];
      for (let rep = 0; rep < plan.captureReps; rep++) {
        const cpuBefore = (await agent.readCpuMs()) + ownCpuMs();
        const start = performance.now();
        const { status } = await execAndWait(client, '/usr/bin/head', ['-c', String(bytes), '/dev/zero'], plan.pollIntervalMs);
        const received = Buffer.from(status['out-data'] ?? '', 'base64').length;
        const wallMs = performance.now() - start;
        if (received !== bytes || status['out-truncated']) {
          throw new Error(`qemu-ga captured ${received} of ${bytes} bytes${status['out-truncated'] ? ' (truncated at its output cap)' : ''}`);
        }
        samples.push({ wallMs, cpuMs: (await agent.readCpuMs()) + ownCpuMs() - cpuBefore });
      }
      capture.push(summarizeTransfers(bytes, samples));
    }
    return {
      version,
      pollIntervalMs: plan.pollIntervalMs,
      ping: summarizeLatencies(pings.qga!.times, pings.qga!.cpuMs),
      execTrue: { ...summarizeLatencies(execs.qga!.times, execs.qga!.cpuMs), medianPolls: medianOf(polls) },
      capture,
    };
  } finally {
    client.close();
    await agent.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

// Render the qemu-ga figures as text.
export function formatQgaReport(report: QgaReport): string {
  if ('skipped' in report) return `qemu-ga: skipped: ${report.skipped}`;
  const latency = formatTable(
    ['qemu-ga (' + report.version + ')', 'median us', 'p99 us', 'CPU us/call', 'n'],
    [
      ['guest-ping', fixed(report.ping.medianUs), fixed(report.ping.p99Us), fixed(report.ping.cpuUsPerCall ?? Number.NaN), String(report.ping.count)],
      [
        `guest-exec /bin/true + status polls (median ${report.execTrue.medianPolls})`,
        fixed(report.execTrue.medianUs),
        fixed(report.execTrue.p99Us),
        fixed(report.execTrue.cpuUsPerCall ?? Number.NaN),
        String(report.execTrue.count),
      ],
    ],
  );
  const capture = formatTable(
    ['guest-exec capture-output', 'MiB/s median', 'min..max', 'ms median', 'CPU ms/MiB', 'reps'],
    report.capture.map((c) => [
      `${c.bytes / MIB} MiB`,
      fixed(c.medianMiBps),
      `${fixed(c.minMiBps)}..${fixed(c.maxMiBps)}`,
      fixed(c.medianMs),
      fixed(c.cpuMsPerMiB, 2),
      String(c.reps),
    ]),
  );
  return `${latency}\n\n${capture}`;
}

async function main(): Promise<number> {
  const machine = describeMachine();
  console.log(`qemu-ga benchmark: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, load ${machine.loadavgStart}`);
  const report = await runQemuGaBench();
  console.log(formatQgaReport(report));
  return 0;
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
