// Issue 14, item 2: whatever one line holds, every other line is read and answered, and every pending
// request settles whatever the peer answers. Real agents on real UNIX sockets; the hostile side is a
// hand-driven peer (test/helpers/raw-peer.ts) that writes what no RpcPeer would.
import t, { type Test } from 'tap';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { executeRemote } from '../../../common/execute/client.js';
import { RpcError } from '../../../common/wire/errors.js';
import { ERROR_CODES, METHODS } from '../../../common/wire/protocol.js';
import { processMemoryBudget } from '../../../common/wire/memory-budget.js';
import { RpcPeer } from '../../../common/wire/rpc-peer.js';
import { setTimeout as delay } from 'node:timers/promises';
import { connectChannel } from '../../../common/wire/stream-channel.js';
import { testAgentInfo } from '../../helpers/agents.js';
import { connectRawPeer, rawPeer, type RawPeer } from '../../../bench/raw-peer.js';
import { startSocketAgent } from '../../helpers/socket-agent.js';
import { GUEST_CLI, runCli } from '../../helpers/spawn-cli.js';

const deep = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);
const ping = (id: number | string): string => `${JSON.stringify({ jsonrpc: '2.0', id, method: METHODS.ping, params: {} })}\n`;
const answered = (id: unknown) => (m: Record<string, unknown>) => m.id === id && ('result' in m || 'error' in m);

t.test('a 100,000-deep id or params costs no other line of the same write', async (t) => {
  const agent = await startSocketAgent();
  t.teardown(() => agent.close());
  const raw = await connectRawPeer(agent.socketPath, 'host');
  t.teardown(() => raw.close());
  await raw.waitFor(() => false, 300).catch(() => {});
  // One write: a deep id, a valid ping, a request with deep params, a deep notification, another ping.
  raw.send(
    `{"jsonrpc":"2.0","id":${deep(100_000)},"method":"ping"}\n` +
      ping(1) +
      `{"jsonrpc":"2.0","id":2,"method":"execute","params":${deep(100_000)}}\n` +
      `{"jsonrpc":"2.0","method":"cancel","params":{"id":${deep(50_000)}}}\n` +
      ping(3),
  );
  t.match(await raw.waitFor(answered(1)), { result: { time: Number } }, 'the ping after the deep id is answered');
  t.match(await raw.waitFor(answered(2)), { error: { code: ERROR_CODES.invalidRequest, message: /nested deeper than 64 levels/ } }, 'the deep request is answered with an error');
  t.match(await raw.waitFor(answered(3)), { result: { time: Number } }, 'the last ping is answered');
  await agent.log.waitFor(/nested deeper than 64 levels/);
  t.notOk(agent.log.lines.some((l) => /internal error|call stack/i.test(l)), 'nothing overflowed');
});

t.test('a hello with a 100,000-deep name is refused and the valid hello after it in the same write is adopted', async (t) => {
  const agent = await startSocketAgent();
  t.teardown(() => agent.close());
  const socket = net.connect(agent.socketPath);
  await new Promise((resolve) => socket.once('connect', resolve));
  t.teardown(() => socket.destroy());
  const badHello = `{"jsonrpc":"2.0","id":"bad","method":"hello","params":{"protocol":1,"name":${deep(100_000)}}}\n`;
  socket.write(badHello);
  const raw = rawPeer(socket, 'host');
  raw.send(ping(9));
  t.match(await raw.waitFor(answered(9)), { result: { time: Number } });
});

// A server that answers every request with `answer(id)` (after the hello).
async function rawServer(t: Test, answer: (id: unknown) => string): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-raw-'));
  const socketPath = path.join(dir, 'raw.sock');
  const peers: RawPeer[] = [];
  const server = net.createServer((socket) => peers.push(rawPeer(socket, 'guest', { answer: (m) => (m.method ? answer(m.id) : undefined) })));
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.teardown(async () => {
    for (const p of peers) p.close();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });
  return socketPath;
}

t.test('every pending request settles, whatever the peer answers', async (t) => {
  const answers = [
    (id: unknown) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"error":{"code":"x","message":${deep(100_000)}}}\n`,
    (id: unknown) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"error":{"code":1,"message":"m","data":${deep(100_000)}}}\n`,
    (id: unknown) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${deep(100_000)}}\n`,
    (id: unknown) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"error":null}\n`,
  ];
  for (const [index, answer] of answers.entries()) {
    const socketPath = await rawServer(t, answer);
    const peer = new RpcPeer(await connectChannel(socketPath, 2000), { localInfo: testAgentInfo('host'), label: 'raw', requestTimeoutMs: 30_000 });
    peer.start();
    const started = Date.now();
    const outcome = await peer.request(METHODS.ping, {}).then(
      () => 'resolved',
      (error: unknown) => error,
    );
    t.type(outcome, RpcError, `answer ${index}: the request fails with an RpcError`);
    t.ok(Date.now() - started < 5000, `answer ${index}: at once, not at the 30 s deadline`);
    await peer.close();
  }
});

t.test('results are validated like requests: a malformed execute result is a negotiator failure (255)', async (t) => {
  const results = ['{"exitCode":0,"signal":null,"timedOut":"no","isCanceled":false,"durationMs":1,"stdoutBytes":0,"stderrBytes":0,"outputTruncated":false}', '"x"', deep(100_000)];
  for (const result of results) {
    const socketPath = await rawServer(t, (id) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${result}}\n`);
    const run = await runCli(GUEST_CLI, ['-c', `unix:${socketPath}`, '--no-stdin', '--execute', 'anything'], { timeoutMs: 20_000 });
    t.equal(run.exitCode, 255, `result ${result.slice(0, 30)}: exit 255`);
    t.match(run.stderr, /malformed result|nested deeper/, 'the error says what was wrong');
  }
  const socketPath = await rawServer(t, (id) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"exitCode":3,"signal":null,"timedOut":false,"isCanceled":false,"durationMs":1,"stdoutBytes":0,"stderrBytes":0,"outputTruncated":false}}\n`);
  const ok = await runCli(GUEST_CLI, ['-c', `unix:${socketPath}`, '--no-stdin', '--execute', 'anything'], { timeoutMs: 20_000 });
  t.equal(ok.exitCode, 3, 'a well-formed result still gives the command\'s exit code');
});

t.test('request ids reach NEGOTIATOR_REQUEST_ID sanitised; a 200 KB argument is spawnFailed', async (t) => {
  const agent = await startSocketAgent({ prespawn: 0 });
  t.teardown(() => agent.close());
  const raw = await connectRawPeer(agent.socketPath, 'host');
  t.teardown(() => raw.close());
  const execute = (id: string, args: string[]): string => `${JSON.stringify({ jsonrpc: '2.0', id, method: 'execute', params: { command: 'show-env', args, stdin: false, timeoutMs: 5000, window: 1 << 20 } })}\n`;
  raw.send(execute('a\u001b[31mb\u0000c', []));
  const result = await raw.waitFor(answered('a\u001b[31mb\u0000c'));
  t.match(result, { result: { exitCode: 0 } }, 'an id with an ESC and a NUL runs');
  const output = raw.received
    .filter((m) => m.method === METHODS.executeOutput)
    .map((m) => Buffer.from((m.params as { data: string }).data, 'base64').toString())
    .join('');
  t.match(output, /^NEGOTIATOR_REQUEST_ID=a\[31mbc$/m, 'control characters removed');
  raw.send(execute('big', ['x'.repeat(200_000)]));
  t.match(await raw.waitFor(answered('big')), { error: { code: ERROR_CODES.spawnFailed, message: /arguments are too long/ } });
});

t.test('cancel and flow-control violations are answered with -32002 / -32024 errors', async (t) => {
  const agent = await startSocketAgent();
  t.teardown(() => agent.close());
  const raw = await connectRawPeer(agent.socketPath, 'host');
  t.teardown(() => raw.close());
  const execute = (id: number): string => `${JSON.stringify({ jsonrpc: '2.0', id, method: 'execute', params: { command: 'hang-with-child', args: [], stdin: false, timeoutMs: 60_000, window: 1 << 20 } })}\n`;
  raw.send(execute(1) + execute(2));
  await new Promise((resolve) => setTimeout(resolve, 300));
  raw.send(`{"jsonrpc":"2.0","method":"cancel","params":{"id":1}}\n{"jsonrpc":"2.0","method":"execute.outputAck","params":{"id":2,"bytes":999999}}\n`);
  t.match(await raw.waitFor(answered(1)), { error: { code: ERROR_CODES.requestCanceled } });
  t.match(await raw.waitFor(answered(2)), { error: { code: ERROR_CODES.flowControl } });
});

t.test('a relayed deep result fails cleanly through the daemon', async (t) => {
  const socketPath = await rawServer(t, (id) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${deep(100_000)}}\n`);
  const upstream = new RpcPeer(await connectChannel(socketPath, 2000), { localInfo: testAgentInfo('host'), label: 'raw' });
  upstream.start();
  t.teardown(() => upstream.close());
  await t.rejects(executeRemote(upstream, { command: 'x', timeoutMs: 20_000 }), { code: ERROR_CODES.invalidRequest, message: /nested deeper/ });
});

t.test('a peer that sends requests and never reads stops being read within its memory share', async (t) => {
  const agent = await startSocketAgent();
  t.teardown(() => agent.close());
  const raw = await connectRawPeer(agent.socketPath, 'host');
  t.teardown(() => raw.close());
  raw.socket.pause();
  let id = 0;
  const until = Date.now() + 3000;
  while (Date.now() < until) {
    const batch = Array.from({ length: 500 }, () => ping(++id)).join('');
    if (!raw.socket.write(batch)) await Promise.race([new Promise((resolve) => raw.socket.once('drain', resolve)), delay(Math.max(0, until - Date.now()))]);
  }
  await agent.log.waitFor(/not reading our messages \(\d+ bytes held for it, over its 8388608\)/);
  const held = processMemoryBudget().heldBytes;
  t.ok(held <= 10 * 1024 * 1024, `the process holds ${held} bytes for it (its share is 8 MiB)`);
  t.ok(held >= 4 * 1024 * 1024, 'queued answers are counted with their overhead');
});
