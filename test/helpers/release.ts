// The release files (`npm run package`) for the tests that run them, built once for all of them: into
// dist/test-release, keyed by a digest of what goes in (the compiled sources, the built-in commands, the
// packaging files, the version), with the Debian packages gzip-compressed. Test files run in parallel, so
// the first one builds under a lock folder and the others wait for it (bounded: 15 minutes); a lock
// whose holder died is taken over.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ARCHES } from '../../packaging/node-runtime.js';
import { buildRelease, PACKAGE_ROOT } from '../../packaging/package.js';

export const RELEASE_DIR = path.join(PACKAGE_ROOT, 'dist', 'test-release');
const LOCK = `${RELEASE_DIR}.lock`;
const STAMP = path.join(RELEASE_DIR, '.inputs');

function inputsDigest(): string {
  const hash = createHash('sha256');
  const add = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
      if (!entry.isFile() || entry.name.endsWith('.map') || entry.name.endsWith('.d.ts')) continue;
      const file = path.join(entry.parentPath, entry.name);
      hash.update(`${path.relative(PACKAGE_ROOT, file)}\0`).update(readFileSync(file));
    }
  };
  for (const dir of ['dist/common', 'dist/host', 'dist/guest', 'dist/packaging', 'builtin-commands', 'packaging', 'examples/services']) add(path.join(PACKAGE_ROOT, dir));
  hash.update((JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  return hash.digest('hex');
}

function holderAlive(): boolean {
  try {
    const pid = Number(readFileSync(path.join(LOCK, 'pid'), 'utf8'));
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Return dist/test-release with every architecture's executables and packages, building it if stale. */
export async function ensureRelease(): Promise<string> {
  const digest = inputsDigest();
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    if (existsSync(STAMP) && readFileSync(STAMP, 'utf8') === digest) return RELEASE_DIR;
    try {
      mkdirSync(LOCK);
      writeFileSync(path.join(LOCK, 'pid'), String(process.pid));
    } catch {
      if (Date.now() > deadline) throw new Error(`Waited 15 minutes for another test's release build (lock ${LOCK}).`);
      // The holder may not have written its pid yet: a lock is stale only if it still names no live process 2 s later.
      if (!holderAlive()) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
        if (!holderAlive()) rmSync(LOCK, { recursive: true, force: true });
      } else {
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      continue;
    }
    try {
      if (existsSync(STAMP) && readFileSync(STAMP, 'utf8') === digest) return RELEASE_DIR;
      // gzip: xz takes minutes per 110 MB package on a busy 2-core machine; the contents are the same.
      await buildRelease({ outDir: RELEASE_DIR, arches: ARCHES, compression: 'gzip' });
      writeFileSync(STAMP, digest);
      return RELEASE_DIR;
    } finally {
      rmSync(LOCK, { recursive: true, force: true });
    }
  }
}
