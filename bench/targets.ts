// The targets the figures are held against, as verdicts (measurements, never test assertions).
import { fixed, type TargetVerdict } from './report.js';
import { LATENCY_ROWS, type StreamRow } from './scenarios.js';
import type { PingUnderLoad } from './ping-under-load.js';
import type { LatencySummary } from './stats.js';

// Issue 12: a ping's p99 during a big transfer on the same connection within 10x its idle p99.
export function judgePingUnderLoad(result: PingUnderLoad | undefined): TargetVerdict[] {
  if (!result) return [];
  const ratio = result.busy.p99Us / result.idle.p99Us;
  return [
    {
      name: `ping p99 during a ${result.transferMiB} MiB transfer vs idle`,
      target: '<= 10x',
      measured: `${fixed(result.busy.p99Us)} vs ${fixed(result.idle.p99Us)} us = ${fixed(ratio, 2)}x (${result.busy.count} pings in ${result.transferMs} ms)`,
      met: ratio <= 10,
    },
  ];
}

// Ping within 2x of the bare echo; streamed output at least 50% of the bare socket copy.
export function judgeAgainstBaselines(latency: Record<string, LatencySummary>, streams: readonly StreamRow[]): TargetVerdict[] {
  const verdicts: TargetVerdict[] = [];
  const ping = latency[LATENCY_ROWS.ping];
  const echo = latency[LATENCY_ROWS.echo];
  if (ping && echo) {
    const ratio = ping.medianUs / echo.medianUs;
    verdicts.push({ name: 'ping median vs bare echo', target: '<= 2x', measured: `${fixed(ping.medianUs)} vs ${fixed(echo.medianUs)} us = ${fixed(ratio, 2)}x`, met: ratio <= 2 });
  }
  for (const row of streams) {
    const { rpc, source } = row.results;
    if (!rpc || !source) continue;
    const share = rpc.medianMiBps / source.medianMiBps;
    verdicts.push({
      name: `stream ${row.mib} MiB vs bare socket`,
      target: '>= 50%',
      measured: `${fixed(rpc.medianMiBps)} vs ${fixed(source.medianMiBps)} MiB/s = ${fixed(share * 100)}%`,
      met: share >= 0.5,
    });
  }
  return verdicts;
}

// Issue 7: execute within 1.5x of guest-exec + status; streamed output at least 10x guest-exec capture.
export function judgeAgainstQemuGa(latency: Record<string, LatencySummary>, streams: readonly StreamRow[]): TargetVerdict[] {
  const verdicts: TargetVerdict[] = [];
  const ping = latency[LATENCY_ROWS.ping];
  const guestPing = latency[LATENCY_ROWS.qgaPing];
  if (ping && guestPing) {
    const ratio = ping.medianUs / guestPing.medianUs;
    verdicts.push({ name: 'ping median vs guest-ping', target: '(reported)', measured: `${fixed(ping.medianUs)} vs ${fixed(guestPing.medianUs)} us = ${fixed(ratio, 2)}x`, met: true });
  }
  for (const [name, ours, theirs] of [
    ['execute true vs guest-exec+status', LATENCY_ROWS.execute, LATENCY_ROWS.qgaExec],
    ['execute true vs guest-exec+status, apart', LATENCY_ROWS.executePaused, LATENCY_ROWS.qgaExecPaused],
  ] as const) {
    const execute = latency[ours];
    const guestExec = latency[theirs];
    if (!execute || !guestExec) continue;
    const ratio = execute.medianUs / guestExec.medianUs;
    verdicts.push({ name, target: '<= 1.5x', measured: `${fixed(execute.medianUs)} vs ${fixed(guestExec.medianUs)} us = ${fixed(ratio, 2)}x`, met: ratio <= 1.5 });
  }
  for (const row of streams) {
    const { rpc, qga } = row.results;
    if (!rpc || !qga) continue;
    const ratio = rpc.medianMiBps / qga.medianMiBps;
    verdicts.push({
      name: `stream ${row.mib} MiB vs guest-exec capture`,
      target: '>= 10x',
      measured: `${fixed(rpc.medianMiBps)} vs ${fixed(qga.medianMiBps)} MiB/s = ${fixed(ratio)}x`,
      met: ratio >= 10,
    });
  }
  return verdicts;
}
