// The server ends of the raw baselines: what the same socket does with no RPC layer in the way.
import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import { echoReplyLine } from './echo-line.js';
import { splitLines } from './line-socket.js';
import { MODES, type Mode } from './socket-modes.js';

/** Write size of the bare socket copy: the RPC layer's largest output chunk (MAX_CHUNK_BYTES). */
const SOURCE_CHUNK_BYTES = 256 * 1024;
const zeros = Buffer.alloc(SOURCE_CHUNK_BYTES);

// Answer each request line of `socket` in order with `answer`; a failed answer ends the connection.
function serveSequentially(socket: Socket, answer: (request: Record<string, unknown>) => Promise<void> | void): void {
  let chain: Promise<void> = Promise.resolve();
  socket.on('error', () => {
    // The client went away: nothing to report, the benchmark client says what failed.
  });
  splitLines(socket, (line) => {
    chain = chain
      .then(() => answer(JSON.parse(line.toString('utf8')) as Record<string, unknown>))
      .catch((error: unknown) => {
        process.stderr.write(`bench server: ${error instanceof Error ? error.message : String(error)}\n`);
        socket.destroy();
      });
  });
  socket.resume();
}

function requestedBytes(request: Record<string, unknown>): number {
  const bytes = request.bytes;
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`expected \`bytes\` to be a byte count, got ${JSON.stringify(bytes)}`);
  return bytes;
}

async function writeZeros(socket: Socket, bytes: number): Promise<void> {
  for (let left = bytes; left > 0; left -= SOURCE_CHUNK_BYTES) {
    const chunk = left >= SOURCE_CHUNK_BYTES ? zeros : zeros.subarray(0, left);
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
}

async function pipeChildOutput(socket: Socket, bytes: number): Promise<void> {
  const child = spawn('head', ['-c', String(bytes), '/dev/zero'], { stdio: ['ignore', 'pipe', 'ignore'] });
  child.stdout.pipe(socket, { end: false });
  await once(child, 'close');
}

async function spawnTrue(): Promise<number | null> {
  // As the command runner does: own process group, stdout and stderr piped and read to their end.
  const child = spawn('/bin/true', [], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout.resume();
  child.stderr.resume();
  const [code] = (await once(child, 'close')) as [number | null];
  return code;
}

// Serve one baseline connection in `mode` (every mode except `rpc`).
export function serveBaseline(socket: Socket, mode: Exclude<Mode, 'rpc'>): void {
  switch (mode) {
    case MODES.echo:
      // Answered inside the data handler, no promise hop: the floor a request/reply can reach.
      socket.on('error', () => {
        // The client went away: nothing to report, the benchmark client says what failed.
      });
      splitLines(socket, (line) => socket.write(echoReplyLine(line)));
      socket.resume();
      return;
    case MODES.source:
      serveSequentially(socket, (request) => writeZeros(socket, requestedBytes(request)));
      return;
    case MODES.childPipe:
      serveSequentially(socket, (request) => pipeChildOutput(socket, requestedBytes(request)));
      return;
    case MODES.spawn:
      serveSequentially(socket, async (request) => {
        socket.write(JSON.stringify({ id: request.id, exitCode: await spawnTrue() }) + '\n');
      });
      return;
    case MODES.cpu:
      serveSequentially(socket, () => {
        socket.write(JSON.stringify({ ...process.cpuUsage(), rss: process.memoryUsage.rss() }) + '\n');
      });
      return;
  }
}
