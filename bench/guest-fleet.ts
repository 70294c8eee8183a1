// The simulated guests of the host-daemon benchmarks, spread over a few processes of their own
// (bench/fleet-guests.ts), as seen from the benchmark: start, add a guest, CPU time, stop.
import path from 'node:path';
import { readProcessCpuMs } from './proc-stats.js';
import { startBenchProcess, type BenchProcess } from './server-process.js';

/** Simulated guests; `stop()` is idempotent. */
export interface GuestFleet {
  readonly root: string;
  readonly pids: readonly number[];
  /** `NAME=DIR` for `negotiator-host --guest`. */
  spec(name: string): string;
  dir(name: string): string;
  /** Start a guest now; resolves with the wall clock (ms since the epoch) when its sockets were listening. */
  add(name: string): Promise<number>;
  /** CPU time of all fleet processes so far, ms. */
  readCpuMs(): number;
  stop(): Promise<void>;
}

// Start `names` in `processes` processes under `root`, every guest offering `commandsDir`.
export async function startGuestFleet(root: string, commandsDir: string, names: readonly string[], processes = 1): Promise<GuestFleet> {
  const count = Math.max(1, Math.min(processes, names.length || 1));
  const share = Math.ceil(names.length / count);
  const started: BenchProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const mine = names.slice(i * share, (i + 1) * share);
      started.push(await startBenchProcess('fleet-guests.js', ['--root', root, '--commands', commandsDir, '--names', mine.join(',')], { startTimeoutMs: 120_000 }));
    }
  } catch (error) {
    await Promise.all(started.map((p) => p.stop()));
    throw error;
  }
  const dir = (name: string): string => path.join(root, name);
  let stopping: Promise<void> | undefined;
  return {
    root,
    pids: started.map((p) => p.pid!),
    spec: (name) => `${name}=${dir(name)}`,
    dir,
    async add(name) {
      const reply = (await started[0]!.request({ add: name })) as { added?: string; atMs?: number };
      if (reply.added !== name || typeof reply.atMs !== 'number') throw new Error(`fleet-guests answered ${JSON.stringify(reply)} to adding ${name}`);
      return reply.atMs;
    },
    readCpuMs: () => started.reduce((sum, p) => sum + readProcessCpuMs(p.pid!), 0),
    stop() {
      stopping ??= Promise.all(started.map((p) => p.stop())).then(() => undefined);
      return stopping;
    },
  };
}
