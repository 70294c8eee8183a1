// pumpReadable: everything in order, memory bounded while the sender is slow, no pause per chunk while it
// keeps up, a stop that leaves the source alive, and the source's error.
import t from 'tap';
import { PassThrough } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { pumpReadable } from '../../../common/execute/read-pump.js';
import { MAX_CHUNK_BYTES } from '../../../common/wire/protocol.js';

// A source whose pauses are counted.
function countedSource(): { source: PassThrough; pauses: () => number } {
  const source = new PassThrough();
  let pauses = 0;
  const pause = source.pause.bind(source);
  source.pause = () => (pauses++, pause());
  return { source, pauses: () => pauses };
}

t.test('a sender that keeps up: every byte in order, the source never paused', async (t) => {
  const { source, pauses } = countedSource();
  const got: Buffer[] = [];
  const done = pumpReadable(source, async (chunk) => (got.push(chunk), true));
  for (let i = 0; i < 200; i++) {
    source.write(Buffer.alloc(4096, i));
    await delay(0);
  }
  source.end();
  t.equal(await done, true);
  t.same(Buffer.concat(got), Buffer.concat(Array.from({ length: 200 }, (_, i) => Buffer.alloc(4096, i))));
  t.equal(pauses(), 0, 'not stopped and restarted at every read');
});

t.test('a slow sender: the source is paused once a largest chunk waits, and what waits stays bounded', async (t) => {
  const { source, pauses } = countedSource();
  let release: (() => void) | undefined;
  let received = 0;
  const done = pumpReadable(source, async (chunk) => {
    received += chunk.length;
    await new Promise<void>((resolve) => (release = resolve));
    return true;
  });
  let written = 0;
  // Write until the source's own buffer refuses more: what the pump took from it is what it holds.
  while (source.write(Buffer.alloc(16 * 1024))) {
    written += 16 * 1024;
    await delay(0);
    if (written > 64 * MAX_CHUNK_BYTES) break;
  }
  written += 16 * 1024;
  t.ok(pauses() >= 1, 'paused while the sender is busy');
  t.ok(written - received - source.readableLength - source.writableLength <= MAX_CHUNK_BYTES + 16 * 1024, `the pump holds at most a largest chunk and one read (${written - received} bytes not yet sent)`);
  source.end();
  while (!(await Promise.race([done.then(() => true), delay(1).then(() => false)]))) release?.();
  t.equal(received, written, 'everything sent once the sender catches up');
});

t.test('reads that came while a send was busy go out joined, up to a largest chunk, in order', async (t) => {
  const source = new PassThrough();
  const sizes: number[] = [];
  const got: Buffer[] = [];
  let release: (() => void) | undefined;
  const done = pumpReadable(source, async (chunk) => {
    sizes.push(chunk.length);
    got.push(chunk);
    await new Promise<void>((resolve) => (release = resolve));
    return true;
  });
  const written = Array.from({ length: 100 }, (_, i) => Buffer.alloc(4096, i));
  source.write(written[0]);
  await delay(5);
  // The first read is being sent: the next 99 reads wait, and come out as few pieces.
  for (const chunk of written.slice(1)) {
    source.write(chunk);
    await delay(0);
  }
  source.end();
  while (!(await Promise.race([done.then(() => true), delay(1).then(() => false)]))) release?.();
  t.same(Buffer.concat(got), Buffer.concat(written), 'every byte, in order');
  t.equal(sizes[0], 4096, 'the first read as it came');
  t.ok(sizes.length <= 4, `99 reads of 4 KiB sent in ${sizes.length - 1} pieces`);
  t.ok(sizes.every((size) => size <= MAX_CHUNK_BYTES), 'none larger than a largest chunk');
});

t.test('send returning false stops reading without ending or destroying the source', async (t) => {
  const source = new PassThrough();
  const sent: number[] = [];
  const done = pumpReadable(source, async (chunk) => (sent.push(chunk.length), false));
  source.write(Buffer.alloc(10));
  t.equal(await done, false);
  source.write(Buffer.alloc(20));
  await delay(5);
  t.same(sent, [10], 'nothing sent after the stop');
  t.notOk(source.destroyed, 'the source is left alive');
});

t.test('the source\'s error rejects', async (t) => {
  const source = new PassThrough();
  const done = pumpReadable(source, async () => true);
  source.destroy(new Error('EIO'));
  await t.rejects(done, /EIO/);
});
