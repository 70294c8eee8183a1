// The client ends of the raw baselines: the same socket and framing as the agent, none of the RPC layer.
import type { Socket } from 'node:net';
import { checkEchoReply, echoRequest } from './echo-line.js';
import { LineClient } from './line-socket.js';
import { MODES, connectInMode } from './socket-modes.js';

/** A connection the benchmark drives; `close()` ends it. */
export interface Connection {
  close(): void;
}
export interface RoundTripper extends Connection {
  /** One request and its reply. */
  roundTrip(): Promise<void>;
}
export interface Fetcher extends Connection {
  /** Ask for `bytes` bytes and resolve when all of them arrived. */
  fetch(bytes: number): Promise<void>;
}
export interface CpuProbe extends Connection {
  /** The server process's CPU time so far (user + system), ms. */
  readCpuMs(): Promise<number>;
  /** The server process's resident set size now, MiB (fork cost grows with it). */
  readRssMiB(): Promise<number>;
}

// Bare NDJSON echo: a ping-shaped request line, a ping-shaped reply line, both parsed.
export async function openEchoClient(socketPath: string): Promise<RoundTripper> {
  const client = new LineClient(await connectInMode(socketPath, MODES.echo), 'the echo server');
  let id = 0;
  return {
    async roundTrip() {
      checkEchoReply(await client.request(echoRequest(++id)), id);
    },
    close: () => client.close(),
  };
}

// Bare spawn: the server runs /bin/true as the command runner would and replies with its exit code.
export async function openSpawnClient(socketPath: string): Promise<RoundTripper> {
  const client = new LineClient(await connectInMode(socketPath, MODES.spawn), 'the spawn server');
  let id = 0;
  return {
    async roundTrip() {
      const reply = JSON.parse((await client.request(JSON.stringify({ id: ++id }))).toString('utf8')) as { exitCode?: unknown };
      if (reply.exitCode !== 0) throw new Error(`spawn: /bin/true exited with ${JSON.stringify(reply.exitCode)}`);
    },
    close: () => client.close(),
  };
}

// Bare copy: `source` (bytes from the server's memory) or `child-pipe` (a child's stdout piped into the socket).
export async function openCopyClient(socketPath: string, mode: typeof MODES.source | typeof MODES.childPipe): Promise<Fetcher> {
  const socket: Socket = await connectInMode(socketPath, mode);
  let waiting: { left: number; resolve: () => void; reject: (error: Error) => void } | undefined;
  let failure: Error | undefined;
  socket.on('data', (chunk: Buffer) => {
    if (!waiting) return;
    waiting.left -= chunk.length;
    if (waiting.left < 0) {
      waiting.reject(new Error(`${mode}: ${-waiting.left} bytes more than requested`));
      waiting = undefined;
    } else if (waiting.left === 0) {
      const done = waiting;
      waiting = undefined;
      done.resolve();
    }
  });
  const fail = (error: Error): void => {
    failure ??= error;
    waiting?.reject(failure);
    waiting = undefined;
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error(`${mode}: the server closed the connection`)));
  socket.resume();
  return {
    fetch(bytes) {
      if (failure) return Promise.reject(failure);
      return new Promise((resolve, reject) => {
        waiting = { left: bytes, resolve, reject };
        socket.write(JSON.stringify({ bytes }) + '\n');
      });
    },
    close: () => socket.destroy(),
  };
}

// Read the server's CPU usage and memory over a side connection (outside the measured connections).
export async function openCpuProbe(socketPath: string): Promise<CpuProbe> {
  const client = new LineClient(await connectInMode(socketPath, MODES.cpu), 'the cpu probe');
  const read = async (): Promise<NodeJS.CpuUsage & { rss: number }> => JSON.parse((await client.request('{}')).toString('utf8')) as NodeJS.CpuUsage & { rss: number };
  return {
    async readCpuMs() {
      const usage = await read();
      return (usage.user + usage.system) / 1000;
    },
    async readRssMiB() {
      return Math.round((await read()).rss / 1024 / 1024);
    },
    close: () => client.close(),
  };
}
