// The two services of the stream benchmarks (bench/stream-bench.ts on the loopback, bench/vm-stream-services.ts
// in a benchmark guest) and the client's half of each transfer. `sink` counts what it reads until EOF,
// then writes the decimal count and ends; `source` reads a decimal byte count line, writes that many zero
// bytes and ends. Every write of zeros is a view of one preallocated buffer (as the bare copies write), so
// no transfer allocates per chunk. The client halves take any Duplex: a socket or an `openStream` stream.
import net from 'node:net';
import type { Duplex, Writable } from 'node:stream';

/** Size of each write of zeros: the RPC layer's largest chunk, as the bare copies write. */
const CHUNK_BYTES = 256 * 1024;
const ZEROS = Buffer.alloc(CHUNK_BYTES);

/** Where the two services listen. */
export interface StreamServicePaths {
  sink: string;
  source: string;
}

// Write `bytes` zero bytes to `stream` with its backpressure, then end it.
function writeZerosAndEnd(stream: Writable, bytes: number): void {
  let left = bytes;
  const pump = (): void => {
    while (left > 0) {
      const piece = left >= CHUNK_BYTES ? ZEROS : ZEROS.subarray(0, left);
      left -= piece.length;
      if (!stream.write(piece)) return void stream.once('drain', pump);
    }
    stream.end();
  };
  pump();
}

// `sink`: count until EOF, answer the count, end.
function serveSink(socket: net.Socket): void {
  let count = 0;
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => (count += chunk.length));
  socket.on('end', () => socket.end(String(count)));
}

// `source`: read the count line, write that many zero bytes, end. The opener may half-close after its
// line (the server keeps its own direction open). A bad count closes the connection short: the opener
// counts the bytes and fails.
function serveSource(socket: net.Socket): void {
  let line = '';
  socket.on('error', () => socket.destroy());
  const onData = (chunk: Buffer): void => {
    line += chunk.toString('latin1');
    const newline = line.indexOf('\n');
    if (newline < 0) return;
    socket.off('data', onData);
    const bytes = Number(line.slice(0, newline));
    if (!Number.isSafeInteger(bytes) || bytes < 0) return void socket.destroy();
    writeZerosAndEnd(socket, bytes);
  };
  socket.on('data', onData);
  socket.on('end', () => {
    if (!line.includes('\n')) socket.destroy();
  });
}

// Listen for `sink` and `source` on UNIX sockets; resolves once both listen, with a function closing both.
export async function startStreamServices(paths: StreamServicePaths): Promise<() => void> {
  const servers = [net.createServer({ allowHalfOpen: true }, serveSink), net.createServer({ allowHalfOpen: true }, serveSource)];
  await Promise.all([paths.sink, paths.source].map((file, i) => new Promise<void>((resolve, reject) => servers[i]!.once('error', reject).listen(file, resolve))));
  return () => servers.forEach((server) => server.close());
}

// Settle when `stream` ends: resolve if `check()` then says nothing is wrong, else reject with what it says.
// An error, or a close without EOF, rejects.
function settleAtEnd(stream: Duplex, check: () => string | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('error', reject);
    stream.once('end', () => {
      const wrong = check();
      if (wrong) reject(new Error(wrong));
      else resolve();
    });
    stream.once('close', () => reject(new Error('the stream closed before its end')));
  });
}

// Upload through `stream` to a sink: write `bytes`, half-close, read its answer to EOF. Rejects unless the
// sink counted exactly `bytes`.
export function uploadTo(stream: Duplex, bytes: number): Promise<void> {
  let reply = '';
  stream.on('data', (chunk: Buffer) => (reply += chunk.toString('latin1')));
  const done = settleAtEnd(stream, () => (reply.trim() === String(bytes) ? undefined : `the sink counted ${JSON.stringify(reply.trim())} of ${bytes} bytes sent`));
  writeZerosAndEnd(stream, bytes);
  return done;
}

// Download through `stream` from a source: ask for `bytes` (then half-close), read to EOF. Rejects unless
// exactly `bytes` arrived.
export function downloadFrom(stream: Duplex, bytes: number): Promise<void> {
  let received = 0;
  stream.on('data', (chunk: Buffer) => (received += chunk.length));
  const done = settleAtEnd(stream, () => (received === bytes ? undefined : `received ${received} of ${bytes} bytes from the source`));
  stream.end(`${bytes}\n`);
  return done;
}
