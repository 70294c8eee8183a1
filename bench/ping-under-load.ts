// Ping while a bulk transfer runs on the same connection (issue 12): sequential pings, first idle, then
// during a `head -c N` stream of stdout, on the one agent connection. What it shows: the write
// scheduler (common/wire/message-writer.ts) keeps a small request from waiting behind the bulk bytes.
import { performance } from 'node:perf_hooks';
import type { AgentClient } from './agent-client.js';
import { MIB, summarizeLatencies, type LatencySummary } from './stats.js';

export interface PingUnderLoad {
  transferMiB: number;
  transferMs: number;
  idle: LatencySummary;
  busy: LatencySummary;
}

async function timePing(agent: AgentClient): Promise<number> {
  const start = performance.now();
  await agent.ping();
  return performance.now() - start;
}

// Idle pings (count), then pings back to back for as long as one transfer of `mib` MiB lasts.
export async function measurePingUnderLoad(agent: AgentClient, mib: number, count: number): Promise<PingUnderLoad> {
  for (let i = 0; i < 200; i++) await agent.ping();
  const idle: number[] = [];
  for (let i = 0; i < count; i++) idle.push(await timePing(agent));
  const busy: number[] = [];
  let done = false;
  const start = performance.now();
  const transfer = agent.stream(mib * MIB).finally(() => (done = true));
  // The first pings would race the request itself; start once bytes flow.
  while (!done && busy.length === 0 && performance.now() - start < 50) await timePing(agent);
  while (!done) busy.push(await timePing(agent));
  await transfer;
  return { transferMiB: mib, transferMs: Math.round(performance.now() - start), idle: summarizeLatencies(idle), busy: summarizeLatencies(busy) };
}
