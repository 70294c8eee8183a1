// Random bytes for nonces, read from the kernel's generator directly. node:crypto draws from the same
// source, but loading it costs every CLI start several milliseconds for 16 bytes (docs/benchmarks.md,
// "Start-up trimmed"). /dev/urandom never blocks, not even early in a guest's boot; where it cannot be
// opened (a bare chroot), node:crypto is loaded after all.
import type * as Crypto from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';

/** `bytes` random bytes as lowercase hex. */
export function randomHex(bytes: number): string {
  const buffer = Buffer.alloc(bytes);
  let fd: number;
  try {
    fd = openSync('/dev/urandom', 'r');
  } catch {
    return (process.getBuiltinModule('node:crypto') as typeof Crypto).randomBytes(bytes).toString('hex');
  }
  try {
    let filled = 0;
    while (filled < bytes) filled += readSync(fd, buffer, filled, bytes - filled, null);
  } finally {
    closeSync(fd);
  }
  return buffer.toString('hex');
}
