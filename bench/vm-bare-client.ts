// The host end of the bare baseline through a guest's host-to-guest port (bench/vm-port-peer.ts in the
// guest): echo round trips and raw copies both ways over QEMU's socket, with no RPC layer. One request at
// a time; the reader switches to counting raw bytes while a guest-to-host copy is expected.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { checkEchoReply, echoRequest } from './echo-line.js';

/** Write size of the host-to-guest copy: the RPC layer's largest chunk, as the other bare copies. */
const SINK_CHUNK_BYTES = 256 * 1024;
const zeros = Buffer.alloc(SINK_CHUNK_BYTES);
/** A guest that sends fewer bytes than asked fails the transfer after this long, as the daemon's transfers do. */
const DOWNLOAD_TIMEOUT_MS = 300_000;

export interface BareVmClient {
  echo(): Promise<void>;
  /** Send `bytes` to the guest; resolves when it says it has them all. */
  sink(bytes: number): Promise<void>;
  /** Ask the guest for `bytes`; resolves when all of them arrived. */
  source(bytes: number): Promise<void>;
  /** Send `bytes` through a `cat` the guest's peer runs; resolves when all of them came back. */
  cat(bytes: number): Promise<void>;
  /** Send `bytes` to the guest's `sink` service through the peer; resolves when the service counted them all. */
  relayToSink(bytes: number): Promise<void>;
  /** Have the guest's `source` service send `bytes` through the peer; resolves when all of them arrived. */
  relayFromSource(bytes: number): Promise<void>;
  close(): void;
}

// Connect to QEMU's socket of the port and synchronise with the guest's peer (hello until answered).
export async function openBareVmClient(socketPath: string, timeoutMs = 30_000): Promise<BareVmClient> {
  const socket = net.connect({ path: socketPath });
  await once(socket, 'connect');
  socket.setNoDelay(true);
  let held: Buffer = Buffer.alloc(0);
  let rawLeft = 0;
  let waiter: { resolve: (line: Buffer) => void; reject: (error: Error) => void } | undefined;
  let failure: Error | undefined;
  // The guest may open its port after we connected: we say hello every 500 ms until it answers with our
  // token, so answers to the earlier hellos can still arrive after the first one: they are dropped.
  const token = randomBytes(8).toString('hex');
  let synchronised = false;
  const deliver = (line: Buffer): void => {
    if (synchronised && line.includes(token)) return;
    const current = waiter;
    waiter = undefined;
    current?.resolve(line);
  };
  socket.on('data', (chunk: Buffer) => {
    let data = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
    held = Buffer.alloc(0);
    while (data.length > 0) {
      if (rawLeft > 0) {
        const taken = Math.min(rawLeft, data.length);
        rawLeft -= taken;
        data = data.subarray(taken);
        if (rawLeft === 0) deliver(Buffer.alloc(0));
        continue;
      }
      const newline = data.indexOf(10);
      if (newline < 0) {
        held = Buffer.from(data);
        return;
      }
      deliver(data.subarray(0, newline));
      data = data.subarray(newline + 1);
    }
  });
  const fail = (error: Error): void => {
    failure ??= error;
    const current = waiter;
    waiter = undefined;
    current?.reject(failure);
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error(`${socketPath} closed`)));
  const next = (): Promise<Buffer> => {
    if (failure) return Promise.reject(failure);
    if (waiter) return Promise.reject(new Error('bare VM client: a request is already outstanding'));
    return new Promise((resolve, reject) => (waiter = { resolve, reject }));
  };

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = next();
    socket.write(JSON.stringify({ hello: token }) + '\n');
    const line = await Promise.race([reply, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 500))]);
    if (line && line.toString('utf8').includes(token)) {
      synchronised = true;
      break;
    }
    if (!line) waiter = undefined;
    if (Date.now() > deadline) {
      socket.destroy();
      throw new Error(`the guest's vm-port-peer did not answer on ${socketPath} within ${timeoutMs} ms`);
    }
  }
  const writeZeros = async (bytes: number): Promise<void> => {
    for (let left = bytes; left > 0; left -= SINK_CHUNK_BYTES) {
      if (!socket.write(left >= SINK_CHUNK_BYTES ? zeros : zeros.subarray(0, left))) await once(socket, 'drain');
    }
  };
  // Send the request and `bytes` zero bytes; the guest answers how many it received.
  const upload = async (request: object, bytes: number): Promise<void> => {
    const reply = next();
    socket.write(JSON.stringify(request) + '\n');
    await writeZeros(bytes);
    const line = (await reply).toString('utf8');
    if ((JSON.parse(line) as { sunk?: unknown }).sunk !== bytes) throw new Error(`${JSON.stringify(request)}: the guest answered ${line}, expected ${bytes} bytes sunk`);
  };
  // Send the request; the guest answers with `bytes` raw bytes.
  const download = async (request: object, bytes: number): Promise<void> => {
    rawLeft = bytes;
    const done = next();
    socket.write(JSON.stringify(request) + '\n');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${JSON.stringify(request)}: ${rawLeft} of ${bytes} bytes missing after ${DOWNLOAD_TIMEOUT_MS} ms`)), DOWNLOAD_TIMEOUT_MS);
    });
    await Promise.race([done, late]).finally(() => clearTimeout(timer));
  };
  let id = 0;
  return {
    async echo() {
      const reply = next();
      socket.write(echoRequest(++id) + '\n');
      checkEchoReply(await reply, id);
    },
    sink: (bytes) => upload({ sink: bytes }, bytes),
    source: (bytes) => download({ bytes }, bytes),
    relayToSink: (bytes) => upload({ relay: 'sink', bytes }, bytes),
    relayFromSource: (bytes) => download({ relay: 'source', bytes }, bytes),
    async cat(bytes) {
      rawLeft = bytes;
      const done = next();
      socket.write(JSON.stringify({ cat: bytes }) + '\n');
      await Promise.all([writeZeros(bytes), done]);
    },
    close: () => socket.destroy(),
  };
}
