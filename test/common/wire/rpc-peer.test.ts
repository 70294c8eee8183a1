import t, { type Test } from 'tap';
import { setTimeout as delay } from 'node:timers/promises';
import { CanceledError, ChannelClosedError, HandshakeError, PeerRestartedError, RpcError, TimeoutError } from '../../../common/wire/errors.js';
import { ERROR_CODES, METHODS, PROTOCOL_VERSION } from '../../../common/wire/protocol.js';
import { createPeer, createPeerPair, createRecordingLogger, testAgentInfo } from '../../helpers/agents.js';
import { createMemoryChannelPair } from '../../helpers/memory-channel.js';

// Parse every JSON line an end wrote (skipping blank lines).
function writtenMessages(chunks: Buffer[]): Array<Record<string, unknown>> {
  return Buffer.concat(chunks)
    .toString('utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function readyPair(t: Test) {
  const pair = createPeerPair();
  t.teardown(() => Promise.all([pair.host.close(), pair.guest.close()]));
  pair.host.start();
  pair.guest.start();
  await Promise.all([pair.host.waitForReady(2000), pair.guest.waitForReady(2000)]);
  return pair;
}

t.test('handshake: a bare newline, then hello carrying the agent info and a fresh nonce', async (t) => {
  const { host, guest, hostEnd } = await readyPair(t);
  t.equal(hostEnd.written[0]?.toString(), '\n', 'the first byte sent ends any stale half line');
  const hello = writtenMessages(hostEnd.written)[0]!;
  t.match(hello, { jsonrpc: '2.0', method: 'hello', params: { protocol: PROTOCOL_VERSION, name: 'negotiator', side: 'host', os: { hostname: 'host-box' } } });
  t.match((hello.params as { nonce: string }).nonce, /^[0-9a-f]{32}$/);
  t.equal(guest.peerInfo?.nonce, host.localInfo.nonce, 'the guest knows the host by its nonce');
  t.equal(host.peerInfo?.side, 'guest');
  const other = createPeer(createMemoryChannelPair()[0], 'host');
  t.not(other.localInfo.nonce, host.localInfo.nonce, 'each connection has its own nonce');
});

t.test('requests both ways, many in flight, answered out of order and matched by id', async (t) => {
  const { host, guest } = await readyPair(t);
  guest.handle('square', async (params) => {
    const n = (params as { n: number }).n;
    await delay((n * 7) % 13);
    return n * n;
  });
  host.handle('double', (params) => (params as { n: number }).n * 2);
  const squares = await Promise.all(Array.from({ length: 200 }, (_, n) => host.request('square', { n })));
  t.same(squares, Array.from({ length: 200 }, (_, n) => n * n));
  t.equal(await guest.request('double', { n: 21 }), 42, 'the guest can call the host on the same connection');
  t.match(await host.request(METHODS.ping, {}), { time: Number });
  t.match(await guest.request(METHODS.info, {}), { side: 'host', nonce: host.localInfo.nonce });
});

t.test('stale lines before the handshake are discarded, never executed', async (t) => {
  const { host, guest, guestEnd, guestLog } = createPeerPair();
  t.teardown(() => Promise.all([host.close(), guest.close()]));
  let executed = 0;
  guest.handle('reboot', () => ++executed);
  // What an earlier host left in the channel: half a line, then a whole request.
  guestEnd.inject('{"jsonrpc":"2.0","id":7,"meth');
  guestEnd.inject('\n{"jsonrpc":"2.0","id":8,"method":"reboot"}\n');
  await delay(20);
  guest.start();
  host.start();
  await guest.waitForReady(2000);
  t.equal(executed, 0, 'the stale request was not run');
  await guestLog.waitFor(/discarded 2 stale line\(s\)/);
  t.equal(await host.request('reboot', {}), 1, 'a fresh request runs');
});

t.test('no request is sent before the handshake; it goes out once the peer answers', async (t) => {
  const { host, guest, hostEnd } = createPeerPair();
  t.teardown(() => Promise.all([host.close(), guest.close()]));
  guest.handle('hi', () => 'there');
  host.start();
  const answer = host.request('hi', {}, { timeoutMs: 5000 });
  await delay(30);
  t.same([...new Set(writtenMessages(hostEnd.written).map((m) => m.method))], ['hello'], 'only hellos while the guest is silent');
  guest.start();
  t.equal(await answer, 'there');
});

t.test('a request with no handshake times out with a message that says so', async (t) => {
  const [end] = createMemoryChannelPair();
  const peer = createPeer(end, 'host', { label: 'guest vm1' });
  t.teardown(() => peer.close());
  peer.start();
  await t.rejects(peer.request('ping', {}, { timeoutMs: 100 }), {
    name: 'TimeoutError',
    message: 'request `ping` to guest vm1 timed out after 100 ms: the handshake with the peer did not complete (is its agent running?)',
  });
  await t.rejects(peer.waitForReady(50), /no answer to the handshake from guest vm1 within 50 ms/);
});

t.test('"no timeout" (0) bounds the command, not the wait for an agent that never answers the handshake', async (t) => {
  const [end] = createMemoryChannelPair();
  const peer = createPeer(end, 'host', { label: 'guest vm1', handshakeTimeoutMs: 80 });
  t.teardown(() => peer.close());
  peer.start();
  await t.rejects(peer.request('ping', {}, { timeoutMs: 0 }), {
    name: 'TimeoutError',
    message: 'no answer to the handshake from guest vm1 within 80 ms: is the negotiator agent running on the other side?',
  });
  await t.rejects(peer.waitForReady(0), { name: 'TimeoutError', message: /^no answer to the handshake from guest vm1 within 80 ms/ });
});

t.test('a request without a deadline, once sent, waits for its answer past the handshake bound', async (t) => {
  const pair = createPeerPair({ handshakeTimeoutMs: 50 });
  t.teardown(() => Promise.all([pair.host.close(), pair.guest.close()]));
  pair.guest.handle('slow', async () => {
    await delay(200);
    return 'done';
  });
  pair.host.start();
  pair.guest.start();
  t.equal(await pair.host.request('slow', {}, { timeoutMs: 0 }), 'done');
});

t.test('bad input gets an error reply or a warning, and the peer keeps serving', async (t) => {
  const { host, guest, guestEnd, guestLog } = await readyPair(t);
  const replies = (): Array<Record<string, unknown>> => writtenMessages(guestEnd.written).filter((m) => 'error' in m);
  guestEnd.inject('this is not json\n');
  guestEnd.inject(Buffer.from([0xff, 0xfe, 0x0a]));
  guestEnd.inject('"a string"\n');
  guestEnd.inject('{"jsonrpc":"2.0","id":1001,"method":"no.such.method"}\n');
  guestEnd.inject('{"id":1002,"method":"ping"}\n');
  guestEnd.inject('{"jsonrpc":"2.0","id":99999,"result":1}\n');
  guestEnd.inject('{"jsonrpc":"2.0","method":"cancel","params":{}}\n');
  guestEnd.inject('{"jsonrpc":"2.0","method":"no.such.event"}\n');
  guestEnd.inject(`{"jsonrpc":"2.0","id":1003,"method":"ping","params":"${'x'.repeat(1024 * 1024 + 10)}"}\n`);
  t.match(await host.request(METHODS.ping, {}), { time: Number }, 'still serving after the garbage');
  await guestLog.waitFor(/malformed JSON .*this is not json/);
  await guestLog.waitFor(/not valid UTF-8/);
  await guestLog.waitFor(/not a JSON-RPC 2.0 message: "a string"/);
  await guestLog.waitFor(/response for unknown request id 99999/);
  await guestLog.waitFor(/`cancel` without a valid `id`/);
  await guestLog.waitFor(/unknown notification `no.such.event`/);
  await guestLog.waitFor(/a line of 10486\d\d bytes, over the 1048576-byte limit \(`maxLineBytes`\), was skipped/);
  const errors = replies();
  t.match(errors.find((m) => m.id === 1001), {
    error: { code: ERROR_CODES.methodNotFound, message: /^unknown method `no.such.method`; this agent supports: commands.list|info, ping/ },
  });
  t.match(errors.find((m) => m.id === 1002), { error: { code: ERROR_CODES.invalidRequest } });
  t.notOk(errors.some((m) => m.id === 1003), 'the oversized request was skipped, not answered');
});

t.test('a handler that throws answers internalError with its message; RpcError passes through', async (t) => {
  const { host, guest } = await readyPair(t);
  guest.handle('boom', () => {
    throw new Error('disk on fire');
  });
  guest.handle('refuse', () => {
    throw new RpcError(ERROR_CODES.commandNotFound, 'no such thing', { available: ['a'] });
  });
  await t.rejects(host.request('boom', {}), { name: 'RpcError', code: ERROR_CODES.internalError, message: 'internal error: disk on fire' });
  await t.rejects(host.request('refuse', {}), { code: ERROR_CODES.commandNotFound, message: 'no such thing', data: { available: ['a'] } });
});

t.test('a timed-out request fails clearly and its handler is told to stop', async (t) => {
  const { host, guest } = await readyPair(t);
  let abortedWith: unknown;
  guest.handle('hang', (_params, context) => new Promise((_resolve, reject) => {
    context.signal.addEventListener('abort', () => {
      abortedWith = context.signal.reason;
      reject(context.signal.reason);
    });
  }));
  const error = await host.request('hang', {}, { timeoutMs: 50 }).catch((e: unknown) => e);
  t.type(error, TimeoutError);
  t.equal((error as Error).message, 'request `hang` to host-peer timed out after 50 ms: the peer did not answer in time');
  while (abortedWith === undefined) await delay(5);
  t.type(abortedWith, CanceledError, 'the cancel notification aborted the handler');
});

t.test('an AbortSignal cancels the request on both sides', async (t) => {
  const { host, guest } = await readyPair(t);
  let resolveStarted!: (signal: AbortSignal) => void;
  const started = { promise: new Promise<AbortSignal>((resolve) => (resolveStarted = resolve)) };
  guest.handle('hang', (_p, context) => {
    resolveStarted(context.signal);
    return new Promise(() => {});
  });
  const controller = new AbortController();
  const request = host.request('hang', {}, { signal: controller.signal });
  const remoteSignal = await started.promise;
  controller.abort();
  await t.rejects(request, { name: 'CanceledError', message: 'request `hang` to host-peer was canceled' });
  while (!remoteSignal.aborted) await delay(5);
  t.pass('the remote handler saw the cancel');
});

t.test('a handler that looks at its signal only after the cancel still sees it aborted, with the reason', async (t) => {
  const { host, guest } = await readyPair(t);
  let context!: { signal: AbortSignal };
  let resolveStarted!: () => void;
  const started = new Promise<void>((resolve) => (resolveStarted = resolve));
  guest.handle('late-look', (_p, ctx) => {
    context = ctx;
    resolveStarted();
    return new Promise(() => {});
  });
  const controller = new AbortController();
  const request = host.request('late-look', {}, { signal: controller.signal });
  await started;
  controller.abort();
  await t.rejects(request, { name: 'CanceledError' });
  await delay(50);
  t.equal(context.signal.aborted, true, 'created after the cancel arrived, already aborted');
  t.type(context.signal.reason, CanceledError);
  t.equal(context.signal, context.signal, 'one signal per request');
});

t.test('closing the channel rejects every pending request at once and aborts handlers', async (t) => {
  const { host, guest } = await readyPair(t);
  const aborted: AbortSignal[] = [];
  guest.handle('hang', (_p, context) => {
    aborted.push(context.signal);
    return new Promise(() => {});
  });
  const requests = Array.from({ length: 5 }, () => host.request('hang', {}, { timeoutMs: 0 }).catch((e: unknown) => e));
  while (aborted.length < 5) await delay(5);
  await guest.close();
  const errors = await Promise.all(requests);
  for (const error of errors) t.type(error, ChannelClosedError);
  t.match((errors[0] as Error).message, /^channel host-peer closed/);
  t.ok(aborted.every((s) => s.aborted), 'every running handler was aborted');
  await t.rejects(host.request('ping', {}), ChannelClosedError, 'later requests fail at once');
  await guest.close();
  t.pass('close is idempotent');
});

t.test('a restarted peer (new nonce) ends the old session: its requests are abandoned', async (t) => {
  const { host, guest, hostEnd } = await readyPair(t);
  guest.handle('hang', () => new Promise(() => {}));
  const pending = host.request('hang', {}, { timeoutMs: 0 });
  await delay(20);
  const readyAgain = new Promise<boolean>((resolve) => host.once('ready', (_info, restarted: boolean) => resolve(restarted)));
  // The guest agent restarts: a new hello with another nonce arrives on the same channel.
  hostEnd.inject(`${JSON.stringify({ jsonrpc: '2.0', id: 'hello-x-1', method: 'hello', params: { ...testAgentInfo('guest'), nonce: 'f'.repeat(32) } })}\n`);
  await t.rejects(pending, PeerRestartedError);
  t.equal(await readyAgain, true, 'ready is emitted again with restarted = true');
  t.equal(host.peerInfo?.nonce, 'f'.repeat(32));
});

t.test('protocol version mismatch: a clear error naming both versions, on both sides', async (t) => {
  const [a, b] = createMemoryChannelPair();
  const hostLog = createRecordingLogger();
  const host = createPeer(a, 'host', { logger: hostLog });
  const guest = createPeer(b, 'guest', { localInfo: testAgentInfo('guest', { protocol: 99, version: '9.0.0' }) });
  t.teardown(() => Promise.all([host.close(), guest.close()]));
  host.start();
  guest.start();
  const error = await host.waitForReady(2000).catch((e: unknown) => e);
  t.type(error, HandshakeError);
  t.match((error as Error).message, /protocol version mismatch: this host agent \(negotiator 0\.0\.0-test\) speaks protocol 1, the peer \(negotiator 9\.0\.0\) speaks protocol 99/);
  await t.rejects(guest.waitForReady(2000), { name: 'HandshakeError', message: /speaks protocol 1.*protocol 99|protocol 99.*protocol 1/ });
  t.notOk(host.isReady);
});

t.test('resync (the far end reconnected) handshakes again with a new nonce', async (t) => {
  const { host, guest, guestEnd } = await readyPair(t);
  const oldNonce = guest.localInfo.nonce;
  const again = new Promise((resolve) => host.once('ready', resolve));
  guestEnd.triggerReset();
  await again;
  t.not(guest.localInfo.nonce, oldNonce);
  await guest.waitForReady(2000);
  t.equal(host.peerInfo?.nonce, guest.localInfo.nonce);
  t.match(await guest.request('ping', {}), { time: Number });
});

t.test('options are validated before any I/O', async (t) => {
  const [a] = createMemoryChannelPair();
  t.throws(() => createPeer(a, 'host', { requestTimeoutMs: -1 }), {
    name: 'ConfigError',
    message: 'Expected the `requestTimeoutMs` option to be a non-negative integer, got `-1`',
  });
  const peer = createPeer(a, 'host');
  t.throws(() => peer.startRequest('ping', {}, { timeoutMs: 1.5 }), /`timeoutMs` option to be a non-negative integer, got `1.5`/);
  await peer.close();
});

t.test('a channel that echoes our own hello back is not taken for the peer', async (t) => {
  const [end] = createMemoryChannelPair();
  const log = createRecordingLogger();
  const peer = createPeer(end, 'host', { logger: log, helloRetryMs: 0 });
  t.teardown(() => peer.close());
  peer.start();
  await new Promise((resolve) => setTimeout(resolve, 10));
  // Everything we wrote comes straight back, as over a serial line still in cooked (echo) mode.
  for (const chunk of end.written) end.inject(chunk);
  await log.waitFor(/sent back our own hello: the channel echoes what we write/);
  t.notOk(peer.isReady, 'not ready with ourselves as the peer');
  const replies = Buffer.concat(end.written).toString().split('\n').filter((l) => l.includes('"result"'));
  t.same(replies, [], 'and we did not answer our own hello');
});
