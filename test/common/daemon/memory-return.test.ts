// Giving memory back after a burst (common/daemon/memory-return.ts): a full collection only when RSS is
// over its factor of the settled size, and the settled size follows what a collection cannot free.
import t from 'tap';
import { startMemoryReturn } from '../../../common/daemon/memory-return.js';

const MiB = 1024 * 1024;

t.test('collects when RSS grew past the factor, and only then', async (t) => {
  let rss = 50 * MiB;
  let collections = 0;
  const memory = startMemoryReturn({ rss: () => rss, collect: () => ((collections += 1), (rss = 52 * MiB)), intervalMs: 3_600_000 });
  t.teardown(() => memory.stop());
  memory.check();
  t.equal(collections, 0, 'at its start size: nothing');
  rss = 59 * MiB;
  memory.check();
  t.equal(collections, 0, 'under 1.2x: nothing');
  rss = 90 * MiB;
  memory.check();
  t.equal(collections, 1, 'over 1.2x after a burst: one collection');
  t.equal(memory.settledBytes, 52 * MiB, 'what it could not free becomes the settled size');
  memory.check();
  t.equal(collections, 1, 'given back: no more');
});

t.test('a daemon that simply holds more is not collected again and again', async (t) => {
  let rss = 50 * MiB;
  let collections = 0;
  const memory = startMemoryReturn({ rss: () => rss, collect: () => (collections += 1), intervalMs: 3_600_000 });
  t.teardown(() => memory.stop());
  rss = 200 * MiB;
  memory.check();
  memory.check();
  memory.check();
  t.equal(collections, 1, 'one collection freed nothing: the new size is the settled one');
  t.equal(memory.settledBytes, 200 * MiB);
});

t.test('the real collection runs without --expose-gc, and the timer keeps no process alive', async (t) => {
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'this test process has no gc()');
  // Garbage with Buffers behind it, then a check with factor 0 (every check collects) through the engine's
  // own gc(), not a seam: the Buffers' memory is released.
  let garbage: Buffer[] | undefined = Array.from({ length: 64 }, () => Buffer.alloc(256 * 1024, 1));
  const held = process.memoryUsage().arrayBuffers;
  garbage = undefined;
  const memory = startMemoryReturn({ factor: 0, intervalMs: 3_600_000 });
  t.teardown(() => memory.stop());
  t.doesNotThrow(() => memory.check());
  t.ok(process.memoryUsage().arrayBuffers < held - 8 * MiB, `the garbage's buffers were freed (${(held / MiB).toFixed(1)} MiB before)`);
  t.equal(garbage, undefined);
  t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'and gc() did not leak into the global scope');
});
