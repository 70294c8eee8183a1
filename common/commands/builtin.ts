// Where the built-in, read-only commands live: the `builtin-commands/` folder at the package root (shell
// scripts, not TypeScript, so they sit outside the source tree and are shipped as they are). The package
// root is the nearest folder above this module that holds a package.json: the repository or the
// installed package for `common/commands/builtin.ts` and `dist/common/commands/builtin.js`, the bundle's
// own folder for a bundle (examples/bundle/build-bundle.ts puts `builtin-commands/` beside it).
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder name of the built-in commands at the package root. */
export const BUILTIN_COMMANDS_FOLDER = 'builtin-commands';

let cached: string | undefined;
let locator: (() => string) | undefined;

/** For a build with no package folder on disk (the single executables): how to find the folder, called at first use. */
export function locateBuiltinCommandsWith(locate: () => string): void {
  locator = locate;
  cached = undefined;
}

// Return the absolute path of the built-in commands folder; throws when the package is missing it.
export function builtinCommandsDirectory(): string {
  if (cached !== undefined) return cached;
  if (locator !== undefined) return (cached = locator());
  const module = fileURLToPath(import.meta.url);
  let root = path.dirname(module);
  while (!existsSync(path.join(root, 'package.json'))) {
    const parent = path.dirname(root);
    if (parent === root) throw new Error(`No package.json found above \`${module}\`: reinstall the package.`);
    root = parent;
  }
  const directory = path.join(root, BUILTIN_COMMANDS_FOLDER);
  let isDirectory = false;
  try {
    isDirectory = statSync(directory).isDirectory();
  } catch {
    isDirectory = false;
  }
  if (!isDirectory) {
    throw new Error(
      `The built-in commands folder is missing: looked for \`${directory}\`. ` +
        `Reinstall the package (its \`files\` must include \`${BUILTIN_COMMANDS_FOLDER}/\`).`,
    );
  }
  cached = directory;
  return directory;
}
