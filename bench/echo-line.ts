// The bare NDJSON echo's reply: a ping-shaped JSON-RPC result for a ping-shaped request line. Shared by
// the benchmark server (bench/baseline-server.ts) and the in-guest port peer (bench/vm-port-peer.ts).

// Parse a request line and build its reply line (newline included).
export function echoReplyLine(line: Buffer): string {
  const request = JSON.parse(line.toString('utf8')) as { id?: unknown };
  return JSON.stringify({ jsonrpc: '2.0', id: request.id, result: { time: Date.now() } }) + '\n';
}

// A ping-shaped request (without its newline).
export function echoRequest(id: number): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'ping' });
}

// Throw unless `reply` answers request `id`.
export function checkEchoReply(reply: Buffer, id: number): void {
  const parsed = JSON.parse(reply.toString('utf8')) as { id?: unknown };
  if (parsed.id !== id) throw new Error(`echo: expected the reply to request ${id}, got ${JSON.stringify(parsed.id)}`);
}
