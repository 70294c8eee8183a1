// `npm run bench:spawn`: what starting one command costs the daemon, spawned directly (libuv: fork() of
// the whole node process, then exec) or through a pre-forked launcher (common/commands/launcher-pool.ts), as the
// daemon's resident memory grows (ballast stands in for a host daemon holding many guests). Calls come
// back to back, or apart (a pause before each, longer than the pool's refill delay), interleaved in
// blocks. Wall time per command (runCommand to its outcome) and this process's CPU per command, which
// includes the pool's refill forks.
import { Command, Option } from 'commander';
import { setTimeout as delay } from 'node:timers/promises';
import { parseCount } from '../common/cli/options.js';
import { runCommand } from '../common/commands/runner.js';
import { LauncherPool } from '../common/commands/launcher-pool.js';
import { describeMachine, fixed, formatTable } from './report.js';
import { MIB, quantileOf } from './stats.js';

interface SpawnBenchOptions {
  count: number;
  ballast: number[];
  pause: number;
}

const ENV = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', HOME: '/', NEGOTIATOR_SIDE: 'guest', NEGOTIATOR_COMMAND: 'true' };

async function runTrue(launchers: LauncherPool | undefined): Promise<void> {
  const child = runCommand({
    file: '/bin/true',
    args: [],
    env: ENV,
    stdin: false,
    timeoutMs: 10_000,
    killGraceMs: 1000,
    exitDrainMs: 1000,
    signal: new AbortController().signal,
    ...(launchers ? { launchers } : {}),
  });
  child.stdout.resume();
  child.stderr.resume();
  await child.outcome;
}

interface Sample {
  times: number[];
  cpuMs: number;
}

async function measure(launchers: LauncherPool | undefined, pauseMs: number, count: number, sample: Sample): Promise<void> {
  const cpu = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    if (pauseMs > 0) await delay(pauseMs);
    const start = performance.now();
    await runTrue(launchers);
    sample.times.push(performance.now() - start);
  }
  const used = process.cpuUsage(cpu);
  sample.cpuMs += (used.user + used.system) / 1000;
}

async function main(): Promise<void> {
  const options = new Command()
    .name('bench:spawn')
    .description('start /bin/true directly vs through a pre-forked launcher, as the daemon\'s memory grows')
    .addOption(new Option('--count <n>', 'measured commands per contender and case').default(200).argParser(parseCount(false)))
    .addOption(new Option('--ballast <mib>', 'extra resident memory, comma-separated MiB').default([0, 80]).argParser((v) => v.split(',').map(parseCount(true))))
    .addOption(new Option('--pause <ms>', 'pause before each call of the "apart" case').default(30).argParser(parseCount(false)))
    .parse()
    .opts<SpawnBenchOptions>();
  const machine = describeMachine();
  process.stdout.write(`bench:spawn: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, ${machine.kernel}, 1-min load ${machine.loadavgStart}\n\n`);
  const rows: string[][] = [];
  const ballast: Buffer[] = [];
  for (const mib of options.ballast) {
    while (ballast.length < mib) ballast.push(Buffer.alloc(MIB, 1));
    const pool = new LauncherPool({ size: 2, cwd: '/' });
    pool.warm();
    for (let i = 0; i < 20; i++) await runTrue(i % 2 ? pool : undefined);
    for (const [label, pauseMs] of [['back to back', 0], [`${options.pause} ms apart`, options.pause]] as const) {
      const samples = { direct: { times: [], cpuMs: 0 } as Sample, launcher: { times: [], cpuMs: 0 } as Sample };
      const block = Math.ceil(options.count / 5);
      for (let round = 0; round < 5; round++) {
        const order = round % 2 ? (['launcher', 'direct'] as const) : (['direct', 'launcher'] as const);
        for (const name of order) await measure(name === 'launcher' ? pool : undefined, pauseMs, block, samples[name]);
      }
      for (const name of ['direct', 'launcher'] as const) {
        const { times, cpuMs } = samples[name];
        const sorted = [...times].sort((a, b) => a - b);
        rows.push([
          `${name === 'direct' ? 'direct spawn' : 'launcher pool'}, ${label}`,
          `${Math.round(process.memoryUsage().rss / MIB)}`,
          fixed(quantileOf(sorted, 0.5), 2),
          fixed(quantileOf(sorted, 0.99), 2),
          fixed(cpuMs / times.length, 2),
          String(times.length),
        ]);
      }
    }
    const stats = pool.stats();
    pool.close();
    rows.push([`  (pool: ${stats.launched} launched, ${stats.direct} spawned directly when none was ready)`, '', '', '', '', '']);
  }
  process.stdout.write(`${formatTable(['/bin/true', 'RSS MiB', 'median ms', 'p99 ms', 'CPU ms/cmd', 'n'], rows)}\n`);
  process.stdout.write(`\n1-min load at the end: ${describeMachine().loadavgStart}\n`);
}

await main();
