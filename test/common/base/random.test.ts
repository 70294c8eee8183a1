// Nonces (common/base/random.ts): the asked number of bytes, as hex, different each time, with or
// without /dev/urandom.
import t from 'tap';
import type * as Random from '../../../common/base/random.js';

const moduleUrl = new URL('../../../common/base/random.js', import.meta.url).href;

t.test('randomHex gives the bytes asked for, fresh each call', async (t) => {
  const { randomHex } = (await import(moduleUrl)) as typeof Random;
  const values = new Set(Array.from({ length: 100 }, () => randomHex(16)));
  t.equal(values.size, 100, 'no repeats in 100 nonces');
  for (const value of values) t.match(value, /^[0-9a-f]{32}$/);
  t.match(randomHex(1), /^[0-9a-f]{2}$/);
});

t.test('without /dev/urandom (a bare chroot) node:crypto answers', async (t) => {
  const fs = await import('node:fs');
  const { randomHex } = await t.mockImport<typeof Random>(moduleUrl, {
    'node:fs': {
      ...fs,
      openSync: () => {
        throw Object.assign(new Error('ENOENT: no such file or directory'), { code: 'ENOENT' });
      },
    },
  });
  const a = randomHex(16);
  t.match(a, /^[0-9a-f]{32}$/);
  t.not(a, randomHex(16));
});
