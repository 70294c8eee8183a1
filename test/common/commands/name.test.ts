import t, { type Test } from 'tap';
import { LEFTOVER_SUFFIXES, MAX_COMMAND_NAME_LENGTH, isCommandFileName, validateCommandName } from '../../../common/commands/name.js';
import { RpcError } from '../../../common/wire/errors.js';
import { ERROR_CODES } from '../../../common/wire/protocol.js';

const RULE = 'Command names are file names in the command directories (letters, digits, `.`, `_`, `+`, `-`).';

// Run validateCommandName and return the RpcError it throws (fails the test when it does not throw one).
function catchNameError(t: Test, name: unknown): RpcError | undefined {
  try {
    validateCommandName(name);
  } catch (error) {
    if (error instanceof RpcError) return error;
    t.fail(`expected an RpcError for ${JSON.stringify(name)}, got ${String(error)}`);
    return undefined;
  }
  t.fail(`expected ${JSON.stringify(name)} to be refused`);
  return undefined;
}

t.test('accepted names are returned unchanged', async (t) => {
  const accepted = ['a', 'Z', '0', 'disk-usage', 'ip_addresses', 'v1.2', 'c++', 'x-', 'a.b.c', 'A'.repeat(MAX_COMMAND_NAME_LENGTH), 'bak', 'swp', 'orig'];
  for (const name of accepted) {
    t.equal(validateCommandName(name), name, `accepts ${name}`);
    t.ok(isCommandFileName(name), `isCommandFileName(${name})`);
  }
});

t.test('the exact message, code and data for a path traversal', async (t) => {
  const error = catchNameError(t, '../etc/passwd');
  t.equal(error?.code, ERROR_CODES.invalidCommandName);
  t.equal(
    error?.message,
    `Invalid command name \`../etc/passwd\`: names may not contain \`/\` or \`..\`. ${RULE}`,
  );
  t.same(error?.data, { name: '../etc/passwd' });
  t.same(error?.toJSON(), { code: ERROR_CODES.invalidCommandName, message: error?.message, data: { name: '../etc/passwd' } });
});

t.test('every refused class', async (t) => {
  const refused: Array<[string, string, RegExp]> = [
    ['empty', '', /may not be empty/],
    ['too long', 'a'.repeat(MAX_COMMAND_NAME_LENGTH + 1), /at most 128 characters, this one has 129/],
    ['slash', 'a/b', /may not contain `\/` or `\.\.`/],
    ['absolute', '/bin/sh', /may not contain `\/`/],
    ['dot dot inside', 'a..b', /may not contain `\/` or `\.\.`/],
    ['dot dot alone', '..', /may not contain/],
    ['NUL', 'ls\0x', /NUL bytes/],
    ['leading dot', '.hidden', /may not start with `\.` or `-`/],
    ['leading dash', '-rf', /may not start with `\.` or `-`/],
    ['emacs lock', '#foo#', /`#name#`/],
    ['space', 'a b', /may only contain letters, digits/],
    ['shell metacharacter', 'a;b', /may only contain/],
    ['non-ASCII', 'café', /may only contain/],
    ['newline', 'a\nb', /may only contain/],
    ['backtick', 'a`b', /may only contain/],
  ];
  for (const [label, name, pattern] of refused) {
    const error = catchNameError(t, name);
    t.match(error?.message, pattern, label);
    t.ok(error?.message.endsWith(RULE), `${label}: message ends with the rule`);
    t.notOk(isCommandFileName(name), `${label}: isCommandFileName is false`);
  }
  for (const suffix of LEFTOVER_SUFFIXES) {
    const name = `script${suffix}`;
    const error = catchNameError(t, name);
    t.match(error?.message, `names ending in \`${suffix}\` are editor or package-manager leftovers`, name);
    t.notOk(isCommandFileName(name), `${name}: isCommandFileName is false`);
  }
});

t.test('control characters and backticks are escaped in the message, long names cut', async (t) => {
  t.match(catchNameError(t, 'a\nb')?.message, 'Invalid command name `a\\u000ab`');
  t.match(catchNameError(t, 'a`b')?.message, 'Invalid command name `a\\u0060b`');
  const long = catchNameError(t, 'x'.repeat(500));
  t.match(long?.message, /`x{80}\.\.\. \(420 more characters\)`/);
  t.equal((long?.data as { name: string }).name.length, 256, 'data carries at most 256 characters');
});

t.test('non-strings are refused with their type', async (t) => {
  for (const [value, shown] of [[42, 'number'], [null, 'null'], [undefined, 'undefined'], [['a'], 'object']] as const) {
    const error = catchNameError(t, value);
    t.equal(error?.message, `Invalid command name: expected a string, got ${shown}. ${RULE}`);
    t.same(error?.data, { name: null });
  }
});
