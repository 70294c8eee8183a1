// Streams between two real peers (memory channel) to real TCP services on the loopback: half-close,
// flow control per stream, the errors (unknown service, refused, reset, limit, too old, peer stopping,
// idle) and the host's per-guest policy.
import t from 'tap';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStream, type RemoteStream } from '../../../common/streams/client.js';
import { connectService, registerStreamService } from '../../../common/streams/server.js';
import { LOCAL_SOCKET_BUFFER_BYTES } from '../../../common/streams/serve.js';
import { createServiceRegistry } from '../../../common/streams/services.js';
import { parseServiceOption } from '../../../common/streams/address.js';
import { ERROR_CODES } from '../../../common/wire/protocol.js';
import { RpcPeer } from '../../../common/wire/rpc-peer.js';
import { createMemoryChannelPair } from '../../helpers/memory-channel.js';
import { createRecordingLogger, testAgentInfo } from '../../helpers/agents.js';
import { waitUntil } from '../../helpers/processes.js';

// A service that reads until the client's EOF, then answers `<bytes> <sha256>` and closes.
async function startDigestService(): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
    });
    socket.on('end', () => socket.end(`${bytes} ${hash.digest('hex')}\n`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
// A service that writes `size` random bytes, then its digest line, then closes.
async function startSourceService(size: number): Promise<net.Server> {
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.end(randomBytes(size));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}
const portOf = (server: net.Server): number => (server.address() as net.AddressInfo).port;

// Open a stream whose errors are read from `result` (a Duplex's 'error' event needs a listener).
async function open(opener: RpcPeer, service: string, window?: number): Promise<RemoteStream> {
  const stream = await openStream(opener, { service, ...(window ? { window } : {}) });
  stream.on('error', () => {});
  return stream;
}

async function readAll(stream: RemoteStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const digest = await startDigestService();
const unixDigestPath = path.join(mkdtempSync(path.join(os.tmpdir(), 'negotiator-streams-')), 'digest.sock');
const unixDigest = net.createServer({ allowHalfOpen: true }, (socket) => {
  socket.on('error', () => {});
  socket.on('end', () => socket.end('done\n'));
  socket.resume();
});
await new Promise<void>((resolve) => unixDigest.listen(unixDigestPath, resolve));
const source = await startSourceService(8 * 1024 * 1024);
const resetter = net.createServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
await new Promise<void>((resolve) => resetter.listen(0, '127.0.0.1', resolve));
const closedPort = await (async () => {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = portOf(s);
  await new Promise((resolve) => s.close(resolve));
  return port;
})();

function setUp(options: { maxStreams?: number; idleTimeoutMs?: number; guest?: string; openerCapabilities?: string[]; serverCapabilities?: string[] } = {}) {
  const [a, b] = createMemoryChannelPair();
  const log = createRecordingLogger();
  const opener = new RpcPeer(a, { localInfo: testAgentInfo('guest', { capabilities: options.openerCapabilities ?? ['streams'] }), label: 'to-host', helloRetryMs: 50 });
  const serving = new RpcPeer(b, { localInfo: testAgentInfo('host', { capabilities: options.serverCapabilities ?? ['streams'] }), label: 'guest vm1', helloRetryMs: 50, logger: log });
  const services = createServiceRegistry({
    services: [
      parseServiceOption(`digest=tcp:127.0.0.1:${portOf(digest)}`),
      parseServiceOption(`source=tcp:127.0.0.1:${portOf(source)}`),
      parseServiceOption(`resetter=tcp:127.0.0.1:${portOf(resetter)}`),
      parseServiceOption(`closed=tcp:127.0.0.1:${closedPort}`),
      parseServiceOption(`vm2only=tcp:127.0.0.1:${portOf(digest)} guests=vm2`),
      parseServiceOption(`unixdigest=unix:${unixDigestPath}`),
    ],
  });
  const server = registerStreamService(serving, {
    services,
    logger: log,
    peerName: 'guest vm1',
    ...(options.guest !== undefined ? { guest: options.guest } : {}),
    maxStreams: options.maxStreams ?? 256,
    idleTimeoutMs: options.idleTimeoutMs ?? 0,
  });
  opener.start();
  serving.start();
  return { opener, serving, server, log, close: async () => Promise.all([opener.close(), serving.close()]) };
}

t.teardown(async () => {
  for (const server of [digest, source, resetter, unixDigest]) await new Promise((resolve) => server.close(resolve));
});

t.test('half-close: the client EOF reaches the service, and its reply still comes back', async (t) => {
  const { opener, close, log } = setUp({ guest: 'vm1' });
  t.teardown(close);
  const stream = await open(opener, 'digest');
  const payload = randomBytes(5 * 1024 * 1024 + 3);
  stream.end(payload);
  const reply = (await readAll(stream)).toString();
  t.equal(reply, `${payload.length} ${createHash('sha256').update(payload).digest('hex')}\n`);
  t.same(await stream.result, { bytesIn: payload.length, bytesOut: reply.length });
  await log.waitFor(/guest vm1 opened service `digest`/);
  await log.waitFor(/stream \d+ to `digest` closed, 5242883 bytes in/);
});

t.test('100 streams at once, byte-exact, and a reader that never reads stalls only its own stream', async (t) => {
  const { opener, close } = setUp({ guest: 'vm1' });
  t.teardown(close);
  const stalled = await open(opener, 'source', 64 * 1024);
  stalled.end();
  const runs = Array.from({ length: 100 }, async (_, index) => {
    const stream = await open(opener, 'digest', 256 * 1024);
    const payload = randomBytes(64 * 1024 + index * 997);
    stream.end(payload);
    return (await readAll(stream)).toString() === `${payload.length} ${createHash('sha256').update(payload).digest('hex')}\n`;
  });
  const results = await Promise.all(runs);
  t.equal(results.filter(Boolean).length, 100, 'every stream got its own bytes back');
  t.ok(stalled.readableLength <= 64 * 1024 * 2, `the stalled stream holds at most two windows (${stalled.readableLength} bytes)`);
  t.equal((await readAll(stalled)).length, 8 * 1024 * 1024);
  t.equal((await stalled.result).bytesOut, 8 * 1024 * 1024, 'the stalled stream completes once read');
});

t.test('errors: unknown service with the list, refused and reset with errno, policy', async (t) => {
  const { opener, close } = setUp({ guest: 'vm1' });
  t.teardown(close);
  const unknown = await open(opener, 'nope');
  unknown.end();
  await t.rejects(unknown.result, { code: ERROR_CODES.unknownService, message: /no service `nope` on the host for guest vm1; available: closed, digest, resetter, source, unixdigest$/ });
  const hidden = await open(opener, 'vm2only');
  await t.rejects(hidden.result, { code: ERROR_CODES.unknownService }, 'a service limited to other guests is invisible');
  const refused = await open(opener, 'closed');
  await t.rejects(refused.result, { code: ERROR_CODES.streamRefused, data: { errno: 'ECONNREFUSED', service: 'closed' } });
  const reset = await open(opener, 'resetter');
  reset.write('hello');
  await t.rejects(reset.result, { code: ERROR_CODES.streamReset, data: { errno: 'ECONNRESET' } });
});

t.test('limit reached, peer too old', async (t) => {
  const { opener, close } = setUp({ maxStreams: 2 });
  t.teardown(close);
  const first = await open(opener, 'digest');
  const second = await open(opener, 'digest');
  const third = await open(opener, 'digest');
  await t.rejects(third.result, { code: ERROR_CODES.streamLimit, message: /too many streams open .*\(2, the other side's --max-streams\)/ });
  first.end();
  second.end();
  await Promise.all([readAll(first), readAll(second)]);
  const old = setUp({ serverCapabilities: ['ping', 'execute'] });
  t.teardown(old.close);
  await t.rejects(openStream(old.opener, { service: 'digest' }), { code: ERROR_CODES.peerTooOld, message: /is too old: it does not offer `streams`, which needs negotiator 0\.2\.0 or later/ });
});

t.test('the other side stopping ends its streams at once, both ways', async (t) => {
  const { opener, server, close } = setUp();
  t.teardown(close);
  const stream = await open(opener, 'digest');
  stream.write('partial');
  await waitUntil('the service to see the connection', () => server.open > 0);
  const started = Date.now();
  server.peerStopping('guest rebooting');
  await t.rejects(stream.result, { code: ERROR_CODES.peerRestarted, message: /is stopping \(guest rebooting\)/ });
  t.ok(Date.now() - started < 1000, 'within a second');
});

t.test('idle timeout resets a quiet stream', async (t) => {
  const { opener, close } = setUp({ idleTimeoutMs: 200 });
  t.teardown(close);
  const stream = await open(opener, 'digest');
  await t.rejects(stream.result, { code: ERROR_CODES.requestTimeout, message: /without traffic \(--stream-idle-timeout\)/ });
});

t.test('destroying the stream cancels it on the other side (the service sees the reset)', async (t) => {
  const { opener, server, close } = setUp();
  t.teardown(close);
  const stream = await open(opener, 'digest');
  stream.write('x');
  await waitUntil('the service to see the connection', () => server.open > 0);
  stream.destroy();
  await once(stream, 'close');
  await waitUntil('the service to see the connection closed', () => server.open === 0);
  t.equal(server.open, 0);
});

t.test('a canceled stream to a UNIX-socket service closes it without taking the serving side down (regression)', async (t) => {
  // resetAndDestroy() throws for a UNIX socket: it crashed the daemon on every cancel of such a stream.
  const { opener, server, close } = setUp();
  t.teardown(close);
  const stream = await open(opener, 'unixdigest');
  stream.write('x');
  await waitUntil('the service to see the connection', () => server.open > 0);
  stream.destroy();
  await waitUntil('the service to see the connection closed', () => server.open === 0);
  const again = await open(opener, 'unixdigest');
  again.end('y');
  t.equal((await readAll(again)).toString(), 'done\n', 'still serving');
});

t.test('a service connection reads ahead one largest chunk, not Node\'s 16 KiB (less than one socket read)', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-buffer-'));
  const server = net.createServer((socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(path.join(dir, 'svc.sock'), resolve));
  t.teardown(() => server.close());
  const socket = await connectService(parseServiceOption(`svc=unix:${path.join(dir, 'svc.sock')}`), 1000);
  t.equal(socket.readableHighWaterMark, LOCAL_SOCKET_BUFFER_BYTES);
  t.ok(LOCAL_SOCKET_BUFFER_BYTES >= 64 * 1024, 'at least one socket read');
  t.equal((socket as net.Socket).allowHalfOpen, true, 'half-close still carried');
  socket.destroy();
});

t.test('a missing service directory is reported as one, with the command that fixes it', async (t) => {
  const missing = path.join(t.testdir({}), 'services.d');
  const log = createRecordingLogger();
  const services = createServiceRegistry({ directories: [missing], logger: log, watch: false });
  await services.ready;
  t.same(await services.list(), []);
  t.ok(
    log.lines.includes(`warn Service directory \`${missing}\` does not exist: its services are unavailable until you create it (\`mkdir -p ${missing}\`).`),
    log.lines.join('\n'),
  );
});
