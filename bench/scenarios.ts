// The measured scenarios of `npm run bench`: each negotiator figure, its bare baselines on the one
// benchmark server socket, and qemu-ga's equivalent when it runs, all interleaved.
import type { AgentClient } from './agent-client.js';
import { openCopyClient, openCpuProbe, openEchoClient, openSpawnClient, type Connection, type CpuProbe } from './baseline-client.js';
import { repsFor, type RunOptions } from './run-options.js';
import { sampleLatencies, sampleTransfers, type LatencySamples } from './sampling.js';
import type { QgaContenders } from './qemu-ga.js';
import { QGA_CAPTURE_LIMIT_BYTES } from './qemu-ga.js';
import { MODES } from './socket-modes.js';
import { MIB, summarizeLatencies, summarizeTransfers, type LatencySummary, type ThroughputSummary } from './stats.js';

// Idle time before each call of the "apart" execute figures: commands that come now and then, as from
// people and scripts, rather than back to back. Longer than the launcher pool's refill delay
// (common/commands/launcher-pool.ts), which is what these figures show.
const PAUSE_MS = 30;

/** Row names of the latency table. */
export const LATENCY_ROWS = {
  ping: 'rpc ping',
  echo: 'bare NDJSON echo',
  execute: 'rpc execute true',
  spawn: 'bare spawn true + reply',
  echoDuringExecute: 'bare NDJSON echo (during execute)',
  qgaPing: 'qemu-ga guest-ping',
  qgaExec: 'qemu-ga guest-exec true + status polls',
  executePaused: `rpc execute true, ${PAUSE_MS} ms apart`,
  spawnPaused: `bare spawn true + reply, ${PAUSE_MS} ms apart`,
  qgaExecPaused: `qemu-ga guest-exec true + polls, ${PAUSE_MS} ms apart`,
} as const;

/** Contenders of the stream table, in display order, with their labels. */
export const STREAM_CONTENDERS = {
  rpc: 'rpc execute head -c N',
  source: 'bare socket copy',
  childPipe: 'bare child stdout -> socket',
  qga: 'qemu-ga guest-exec capture-output',
} as const;
export type StreamContender = keyof typeof STREAM_CONTENDERS;

export interface StreamRow {
  mib: number;
  results: Partial<Record<StreamContender, ThroughputSummary>>;
}

export interface ScenarioContext {
  socketPath: string;
  agent: AgentClient;
  options: Readonly<RunOptions>;
  /** qemu-ga, when installed and wanted: its contenders join each scenario. */
  qga: QgaContenders | undefined;
}

function summarize(samples: LatencySamples): LatencySummary {
  return summarizeLatencies(samples.times, samples.cpuMs);
}

// CPU of the process serving a contender: qemu-ga's own for `qga`, the benchmark server's for the rest.
function cpuReader(probe: CpuProbe, qga: QgaContenders | undefined): (contender: string) => Promise<number> {
  return (contender) => (contender === 'qga' && qga ? qga.readCpuMs() : probe.readCpuMs());
}

function closeAll(connections: ReadonlyArray<Connection | undefined>): void {
  for (const connection of connections) connection?.close();
}

// Sequential pings over the agent connection vs the bare NDJSON echo.
export async function measurePing({ socketPath, agent, options, qga }: ScenarioContext): Promise<Record<string, LatencySummary>> {
  const echo = options.rpcOnly ? undefined : await openEchoClient(socketPath);
  const cpu = await openCpuProbe(socketPath);
  try {
    const samples = await sampleLatencies(
      { rpc: agent.ping, ...(echo ? { echo: echo.roundTrip } : {}), ...(qga ? { qga: qga.ping } : {}) },
      { warmup: 500, count: options.pings, rounds: 5, readServerCpuMs: cpuReader(cpu, qga) },
    );
    return {
      [LATENCY_ROWS.ping]: summarize(samples.rpc!),
      ...(samples.echo ? { [LATENCY_ROWS.echo]: summarize(samples.echo) } : {}),
      ...(samples.qga ? { [LATENCY_ROWS.qgaPing]: summarize(samples.qga) } : {}),
    };
  } finally {
    closeAll([echo, cpu]);
  }
}

// `execute true` vs a bare spawn of /bin/true answered on the socket (and the echo, for the same noise).
export async function measureExecute({ socketPath, agent, options, qga }: ScenarioContext): Promise<Record<string, LatencySummary>> {
  const echo = options.rpcOnly ? undefined : await openEchoClient(socketPath);
  const spawner = options.rpcOnly ? undefined : await openSpawnClient(socketPath);
  const cpu = await openCpuProbe(socketPath);
  try {
    const samples = await sampleLatencies(
      {
        rpc: agent.executeTrue,
        ...(spawner ? { spawn: spawner.roundTrip } : {}),
        ...(echo ? { echo: echo.roundTrip } : {}),
        ...(qga ? { qga: qga.execTrue } : {}),
      },
      { warmup: 20, count: options.execs, rounds: 5, readServerCpuMs: cpuReader(cpu, qga) },
    );
    const apart = await sampleLatencies(
      { rpc: agent.executeTrue, ...(spawner ? { spawn: spawner.roundTrip } : {}), ...(qga ? { qga: qga.execTrue } : {}) },
      { warmup: 0, count: Math.min(options.execs, 100), rounds: 5, pauseMs: PAUSE_MS, readServerCpuMs: cpuReader(cpu, qga) },
    );
    return {
      [LATENCY_ROWS.execute]: summarize(samples.rpc!),
      ...(samples.spawn ? { [LATENCY_ROWS.spawn]: summarize(samples.spawn) } : {}),
      ...(samples.echo ? { [LATENCY_ROWS.echoDuringExecute]: summarize(samples.echo) } : {}),
      ...(samples.qga ? { [LATENCY_ROWS.qgaExec]: summarize(samples.qga) } : {}),
      [LATENCY_ROWS.executePaused]: summarize(apart.rpc!),
      ...(apart.spawn ? { [LATENCY_ROWS.spawnPaused]: summarize(apart.spawn) } : {}),
      ...(apart.qga ? { [LATENCY_ROWS.qgaExecPaused]: summarize(apart.qga) } : {}),
    };
  } finally {
    closeAll([echo, spawner, cpu]);
  }
}

// Streamed stdout of `head -c N /dev/zero` vs the bare socket copy and the bare child-to-socket copy.
export async function measureStreams({ socketPath, agent, options, qga }: ScenarioContext): Promise<StreamRow[]> {
  const source = options.rpcOnly ? undefined : await openCopyClient(socketPath, MODES.source);
  const childPipe = options.rpcOnly ? undefined : await openCopyClient(socketPath, MODES.childPipe);
  const cpu = await openCpuProbe(socketPath);
  try {
    const contenders: Partial<Record<StreamContender, (bytes: number) => Promise<void>>> = {
      rpc: agent.stream,
      ...(source ? { source: source.fetch } : {}),
      ...(childPipe ? { childPipe: childPipe.fetch } : {}),
    };
    // Unmeasured: JIT, socket and pipe buffers.
    for (const fetch of Object.values(contenders)) for (let i = 0; i < 3; i++) await fetch(MIB);
    if (qga) await qga.capture(MIB);
    const rows: StreamRow[] = [];
    for (const mib of options.sizes) {
      const bytes = mib * MIB;
      // qemu-ga joins the sizes it can capture at all.
      const these = qga && bytes <= QGA_CAPTURE_LIMIT_BYTES ? { ...contenders, qga: qga.capture } : contenders;
      const samples = await sampleTransfers(these, { bytes, reps: repsFor(mib, options.reps), readServerCpuMs: cpuReader(cpu, qga) });
      const results: StreamRow['results'] = {};
      for (const name of Object.keys(these) as StreamContender[]) results[name] = summarizeTransfers(bytes, samples[name]!);
      rows.push({ mib, results });
    }
    return rows;
  } finally {
    closeAll([source, childPipe, cpu]);
  }
}
