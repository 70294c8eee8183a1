import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { mapConcurrently } from '../../../common/base/concurrency.js';

t.test('at most N at a time, results in the order of the items', async (t) => {
  let running = 0;
  let most = 0;
  const results = await mapConcurrently([30, 5, 20, 1, 10, 2], 3, async (ms, index) => {
    most = Math.max(most, ++running);
    await sleep(ms);
    running -= 1;
    return `${index}:${ms}`;
  });
  t.same(results, ['0:30', '1:5', '2:20', '3:1', '4:10', '5:2']);
  t.equal(most, 3);
  t.same(await mapConcurrently([], 4, async () => 1), []);
});

t.test('a rejection rejects the call and starts no further item', async (t) => {
  const started: number[] = [];
  await t.rejects(mapConcurrently([1, 2, 3, 4, 5], 1, async (n) => {
    started.push(n);
    if (n === 2) throw new Error('two');
    return n;
  }), { message: 'two' });
  t.same(started, [1, 2]);
  await t.rejects(mapConcurrently([1], 0, async () => 1), RangeError);
});
