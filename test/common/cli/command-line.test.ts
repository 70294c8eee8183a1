import t from 'tap';
import { splitCommandLine } from '../../../common/cli/command-line.js';

t.test('splits like a POSIX shell, without expansion', async (t) => {
  t.same(splitCommandLine('uptime'), ['uptime']);
  t.same(splitCommandLine('  echo   a  b '), ['echo', 'a', 'b']);
  t.same(splitCommandLine(`echo 'two words' "and \\"more\\"" back\\ slash`), ['echo', 'two words', 'and "more"', 'back slash']);
  t.same(splitCommandLine(`echo '$HOME' "$HOME" * ~ $(reboot)`), ['echo', '$HOME', '$HOME', '*', '~', '$(reboot)'], 'nothing is expanded');
  t.same(splitCommandLine(`a '' ""`), ['a', '', ''], 'empty quoted words are words');
  t.same(splitCommandLine(`a"b"'c'd`), ['abcd'], 'adjacent pieces join');
  t.same(splitCommandLine(`"a\\b"`), ['a\\b'], 'a backslash before an ordinary character stays inside double quotes');
  t.same(splitCommandLine(''), []);
});

t.test('unterminated quotes and a trailing backslash are clear errors', async (t) => {
  t.throws(() => splitCommandLine(`echo 'oops`), { name: 'ConfigError', message: "Cannot split `echo 'oops`: the single quote at position 6 is never closed." });
  t.throws(() => splitCommandLine(`echo "oops`), /double quote at position 6 is never closed/);
  t.throws(() => splitCommandLine('echo \\'), /ends with a lone backslash/);
});
