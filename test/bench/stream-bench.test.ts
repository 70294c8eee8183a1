// `bench:streams` runs end to end at a small size: the host side (bench/stream-host.ts) and the guest
// daemon in their own processes, the relays, every contender timed in both directions, byte-exact (the
// transfers throw on a wrong count, which ends the bench with "benchmark failed"). The figures themselves
// are not checked: speed is for the benchmark to report, not for a test to time.
import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH = fileURLToPath(new URL('../../bench/stream-bench.js', import.meta.url));

t.test('the stream benchmark times every contender both ways and reports its verdicts', async (t) => {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'negotiator-stream-bench-test-'));
  t.teardown(() => rmSync(cwd, { recursive: true, force: true }));
  const run = await execa(process.execPath, [BENCH, '--mib', '1', '--reps', '1'], { cwd, reject: false, timeout: 120_000, all: true });
  t.notMatch(run.all, /benchmark failed/);
  // Exit 1 is a missed target, which this machine may well report; anything else is a failure.
  t.ok(run.exitCode === 0 || run.exitCode === 1, `exit code ${run.exitCode}`);
  for (const direction of ['upload', 'download']) {
    for (const contender of ['bare socket copy', 'bare relay (2 processes, no protocol)', 'forwarded stream']) {
      t.match(run.all, new RegExp(`${direction}\\s+${contender.replace(/[()]/g, '\\$&')}\\s+\\d+\\.\\d`), `${direction}: ${contender}`);
    }
  }
  t.match(run.all, /forwarded stream, UNIX-socket loopback, upload\s+>= 50%/);
  const results = JSON.parse(readFileSync(path.join(cwd, 'bench', 'results', 'streams.json'), 'utf8')) as { figures: Record<string, Array<{ mibps: number; cpuMsPerMiB: number }>> };
  const forward = results.figures['forwarded stream/upload']![0]!;
  t.ok(forward.mibps > 0, 'a forwarded upload was timed');
  // Its CPU counts this process, the host side and the daemon: a number, not n/a.
  t.ok(Number.isFinite(forward.cpuMsPerMiB) && forward.cpuMsPerMiB > 0, `CPU ${forward.cpuMsPerMiB} ms/MiB`);
});
