// Random bytes for nonces, read from the kernel's generator directly. node:crypto draws from the same
// source, but loading it costs every CLI start several milliseconds for 16 bytes (docs/benchmarks.md,
// "CLI start-up"). /dev/urandom never blocks, not even early in a guest's boot.
import { closeSync, openSync, readSync } from 'node:fs';

/** `bytes` random bytes as lowercase hex. */
export function randomHex(bytes: number): string {
  const buffer = Buffer.alloc(bytes);
  const fd = openSync('/dev/urandom', 'r');
  try {
    let filled = 0;
    while (filled < bytes) filled += readSync(fd, buffer, filled, bytes - filled, null);
  } finally {
    closeSync(fd);
  }
  return buffer.toString('hex');
}
