// Measurement loops. Contenders are interleaved (in rounds, with the order rotated) so that load from
// other processes on a shared machine falls on all of them alike rather than on whichever ran last.
import { setTimeout as delay } from 'node:timers/promises';
import type { TransferSample } from './stats.js';

export interface LatencyPlan {
  /** Unmeasured calls of each contender first (JIT, caches, socket buffers). */
  warmup: number;
  /** Measured calls of each contender. */
  count: number;
  /** The measured calls are split into this many interleaved blocks. */
  rounds: number;
  /** CPU time so far of the process serving `contender`, ms; when given, CPU per call is measured per block. */
  readServerCpuMs?: (contender: string) => Promise<number>;
  /** Idle time before each measured call, outside the timing (calls that come now and then, not back to back). */
  pauseMs?: number;
}

/** Round-trip times (ms) of one contender, and the CPU (client + server, ms) its measured calls took. */
export interface LatencySamples {
  times: number[];
  cpuMs: number | undefined;
}

// Rotate `items` left by `by` places.
function rotate<T>(items: readonly T[], by: number): T[] {
  const shift = by % Math.max(1, items.length);
  return [...items.slice(shift), ...items.slice(0, shift)];
}

// Time sequential calls of each contender, per contender.
export async function sampleLatencies(contenders: Record<string, () => Promise<void>>, plan: LatencyPlan): Promise<Record<string, LatencySamples>> {
  const names = Object.keys(contenders);
  const samples: Record<string, LatencySamples> = Object.fromEntries(
    names.map((name) => [name, { times: [], cpuMs: plan.readServerCpuMs ? 0 : undefined }]),
  );
  for (const name of names) for (let i = 0; i < plan.warmup; i++) await contenders[name]!();
  const perRound = Math.ceil(plan.count / plan.rounds);
  for (let round = 0; round < plan.rounds; round++) {
    for (const name of rotate(names, round)) {
      const call = contenders[name]!;
      const sample = samples[name]!;
      const n = Math.min(perRound, plan.count - sample.times.length);
      const cpuBefore = plan.readServerCpuMs ? (await plan.readServerCpuMs(name)) + ownCpuMs() : 0;
      for (let i = 0; i < n; i++) {
        if (plan.pauseMs) await delay(plan.pauseMs);
        const start = performance.now();
        await call();
        sample.times.push(performance.now() - start);
      }
      if (plan.readServerCpuMs) sample.cpuMs! += (await plan.readServerCpuMs(name)) + ownCpuMs() - cpuBefore;
    }
  }
  return samples;
}

export interface TransferPlan {
  bytes: number;
  reps: number;
  /** CPU time so far of the process serving `contender`, ms (this process's own is read locally). */
  readServerCpuMs: (contender: string) => Promise<number>;
}

function ownCpuMs(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

// Time `reps` transfers of `bytes` by each contender, interleaved; wall and CPU time per transfer.
export async function sampleTransfers(contenders: Record<string, (bytes: number) => Promise<void>>, plan: TransferPlan): Promise<Record<string, TransferSample[]>> {
  const names = Object.keys(contenders);
  const samples: Record<string, TransferSample[]> = Object.fromEntries(names.map((name) => [name, []]));
  for (let rep = 0; rep < plan.reps; rep++) {
    for (const name of rotate(names, rep)) {
      const serverBefore = await plan.readServerCpuMs(name);
      const clientBefore = ownCpuMs();
      const start = performance.now();
      await contenders[name]!(plan.bytes);
      const wallMs = performance.now() - start;
      const cpuMs = ownCpuMs() - clientBefore + (await plan.readServerCpuMs(name)) - serverBefore;
      samples[name]!.push({ wallMs, cpuMs });
    }
  }
  return samples;
}
