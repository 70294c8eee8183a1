// Giving memory back after a burst (common/daemon/memory-return.ts): a full collection only when RSS is
// over its factor of the start size, and ever rarer while collections cannot bring it back under.
import t from 'tap';
import { startMemoryReturn } from '../../../common/daemon/memory-return.js';

const MiB = 1024 * 1024;

t.test('collects when RSS grew past the factor, and only then', async (t) => {
  let rss = 50 * MiB;
  let collections = 0;
  const memory = startMemoryReturn({ rss: () => rss, collect: () => ((collections += 1), (rss = 52 * MiB)), intervalMs: 3_600_000 });
  t.teardown(() => memory.stop());
  t.equal(memory.baselineBytes, 50 * MiB);
  memory.check();
  t.equal(collections, 0, 'at its start size: nothing');
  rss = 59 * MiB;
  memory.check();
  t.equal(collections, 0, 'under 1.2x: nothing');
  rss = 90 * MiB;
  memory.check();
  t.equal(collections, 1, 'over 1.2x after a burst: one collection');
  memory.check();
  t.equal(collections, 1, 'given back: no more');
  rss = 90 * MiB;
  memory.check();
  t.equal(collections, 2, 'the next burst: collected again at once');
});

t.test('a daemon that simply holds more is collected ever more rarely, never given up on', async (t) => {
  let rss = 50 * MiB;
  const collectedAt: number[] = [];
  let check = 0;
  const memory = startMemoryReturn({ rss: () => rss, collect: () => collectedAt.push(check), intervalMs: 3_600_000 });
  t.teardown(() => memory.stop());
  rss = 200 * MiB;
  for (check = 1; check <= 300; check++) memory.check();
  t.same(collectedAt.slice(0, 6), [1, 3, 6, 11, 20, 37], 'then 1, 2, 4, 8, 16 ... checks skipped');
  t.ok(collectedAt.length <= 10, `${collectedAt.length} collections in 300 checks (2.5 h at 30 s)`);
  t.ok(collectedAt.at(-1)! > 200, 'still trying, every 64 checks at most');
  rss = 200 * MiB;
  const before = collectedAt.length;
  check = 1000;
  rss = 50 * MiB;
  for (let i = 0; i < 65; i++) memory.check();
  rss = 200 * MiB;
  for (let i = 0; i < 2; i++) memory.check();
  t.ok(collectedAt.length > before, 'a check under the mark ends the backoff');
});

t.test('the real collection runs without --expose-gc, and the timer keeps no process alive', async (t) => {
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'this test process has no gc()');
  // Garbage, then a check with factor 0 (every check collects) through the engine's own gc(), not a seam.
  // Only a full collection clears a WeakRef, and only once the job that made it is over.
  let garbage: { buffers: Buffer[] } | undefined = { buffers: Array.from({ length: 4 }, () => Buffer.alloc(64 * 1024, 1)) };
  const ref = new WeakRef(garbage);
  garbage = undefined;
  await new Promise((resolve) => setImmediate(resolve));
  const memory = startMemoryReturn({ factor: 0, intervalMs: 3_600_000 });
  t.teardown(() => memory.stop());
  t.doesNotThrow(() => memory.check());
  t.equal(ref.deref(), undefined, 'the garbage was collected by the check');
  t.equal(garbage, undefined);
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'and gc() did not leak into the global scope');
});
