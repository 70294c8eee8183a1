import t from 'tap';
import { LineReader, type LineProblem } from '../../../common/wire/line-reader.js';

function collect(maxLineBytes = 64) {
  const lines: string[] = [];
  const problems: LineProblem[] = [];
  const reader = new LineReader({ maxLineBytes, onLine: (l) => lines.push(l), onProblem: (p) => problems.push(p) });
  return { reader, lines, problems };
}

t.test('splits lines across and within chunks, skipping blank lines and a trailing CR', async (t) => {
  const { reader, lines } = collect();
  for (const chunk of ['{"a":', '1}\n\n{"b":2}\r\n{"c"', ':3}\n', '\n']) reader.push(Buffer.from(chunk));
  t.same(lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
});

t.test('a multi-byte character split between chunks decodes intact', async (t) => {
  const { reader, lines } = collect();
  const bytes = Buffer.from('"héllo ✓"\n');
  reader.push(bytes.subarray(0, 3));
  reader.push(bytes.subarray(3, 10));
  reader.push(bytes.subarray(10));
  t.same(lines, ['"héllo ✓"']);
});

t.test('a line over the limit is skipped and reported, whether it comes whole or in pieces', async (t) => {
  const { reader, lines, problems } = collect(64);
  reader.push(Buffer.from(`${'x'.repeat(100)}\nok1\n`));
  reader.push(Buffer.from('y'.repeat(40)));
  reader.push(Buffer.from('y'.repeat(40)));
  reader.push(Buffer.from('y'.repeat(40) + '\nok2\n'));
  t.same(lines, ['ok1', 'ok2']);
  t.same(problems.map((p) => [p.kind, p.bytes]), [['too-long', 100], ['too-long', 120]]);
  t.match(problems[0]!.preview, /^"x+"$/);
});

t.test('memory held stays bounded while an endless line streams in', async (t) => {
  const { reader, problems } = collect(1024);
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const before = process.memoryUsage().arrayBuffers;
  for (let i = 0; i < 512; i++) reader.push(chunk); // 32 MiB without a newline
  const grown = process.memoryUsage().arrayBuffers - before;
  t.ok(grown < 8 * 1024 * 1024, `held ${grown} bytes for a 32 MiB line`);
  reader.push(Buffer.from('\n'));
  t.equal(problems[0]?.bytes, 32 * 1024 * 1024);
});

t.test('invalid UTF-8 (the 0xFF resync byte of QEMU clients) is reported, and the next line is fine', async (t) => {
  const { reader, lines, problems } = collect();
  reader.push(Buffer.concat([Buffer.from([0xff]), Buffer.from('{"half":\n{"ok":1}\n')]));
  t.same(lines, ['{"ok":1}']);
  t.equal(problems[0]?.kind, 'invalid-utf8');
});

t.test('a partial line at the end is reported, a blank one is not', async (t) => {
  const a = collect();
  a.reader.push(Buffer.from('{"cut'));
  a.reader.end();
  t.same(a.problems.map((p) => p.kind), ['partial-at-end']);
  const b = collect();
  b.reader.push(Buffer.from('  '));
  b.reader.end();
  t.same(b.problems, []);
});

t.test('maxLineBytes is validated', async (t) => {
  t.throws(() => collect(10), { message: 'Expected `maxLineBytes` to be an integer >= 64, got `10`' });
});
