#!/usr/bin/env node
// `npm run bundle`: each CLI (dist/host/cli.js, dist/guest/cli.js) as one self-contained ES module with
// esbuild, runnable with a bare `node` where there is no node_modules (a guest with Node.js but no npm).
// Beside them go the two things common/ still reads from disk at run time (see README, Development):
//   builtin-commands/  the built-in commands, found by common/commands/builtin.ts at the package root;
//   package.json   the version, found by readPackageVersion() in common/wire/agent-info.ts, which the CLIs
//                  read at start-up (without it even --help fails).
// The output folder ignores itself in git (`.gitignore` with `*`). Usage: build-bundle.js [OUT_DIR]
import { build } from 'esbuild';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILTIN_COMMANDS_FOLDER } from '../../common/commands/builtin.js';

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The bundles `buildBundles` writes, by program name. */
export const BUNDLES = { 'negotiator-host': 'dist/host/cli.js', 'negotiator-guest': 'dist/guest/cli.js' } as const;

// esbuild turns commander (CommonJS) into code that calls `require` for Node's own modules; an ES module
// has none, so the bundle makes one.
const BANNER = "import { createRequire as negotiatorCreateRequire } from 'node:module';\nconst require = negotiatorCreateRequire(import.meta.url);";

// Write OUT_DIR/negotiator-host.mjs, OUT_DIR/negotiator-guest.mjs, OUT_DIR/builtin-commands/ and OUT_DIR/package.json
// from the built dist/ (run `npm run build` first); returns the bundle paths.
export async function buildBundles(outDir: string): Promise<string[]> {
  const manifest = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { name: string; version: string; engines?: unknown; license?: string };
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const outputs: string[] = [];
  for (const [program, entry] of Object.entries(BUNDLES)) {
    const outfile = path.join(outDir, `${program}.mjs`);
    await build({
      entryPoints: [path.join(PACKAGE_ROOT, entry)],
      outfile,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      banner: { js: BANNER },
      legalComments: 'inline',
      logLevel: 'warning',
    });
    outputs.push(outfile);
  }
  cpSync(path.join(PACKAGE_ROOT, BUILTIN_COMMANDS_FOLDER), path.join(outDir, BUILTIN_COMMANDS_FOLDER), { recursive: true });
  const bundleManifest = { name: manifest.name, version: manifest.version, private: true, type: 'module', engines: manifest.engines, license: manifest.license };
  writeFileSync(path.join(outDir, 'package.json'), `${JSON.stringify(bundleManifest, null, 2)}\n`);
  writeFileSync(path.join(outDir, '.gitignore'), '# Built by npm run bundle.\n*\n');
  return outputs;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const outDir = path.resolve(process.argv[2] ?? path.join(PACKAGE_ROOT, 'bundle'));
  const outputs = await buildBundles(outDir);
  for (const output of outputs) process.stdout.write(`${path.relative(process.cwd(), output) || output}\n`);
  process.stdout.write(`(with ${path.relative(process.cwd(), path.join(outDir, BUILTIN_COMMANDS_FOLDER))}/ and package.json: copy the whole folder)\n`);
}
