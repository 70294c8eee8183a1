// The bare baseline inside a benchmark guest (`npm run bench:vm`): holds the host-to-guest virtio-serial
// port with guest/port-channel.ts (as the guest daemon does) and answers, with no RPC layer:
//   {"hello": X}                    -> {"hello": X}                  (synchronisation)
//   a ping-shaped JSON-RPC request  -> a ping-shaped reply           (bare NDJSON echo)
//   {"sink": N} then N raw bytes    -> {"sunk": N}                   (bare copy, host to guest)
//   {"bytes": N}                    -> N zero bytes                  (bare copy, guest to host)
//   {"cat": N} then N raw bytes     -> what busybox `cat` makes of them, raw (the bare `execute cat`: the
//                                      bytes through a command's pipes, no protocol)
//   {"relay": "sink", "bytes": N} then N raw bytes -> {"sunk": C}, C the count the `sink` service answered
//   {"relay": "source", "bytes": N} -> the N bytes the `source` service wrote, raw
//                                      (the bare stream: the bytes through the service's socket, no protocol;
//                                      the services of bench/vm-stream-services.ts)
// Runs in the guest as `node dist/bench/vm-port-peer.js`; prints `vm-port-peer ready` on the console.
import { spawn } from 'node:child_process';
import net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { openPortChannel } from '../guest/port-channel.js';
import { waitForVirtioPort } from '../guest/virtio-ports.js';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';
import { echoReplyLine } from './echo-line.js';
import { VM_STREAM_SERVICES } from './vm-guest.js';

/** Write size of the guest-to-host copy: the RPC layer's largest output chunk, as bench/baseline-server.ts. */
const SOURCE_CHUNK_BYTES = 256 * 1024;
const zeros = Buffer.alloc(SOURCE_CHUNK_BYTES);

const port = await waitForVirtioPort(CHANNEL_NAMES.hostToGuest, { timeoutMs: 30_000 });
const channel = await openPortChannel(port.device, { description: `${CHANNEL_NAMES.hostToGuest} (${port.device})` });

let pending: Buffer = Buffer.alloc(0);
let sinkLeft = 0;
let sinkSize = 0;
/** Where the next raw bytes from the host go (cat's stdin, a service's socket), and how many. */
let into: { target: Writable; left: number } | undefined;
let chain: Promise<void> = Promise.resolve();

const send = (line: string): Promise<void> => channel.write(Buffer.from(line));

async function writeZeros(bytes: number): Promise<void> {
  for (let left = bytes; left > 0; left -= SOURCE_CHUNK_BYTES) await channel.write(left >= SOURCE_CHUNK_BYTES ? zeros : zeros.subarray(0, left));
}

// The next `bytes` from the host go to `target` (reading the port paused while it is full), then it ends.
function forwardInto(target: Writable, bytes: number): void {
  if (bytes === 0) return void target.end();
  into = { target, left: bytes };
  target.on('drain', () => channel.resume());
}

// What `source` says goes to the host raw as it comes, as the daemon relays output, minus the protocol.
function sendAll(source: Readable): void {
  source.on('data', (chunk: Buffer) => {
    source.pause();
    void channel.write(chunk).then(() => source.resume());
  });
}

// The bare `execute cat`.
function startCat(bytes: number): void {
  const child = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'] });
  sendAll(child.stdout);
  forwardInto(child.stdin, bytes);
}

// The bare stream: a connection to one of the services, as the daemon opens one for a stream.
function startRelay(service: string, bytes: number): void {
  if (service === 'source') {
    const socket = net.connect(VM_STREAM_SERVICES.source, () => socket.end(`${bytes}\n`));
    sendAll(socket);
    return;
  }
  const socket = net.connect({ path: VM_STREAM_SERVICES.sink, allowHalfOpen: true });
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
  socket.on('end', () => void send(JSON.stringify({ sunk: Number(answer) }) + '\n'));
  forwardInto(socket, bytes);
}

function onLine(line: Buffer): void {
  const request = JSON.parse(line.toString('utf8')) as Record<string, unknown>;
  if ('hello' in request) {
    void send(JSON.stringify({ hello: request.hello }) + '\n');
  } else if (request.method === 'ping') {
    // Answered at once, as the benchmark server's echo: the floor a request/reply can reach.
    void send(echoReplyLine(line));
  } else if (typeof request.sink === 'number') {
    sinkSize = sinkLeft = request.sink;
    if (sinkLeft === 0) void send(JSON.stringify({ sunk: 0 }) + '\n');
  } else if (typeof request.cat === 'number') {
    startCat(request.cat);
  } else if (typeof request.relay === 'string' && typeof request.bytes === 'number') {
    startRelay(request.relay, request.bytes);
  } else if (typeof request.bytes === 'number') {
    const bytes = request.bytes;
    chain = chain.then(() => writeZeros(bytes));
  } else {
    console.log(`vm-port-peer: unknown request ${line.toString('utf8').slice(0, 80)}`);
  }
}

channel.onReset(() => {
  // A new host connection: whatever was half received belongs to the old one.
  pending = Buffer.alloc(0);
  sinkLeft = 0;
  into?.target.destroy();
  into = undefined;
});

channel.onData((chunk) => {
  pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
  for (;;) {
    if (into) {
      const piece = pending.subarray(0, Math.min(into.left, pending.length));
      into.left -= piece.length;
      pending = pending.subarray(piece.length);
      if (piece.length > 0 && !into.target.write(piece)) channel.pause();
      if (into.left === 0) {
        // An ending stream emits no 'drain': what follows is the next request, read at once.
        into.target.end();
        into = undefined;
        channel.resume();
      }
      if (pending.length === 0) return;
      continue;
    }
    if (sinkLeft > 0) {
      const taken = Math.min(sinkLeft, pending.length);
      sinkLeft -= taken;
      pending = pending.subarray(taken);
      if (sinkLeft > 0) return;
      void send(JSON.stringify({ sunk: sinkSize }) + '\n');
      continue;
    }
    const newline = pending.indexOf(10);
    if (newline < 0) return;
    const line = pending.subarray(0, newline);
    pending = pending.subarray(newline + 1);
    try {
      onLine(line);
    } catch (error) {
      console.log(`vm-port-peer: ${String(error)}`);
    }
  }
});

console.log(`vm-port-peer ready on ${port.device} (${channel.readMechanism})`);
process.once('SIGTERM', () => void channel.close().then(() => process.exit(0)));
