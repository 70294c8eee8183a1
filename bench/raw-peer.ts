// A hand-driven peer on a real socket for hostile-peer tests and bench:memory: it says hello and answers the other side's
// hello like an agent, and otherwise writes exactly the bytes a test gives it and records every message
// it receives, so a test can send what no RpcPeer would (deep ids, malformed answers).
import net from 'node:net';
import { splitLines } from './line-socket.js';
import { PROTOCOL_VERSION, type Side } from '../common/wire/protocol.js';

export interface RawPeer {
  socket: net.Socket;
  /** Every message received after the hello, parsed. */
  readonly received: Array<Record<string, unknown>>;
  /** The other side's hello nonce once it said hello. */
  readonly peerNonce: string | undefined;
  /** Write text as it is (add the newlines yourself). */
  send(text: string): void;
  /** Resolves with the first received message (past or future) that `match` accepts. */
  waitFor(match: (message: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  close(): void;
}

export function rawHello(side: Side, nonce: string, id: string | number = 'raw-hello'): string {
  const info = { protocol: PROTOCOL_VERSION, name: 'raw', version: '0.0.0', side, os: { type: 'Linux', version: '6', hostname: 'raw' }, capabilities: [], nonce, pid: 1 };
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'hello', params: info });
}

// Wrap a connected socket; `side` is the side this raw peer pretends to be.
export function rawPeer(socket: net.Socket, side: Side, options: { answer?: (message: Record<string, unknown>) => string | undefined } = {}): RawPeer {
  const received: Array<Record<string, unknown>> = [];
  const waiters = new Set<{ match: (m: Record<string, unknown>) => boolean; resolve: (m: Record<string, unknown>) => void }>();
  const nonce = `raw${Math.random().toString(16).slice(2, 14)}`;
  let peerNonce: string | undefined;
  splitLines(socket, (line) => {
    const text = line.toString('utf8').trim();
    if (text === '') return;
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    if (message.method === 'hello' && message.id !== undefined) {
      peerNonce = (message.params as { nonce?: string } | undefined)?.nonce;
      const info = JSON.parse(rawHello(side, nonce)).params as unknown;
      socket.write(`${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: info })}\n`);
      return;
    }
    if (message.id === 'raw-hello') return;
    received.push(message);
    const reply = options.answer?.(message);
    if (reply !== undefined) socket.write(reply);
    for (const waiter of [...waiters]) {
      if (waiter.match(message)) {
        waiters.delete(waiter);
        waiter.resolve(message);
      }
    }
  });
  socket.on('error', () => {});
  socket.write(`\n${rawHello(side, nonce)}\n`);
  return {
    socket,
    received,
    get peerNonce() {
      return peerNonce;
    },
    send: (text) => void socket.write(text),
    waitFor(match, timeoutMs = 5000) {
      const found = received.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = { match, resolve: (m: Record<string, unknown>) => (clearTimeout(timer), resolve(m)) };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no matching message within ${timeoutMs} ms; received: ${JSON.stringify(received).slice(0, 2000)}`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    close: () => socket.destroy(),
  };
}

// Connect to a UNIX socket and wrap it.
export async function connectRawPeer(socketPath: string, side: Side): Promise<RawPeer> {
  const socket = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const peer = rawPeer(socket, side);
  // Requests written before we answered the other side's hello would be stale data to it.
  const deadline = Date.now() + 5000;
  while (peer.peerNonce === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
  return peer;
}
