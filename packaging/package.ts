#!/usr/bin/env node
// `npm run package [-- --arch x64|arm64] [-- --out DIR]`: the release files in DIR (default release/, ignored
// by git): DIR/ARCH/negotiator-host and negotiator-guest (single executables, packaging/sea.ts) and
// the Debian packages beside them (packaging/deb.ts). Run after `npm run build` (the script does).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { buildDeb } from './deb.js';
import { ARCHES, type Arch, pinnedNode, pinnedNodeLicense } from './node-runtime.js';
import { buildExecutables } from './sea.js';

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

export interface PackageOptions {
  outDir: string;
  arches: readonly Arch[];
  /** The Debian packages' compressor (see packaging/deb.ts). */
  compression?: 'xz' | 'gzip';
}

/** Build everything `npm run package` builds; returns the paths written. */
export async function buildRelease(options: PackageOptions): Promise<string[]> {
  const version = packageVersion();
  rmSync(options.outDir, { recursive: true, force: true });
  mkdirSync(options.outDir, { recursive: true });
  writeFileSync(path.join(options.outDir, '.gitignore'), '# Built by npm run package.\n*\n');
  const workDir = path.join(options.outDir, '.work');
  const executables = await buildExecutables({ packageRoot: PACKAGE_ROOT, version, workDir, outDir: options.outDir }, options.arches);
  const outputs = executables.map((executable) => executable.path);
  const date = changelogDate();
  for (const executable of executables) {
    const nodeLicense = readFileSync(pinnedNodeLicense(await pinnedNode(executable.arch)), 'utf8');
    const input = { packageRoot: PACKAGE_ROOT, version, program: executable.program, arch: executable.arch, executable: executable.path, bundled: executable.bundled, outDir: options.outDir, workDir, compression: options.compression };
    outputs.push(await buildDeb(input, nodeLicense, date));
  }
  rmSync(workDir, { recursive: true, force: true });
  return outputs;
}

// The changelog's date: SOURCE_DATE_EPOCH, else the last commit's, else now (RFC 2822, as Debian wants).
function changelogDate(): string {
  const epoch = Number(process.env.SOURCE_DATE_EPOCH);
  if (Number.isSafeInteger(epoch) && epoch > 0) return new Date(epoch * 1000).toUTCString().replace('GMT', '+0000');
  try {
    return execFileSync('git', ['log', '-1', '--format=%aD'], { cwd: PACKAGE_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return new Date().toUTCString().replace('GMT', '+0000');
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { arch: { type: 'string', multiple: true }, out: { type: 'string' } } });
  const arches = (values.arch ?? [...ARCHES]) as Arch[];
  for (const arch of arches) {
    if (!ARCHES.includes(arch)) {
      process.stderr.write(`package: unknown --arch ${arch}: use ${ARCHES.join(' or ')}\n`);
      process.exit(2);
    }
  }
  const outputs = await buildRelease({ outDir: path.resolve(values.out ?? path.join(PACKAGE_ROOT, 'release')), arches });
  for (const output of outputs) process.stdout.write(`${path.relative(process.cwd(), output) || output}\n`);
}
