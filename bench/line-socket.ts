// Minimal NDJSON over a socket for the baselines and the qemu-ga client: split on newlines, nothing else
// (no size bound, no UTF-8 check, no JSON): the bare framing cost the RPC layer is compared against.
import type { Socket } from 'node:net';

const NEWLINE = 0x0a;

// Call `onLine` with each complete line (without its newline) as bytes arrive.
export function splitLines(socket: Socket, onLine: (line: Buffer) => void): void {
  let held: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => {
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, end);
      const line = held.length === 0 ? piece : Buffer.concat([...held, piece]);
      held = [];
      start = end + 1;
      onLine(line);
    }
    if (start < chunk.length) held.push(chunk.subarray(start));
  });
}

/**
 * Sequential request/reply over lines: each `request` writes one line and resolves with the next line
 * that arrives. One outstanding request at a time (the benchmarks measure round trips).
 */
export class LineClient {
  readonly socket: Socket;
  #waiter: { resolve: (line: Buffer) => void; reject: (error: Error) => void } | undefined;
  #failed: Error | undefined;

  constructor(socket: Socket, description: string) {
    this.socket = socket;
    splitLines(socket, (line) => {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.resolve(line);
    });
    const fail = (error: Error): void => {
      this.#failed ??= error;
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.reject(this.#failed);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error(`${description} closed the connection`)));
    socket.resume();
  }

  // Send `line` (a newline is appended) and resolve with the reply line.
  request(line: string): Promise<Buffer> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#waiter) return Promise.reject(new Error('LineClient: a request is already outstanding'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.socket.write(line + '\n');
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
