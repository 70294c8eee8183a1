// Where the built-in, read-only commands live: the `common/commands/` folder of the package. It is not
// compiled, so from dist/common/ it is found two levels up; from the source tree it sits next to this file.
import { statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

// Return the absolute path of the built-in commands folder; throws when the package is missing it.
export function builtinCommandsDirectory(): string {
  if (cached !== undefined) return cached;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const compiled = path.resolve(here, '../../common/commands');
  const source = path.resolve(here, 'commands');
  // Look at the likely place first, so an unrelated `common/commands` two levels up is never picked.
  const candidates = path.basename(path.dirname(here)) === 'dist' ? [compiled, source] : [source, compiled];
  const found = candidates.find((candidate) => {
    try {
      return statSync(candidate).isDirectory();
    } catch {
      return false;
    }
  });
  if (found === undefined) {
    throw new Error(
      `The built-in commands folder is missing: looked for \`${candidates.join('` and `')}\`. ` +
        'Reinstall the package (its `files` must include `common/commands/`).',
    );
  }
  cached = found;
  return found;
}
