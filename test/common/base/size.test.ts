import t from 'tap';
import { parseSize } from '../../../common/base/size.js';
import { parseBytes } from '../../../common/cli/options.js';
import { parseResourceLimit } from '../../../common/commands/resource-limits.js';

t.test('one size parser for --max-output, --max-line-bytes and --rlimit', async (t) => {
  t.same(['0', '4096', '64K', '64k', '2M', '1G', '1GiB', '3KB', ' 7 '].map(parseSize), [0, 4096, 64 * 1024, 64 * 1024, 2 * 1024 ** 2, 1024 ** 3, 1024 ** 3, 3 * 1024, 7]);
  for (const bad of ['', 'M', '-1', '1.5G', '1T', '12 M', '99999999999999999999G']) t.equal(parseSize(bad), undefined, bad);
  t.equal(parseBytes('64M'), 64 * 1024 ** 2);
  t.throws(() => parseBytes('lots'), { code: 'commander.invalidArgument', message: /expected a size like 4096, 64M or 1G/ });
  t.same(parseResourceLimit('as=2GiB'), { name: 'as', value: 2 * 1024 ** 3 }, 'the same units in --rlimit');
});
