// Summaries of benchmark samples: medians and tail percentiles of latencies, medians of throughputs.

/** A latency distribution, microseconds. */
export interface LatencySummary {
  count: number;
  medianUs: number;
  p99Us: number;
  minUs: number;
  maxUs: number;
  /** CPU time (user + system) of both node processes per call, us; absent when not measured. */
  cpuUsPerCall?: number;
}

/** Repeated transfers of one size. */
export interface ThroughputSummary {
  bytes: number;
  reps: number;
  medianMiBps: number;
  minMiBps: number;
  maxMiBps: number;
  /** Median wall time of one transfer, ms. */
  medianMs: number;
  /** CPU time (user + system) of both processes per MiB moved, ms; median over the reps. */
  cpuMsPerMiB: number;
}

/** One transfer: wall time and the CPU both processes spent on it. */
export interface TransferSample {
  wallMs: number;
  cpuMs: number;
}

export const MIB = 1024 * 1024;

// The value at rank ceil(q * n) of the sorted samples (nearest rank; q = 0.5 gives the lower median).
export function quantileOf(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1]!;
}

// The middle value (the mean of the two middle values for an even count).
export function medianOf(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

// Summarize round-trip times given in milliseconds (and the CPU all of them took, when measured).
export function summarizeLatencies(samplesMs: readonly number[], cpuMs?: number): LatencySummary {
  const sorted = samplesMs.map((ms) => ms * 1000).sort((a, b) => a - b);
  return {
    count: sorted.length,
    medianUs: round(medianOf(sorted)),
    p99Us: round(quantileOf(sorted, 0.99)),
    minUs: round(sorted[0] ?? Number.NaN),
    maxUs: round(sorted.at(-1) ?? Number.NaN),
    ...(cpuMs !== undefined && sorted.length > 0 ? { cpuUsPerCall: round((cpuMs * 1000) / sorted.length) } : {}),
  };
}

// Summarize repeated transfers of `bytes` bytes.
export function summarizeTransfers(bytes: number, samples: readonly TransferSample[]): ThroughputSummary {
  const rates = samples.map((s) => bytes / MIB / (s.wallMs / 1000));
  return {
    bytes,
    reps: samples.length,
    medianMiBps: round(medianOf(rates)),
    minMiBps: round(Math.min(...rates)),
    maxMiBps: round(Math.max(...rates)),
    medianMs: round(medianOf(samples.map((s) => s.wallMs))),
    cpuMsPerMiB: round(medianOf(samples.map((s) => s.cpuMs / (bytes / MIB))), 3),
  };
}

// Round to `digits` decimals for the reports.
export function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
