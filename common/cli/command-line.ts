// Split `--execute 'CMD ARGS'` the way a POSIX shell splits words, without running a shell: single
// quotes, double quotes (with \" \\ \$ \` escapes), backslash escapes. No expansion of any kind.
import { ConfigError } from '../wire/errors.js';

// Split a command line into words; throws ConfigError on an unterminated quote or trailing backslash.
export function splitCommandLine(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) throw unterminated(text, "'", i);
      word += text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw unterminated(text, '"', text.lastIndexOf('"'));
        const d = text[i]!;
        if (d === '"') break;
        if (d === '\\' && i + 1 < text.length && '"\\$`\n'.includes(text[i + 1]!)) {
          if (text[i + 1] !== '\n') word += text[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      i++;
    } else if (c === '\\') {
      if (i + 1 >= text.length) throw new ConfigError(`Cannot split \`${text}\`: it ends with a lone backslash. Quote it as '\\\\' to pass a backslash.`);
      if (text[i + 1] !== '\n') word += text[i + 1];
      i += 2;
    } else {
      word += c;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}

function unterminated(text: string, quote: string, at: number): ConfigError {
  return new ConfigError(`Cannot split \`${text}\`: the ${quote === "'" ? 'single' : 'double'} quote at position ${at + 1} is never closed.`);
}
