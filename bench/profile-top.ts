// Print the top frames of a V8 CPU profile (`node --cpu-prof`): self time and inclusive time per function.
// Usage: node dist/bench/profile-top.js FILE.cpuprofile [--top N] [--filter TEXT]
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixed, formatTable } from './report.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}
interface FrameTimes {
  selfUs: number;
  totalUs: number;
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url ? path.basename(url.replace(/^file:\/\//, '')) : '';
  return `${functionName || '(anonymous)'}${file ? ` ${file}:${lineNumber + 1}` : ''}`;
}

// Self and inclusive time per frame name (a function counted once per sample even when recursive).
export function summarizeProfile(profile: CpuProfile): { frames: Map<string, FrameTimes>; totalUs: number } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const frames = new Map<string, FrameTimes>();
  const entry = (name: string): FrameTimes => {
    let times = frames.get(name);
    if (!times) frames.set(name, (times = { selfUs: 0, totalUs: 0 }));
    return times;
  };
  let totalUs = 0;
  profile.samples.forEach((id, index) => {
    // timeDeltas[i] is the time before sample i; attribute the next delta to this sample.
    const us = profile.timeDeltas[index + 1] ?? 0;
    totalUs += us;
    const leaf = byId.get(id);
    if (!leaf) return;
    entry(frameName(leaf)).selfUs += us;
    const seen = new Set<string>();
    for (let node: ProfileNode | undefined = leaf; node; node = byId.get(parent.get(node.id) ?? -1)) {
      const name = frameName(node);
      if (seen.has(name)) continue;
      seen.add(name);
      entry(name).totalUs += us;
    }
  });
  return { frames, totalUs };
}

// The self-time and inclusive-time tables of a profile, `top` rows each (inclusive rows filtered by `filter`).
export function formatProfileTop(profile: CpuProfile, top: number, filter?: string): string {
  const { frames, totalUs } = summarizeProfile(profile);
  const percent = (us: number): string => `${fixed((us / totalUs) * 100, 1)}%`;
  const rows = [...frames.entries()];
  return [
    `${fixed(totalUs / 1000, 0)} ms sampled`,
    '\nself time',
    formatTable(['frame', 'self ms', 'self'], rows.sort((a, b) => b[1].selfUs - a[1].selfUs).slice(0, top).map(([name, t]) => [name, fixed(t.selfUs / 1000), percent(t.selfUs)])),
    '\ninclusive time',
    formatTable(
      ['frame', 'total ms', 'total'],
      rows
        .filter(([name]) => !filter || name.includes(filter))
        .sort((a, b) => b[1].totalUs - a[1].totalUs)
        .slice(0, top)
        .map(([name, t]) => [name, fixed(t.totalUs / 1000), percent(t.totalUs)]),
    ),
  ].join('\n');
}

// Read a .cpuprofile file.
export function readCpuProfile(file: string): CpuProfile {
  return JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
}

function main(argv: string[]): number {
  const program = new Command()
    .name('profile-top')
    .argument('<file>', '.cpuprofile written by node --cpu-prof')
    .addOption(new Option('--top <n>', 'rows per table').default(25).argParser(Number))
    .addOption(new Option('--filter <text>', 'inclusive table: only frames whose name contains TEXT'))
    .parse(argv);
  const { top, filter } = program.opts<{ top: number; filter?: string }>();
  const file = program.args[0]!;
  console.log(`${file}: ${formatProfileTop(readCpuProfile(file), top, filter)}`);
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv);
