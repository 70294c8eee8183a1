// Reading a local source (a command's pipe, a service's socket) into the channel: in flowing mode,
// paused only while a largest chunk waits to be sent. Iterated instead (for await), a Readable stops
// reading at every 64 KiB read that takes it over its 16 KiB high-water mark and starts again after it:
// two system calls and a turn of the event loop per read, a third of the cost of a forwarded stream.
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { MAX_CHUNK_BYTES } from '../wire/protocol.js';

/**
 * Hand every chunk of `source` to `send`, one at a time, in order, each after the previous one's promise
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
    const chunk = pending.shift();
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
