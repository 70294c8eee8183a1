// Why common/wire/line-reader.ts exists instead of ndjson: these are ndjson 2.0.0's measured behaviours.
// If a future ndjson passes the two requirements (bounded lines, one bad line reported without tearing
// the stream down), these assertions fail and the choice should be revisited.
import t from 'tap';
import ndjson from 'ndjson';
import { PassThrough } from 'node:stream';
import { once } from 'node:events';

async function feed(options: Record<string, unknown>, lines: string[]) {
  const source = new PassThrough();
  const parser = ndjson.parse(options);
  const rows: unknown[] = [];
  const errors: string[] = [];
  parser.on('data', (row: unknown) => rows.push(row));
  parser.on('error', (error: Error) => errors.push(error.message));
  source.pipe(parser);
  for (const line of lines) source.write(line);
  source.end();
  await Promise.race([once(parser, 'end'), new Promise((resolve) => setTimeout(resolve, 200))]);
  return { rows, errors };
}

t.test('strict mode: one bad line errors the parser and the rows after it are lost (the source is unpiped)', async (t) => {
  const { rows, errors } = await feed({}, ['{"a":1}\n', 'nope\n', '{"a":2}\n']);
  t.same(rows, [{ a: 1 }]);
  t.equal(errors.length, 1);
});

t.test('non-strict mode: a bad line vanishes without any report', async (t) => {
  const { rows, errors } = await feed({ strict: false }, ['{"a":1}\n', 'nope\n', '{"a":2}\n']);
  t.same(rows, [{ a: 1 }, { a: 2 }]);
  t.same(errors, []);
});

t.test('maxLength does not bound a line that arrives in one chunk', async (t) => {
  const long = `{"b":"${'x'.repeat(500)}"}\n`;
  const { rows } = await feed({ maxLength: 10, skipOverflow: true }, ['{"a":1}\n', long, '{"a":2}\n']);
  t.equal(rows.length, 3, 'the 500-byte line passed a 10-byte limit');
});
