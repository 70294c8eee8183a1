// Single executables (Node's single executable applications): each CLI bundled by esbuild into one
// CommonJS script (Node 24 runs no ES module as the main script of an executable), turned into a
// preparation blob by the pinned Node (packaging/node-runtime.ts), and injected with postject into a copy
// of that Node's binary for each architecture. The built-in commands and the version go inside (assets,
// esbuild `define`), so the result needs nothing on the machine but glibc and libstdc++'s runtime.
// Hazards: the blob must come from the same Node version as the binary it goes into; a V8 code cache
// made on x64 is refused by arm64 (with a warning at every start), so only a blob for the builder's own
// architecture carries one. Stripping the symbols (18 MB) happens before the injection.
import { build, type Plugin } from 'esbuild';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { BUILTIN_COMMANDS_FOLDER } from '../common/commands/builtin.js';
import type { BundledPackage } from './deb.js';
import { type Arch, pinnedNode } from './node-runtime.js';
import { BUILTIN_ASSET_PREFIX, BUILTINS_MANIFEST_ASSET, type BuiltinsManifest } from './sea-builtins.js';

const run = promisify(execFile);

/** The programs, by name: their entry in dist/ (compiled from packaging/sea-*.ts). */
export const PROGRAMS = { 'negotiator-host': 'dist/packaging/sea-host.js', 'negotiator-guest': 'dist/packaging/sea-guest.js' } as const;
export type Program = keyof typeof PROGRAMS;

// The fuse postject flips so that Node looks for the blob (fixed by Node's single executable support).
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

export interface SeaBuildInput {
  packageRoot: string;
  version: string;
  /** Scratch folder for bundles, configurations and blobs. */
  workDir: string;
  outDir: string;
}

// The strip that reads this architecture's ELF files, if the machine has one (binutils' own strip reads
// x86-64; arm64 needs binutils-aarch64-linux-gnu). Undefined: ship unstripped.
async function stripTool(arch: Arch): Promise<string | undefined> {
  const candidates = arch === 'x64' ? ['x86_64-linux-gnu-strip', 'strip'] : ['aarch64-linux-gnu-strip'];
  for (const tool of candidates) {
    try {
      await run(tool, ['--version']);
      return tool;
    } catch {
      // try the next one
    }
  }
  return undefined;
}

// The node_modules packages esbuild put in a bundle, from its metafile.
function bundledPackages(packageRoot: string, inputs: string[]): BundledPackage[] {
  const names = new Set<string>();
  for (const input of inputs) {
    const match = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (match) names.add(match[1]!);
  }
  return [...names].sort().map((name) => {
    const manifest = JSON.parse(readFileSync(path.join(packageRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string; license?: string };
    return { name, version: manifest.version, license: manifest.license ?? 'see the package' };
  });
}

// commander requires node:child_process at load, for executable subcommands we never declare; loading it
// costs each CLI start about 5 ms. In the bundle commander gets a stand-in that loads it on first use.
const LAZY_CHILD_PROCESS = 'negotiator-lazy-child-process';
const lazyCommanderChildProcess: Plugin = {
  name: 'lazy-commander-child-process',
  setup(builder) {
    builder.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      /[\\/]node_modules[\\/]commander[\\/]/.test(args.importer) ? { path: LAZY_CHILD_PROCESS, namespace: LAZY_CHILD_PROCESS } : undefined,
    );
    builder.onLoad({ filter: /.*/, namespace: LAZY_CHILD_PROCESS }, () => ({
      contents: "module.exports = new Proxy({}, { get: (_, key) => require('node:child_process')[key] });",
      loader: 'js',
    }));
  },
};

async function bundle(input: SeaBuildInput, program: Program): Promise<{ main: string; bundled: BundledPackage[] }> {
  const outfile = path.join(input.workDir, `${program}.cjs`);
  const result = await build({
    entryPoints: [path.join(input.packageRoot, PROGRAMS[program])],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node24',
    define: {
      NEGOTIATOR_BUNDLED_VERSION: JSON.stringify(input.version),
      // Only the package-root lookups read it, and the executables replace both (version above, built-in
      // commands through locateBuiltinCommandsWith): a path that names the cause if one is ever reached.
      'import.meta.url': JSON.stringify('file:///negotiator-single-executable/has-no-package-folder.js'),
    },
    legalComments: 'inline',
    logLevel: 'warning',
    metafile: true,
    plugins: [lazyCommanderChildProcess],
  });
  return { main: outfile, bundled: bundledPackages(input.packageRoot, Object.keys(result.metafile.inputs)) };
}

// The sea configuration's assets (the built-ins and their manifest), written into workDir.
function builtinAssets(input: SeaBuildInput): Record<string, string> {
  const folder = path.join(input.packageRoot, BUILTIN_COMMANDS_FOLDER);
  const names = readdirSync(folder).filter((name) => !name.startsWith('.')).sort();
  const digest = createHash('sha256');
  const assets: Record<string, string> = {};
  for (const name of names) {
    const file = path.join(folder, name);
    digest.update(`${name}\0`).update(readFileSync(file)).update('\0');
    assets[`${BUILTIN_ASSET_PREFIX}${name}`] = file;
  }
  const manifest: BuiltinsManifest = { digest: digest.digest('hex').slice(0, 16), names };
  const manifestFile = path.join(input.workDir, BUILTINS_MANIFEST_ASSET);
  writeFileSync(manifestFile, `${JSON.stringify(manifest)}\n`);
  assets[BUILTINS_MANIFEST_ASSET] = manifestFile;
  return assets;
}

export interface Executable {
  program: Program;
  arch: Arch;
  path: string;
  /** Third-party JavaScript packages inside it. */
  bundled: BundledPackage[];
}

/** Build OUT_DIR/ARCH/PROGRAM for each program and architecture. */
export async function buildExecutables(input: SeaBuildInput, arches: readonly Arch[]): Promise<Executable[]> {
  mkdirSync(input.workDir, { recursive: true });
  const builderArch = process.arch as Arch;
  const builderNode = await pinnedNode(builderArch);
  const assets = builtinAssets(input);
  const postject = path.join(input.packageRoot, 'node_modules', 'postject', 'dist', 'cli.js');
  const outputs: Executable[] = [];
  for (const program of Object.keys(PROGRAMS) as Program[]) {
    const { main, bundled } = await bundle(input, program);
    for (const arch of arches) {
      const blob = path.join(input.workDir, `${program}-${arch}.blob`);
      const config = path.join(input.workDir, `${program}-${arch}.sea.json`);
      const seaConfig = { main, output: blob, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache: arch === builderArch, assets };
      writeFileSync(config, `${JSON.stringify(seaConfig, null, 2)}\n`);
      await run(builderNode, ['--experimental-sea-config', config], { cwd: input.workDir, timeout: 300_000 });
      const target = path.join(input.outDir, arch, program);
      mkdirSync(path.dirname(target), { recursive: true });
      copyFileSync(await pinnedNode(arch), target);
      chmodSync(target, 0o755);
      const strip = await stripTool(arch);
      if (strip) await run(strip, ['--strip-all', target], { timeout: 300_000 });
      // postject (LIEF compiled to WebAssembly) takes about 15 s for a 110 MB binary.
      await run(process.execPath, [postject, target, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE], { timeout: 600_000, maxBuffer: 16 << 20 });
      outputs.push({ program, arch, path: target, bundled });
    }
  }
  return outputs;
}
