// Reading a local source (a command's pipe, a service's socket) into the channel: in flowing mode,
// paused only while a largest chunk waits to be sent. Iterated instead (for await), a Readable stops
// reading at every 64 KiB read that takes it over its 16 KiB high-water mark and starts again after it:
// two system calls and a turn of the event loop per read, a third of the cost of a forwarded stream.
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { MAX_CHUNK_BYTES } from '../wire/protocol.js';

// The first waiting chunk, joined with the ones after it up to `limit` bytes: reads that came while a
// send was in progress go out as one piece, not one frame and one write each (a program writing its pipe
// 4 KiB at a time, read by a guest slower than it). One chunk alone is handed over as it is, uncopied.
function takeUpTo(pending: Buffer[], limit: number): Buffer | undefined {
  const first = pending.shift();
  if (first === undefined || pending.length === 0 || first.length + pending[0]!.length > limit) return first;
  const parts = [first];
  let size = first.length;
  while (pending.length > 0 && size + pending[0]!.length <= limit) {
    const next = pending.shift()!;
    parts.push(next);
    size += next.length;
  }
  return Buffer.concat(parts, size);
}

/**
 * Hand every chunk of `source` to `send` (chunks that waited together joined, up to a largest chunk), one at a time, in order, each after the previous one's promise
 * settled. `send` resolving false stops the reading (nothing more is sent; the source is paused, not
 * destroyed). Resolves true once the source ended and everything was sent, false when `send` stopped it;
 * rejects with the source's error. Never ends or destroys the source: a socket half-closed by its peer
 * keeps its writing side.
 */
export async function pumpReadable(source: Readable, send: (chunk: Buffer) => Promise<boolean>): Promise<boolean> {
  const pending: Buffer[] = [];
  let pendingBytes = 0;
  let over = false;
  let wake: (() => void) | undefined;
  const onData = (chunk: Buffer): void => {
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= MAX_CHUNK_BYTES) source.pause();
    wake?.();
  };
  source.on('data', onData);
  // Settles after the last 'data' (or with the source's error).
  const ended = finished(source, { writable: false }).finally(() => ((over = true), wake?.()));
  ended.catch(() => {});
  for (;;) {
    const chunk = takeUpTo(pending, MAX_CHUNK_BYTES);
    if (!chunk) {
      if (over) break;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      continue;
    }
    pendingBytes -= chunk.length;
    if (source.isPaused() && pendingBytes < MAX_CHUNK_BYTES) source.resume();
    if (!(await send(chunk))) {
      source.off('data', onData);
      source.pause();
      return false;
    }
  }
  await ended;
  return true;
}
