// Binary frames (common/wire/frame-codec.ts, message-reader.ts, message-writer.ts): exact bytes, the
// capability negotiated both ways, malformed frames handled like malformed lines, and the write
// scheduler's order (control lines first, ids in turn, nothing overtakes its id's bytes).
import t from 'tap';
import { MemoryBudget } from '../../../common/wire/memory-budget.js';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { ByteChannel } from '../../../common/wire/byte-channel.js';
import { FRAME_MAX_PAYLOAD, FRAME_SYNC_BYTES, encodeFrame } from '../../../common/wire/frame-codec.js';
import { MessageReader, type IncomingMessage } from '../../../common/wire/message-reader.js';
import { BULK_AHEAD_BYTES, MessageWriter } from '../../../common/wire/message-writer.js';
import { FRAMES_CAPABILITY, METHODS } from '../../../common/wire/protocol.js';
import { silentLogger } from '../../../common/base/logger.js';
import { bulkDataOf } from '../../../common/wire/bulk-line.js';
import { createPeer, createPeerPair, createRecordingLogger, testAgentInfo } from '../../helpers/agents.js';
import { createMemoryChannelPair, type MemoryChannel } from '../../helpers/memory-channel.js';

const framesInfo = { capabilities: ['ping', FRAMES_CAPABILITY] };

t.test('a frame is header, method, id, payload, newline: byte for byte', async (t) => {
  const frame = encodeFrame('execute.output', 7, 'stdout', Buffer.from('hi\n'));
  t.equal(frame.toString('hex'), 'f8' + '01' + '01' + '0e' + '01' + '00000003' + Buffer.from('execute.output7hi\n\n').toString('hex'));
  const input = encodeFrame('execute.input', 'req-1', undefined, Buffer.alloc(0));
  t.equal(input.toString('latin1'), '\xf8\x01\x00\x0d\x07\x00\x00\x00\x00execute.input"req-1"\n');
  t.throws(() => encodeFrame('execute.output', 1, 'stdout', Buffer.alloc(FRAME_MAX_PAYLOAD + 1)), RangeError, 'a payload past the limit is never sent');
  t.throws(() => encodeFrame('bad method', 1, undefined, Buffer.alloc(1)), RangeError);
});

function collect(options: { frames: boolean; maxLineBytes?: number }) {
  const messages: IncomingMessage[] = [];
  const problems: string[] = [];
  const reader = new MessageReader({
    maxLineBytes: options.maxLineBytes ?? 1024 * 1024,
    onMessage: (message) => messages.push(message),
    onInvalid: (what) => problems.push(what),
    onLineProblem: (what) => problems.push(what),
    onRefusedResponse: (_id, error) => problems.push(error),
    onInternalError: (error) => problems.push(String(error)),
  });
  reader.setFrames(options.frames);
  return { reader, messages, problems };
}

const ping = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping"}\n');

t.test('frames and lines interleave, whatever the chunk boundaries', async (t) => {
  const data = randomBytes(FRAME_MAX_PAYLOAD);
  const stream = Buffer.concat([ping, encodeFrame('execute.output', 3, 'stderr', data), encodeFrame('stream.output', 9, undefined, Buffer.from('\n\n')), ping]);
  for (const size of [1, 7, 4096, stream.length]) {
    const { reader, messages, problems } = collect({ frames: true });
    for (let at = 0; at < stream.length; at += size) reader.push(stream.subarray(at, at + size));
    t.same(problems, [], `chunks of ${size}: no problem`);
    t.same(messages.map((m) => m.kind), ['request', 'notification', 'notification', 'request']);
    t.same(messages[1], { kind: 'notification', method: 'execute.output', params: { id: 3, stream: 'stderr', data } });
    t.same(messages[2], { kind: 'notification', method: 'stream.output', params: { id: 9, data: Buffer.from('\n\n') } });
  }
});

t.test('a payload is a copy of its bytes, never a view that would keep the whole chunk it came in', async (t) => {
  const payload = randomBytes(64 * 1024);
  const frame = encodeFrame('stream.output', 1, undefined, payload);
  // 256 KiB in all, as a port delivers at most: the payload is a quarter of it.
  const chunk = Buffer.concat([frame, Buffer.alloc(256 * 1024 - frame.length, 0x0a)]);
  const { reader, messages, problems } = collect({ frames: true });
  reader.push(chunk);
  t.same(problems, []);
  const data = (messages[0] as { params: { data: Buffer } }).params.data;
  t.same(data, payload);
  t.not(data.buffer, chunk.buffer, 'not a view of the 256 KiB chunk');
  t.equal(data.buffer.byteLength, payload.length, 'held in its own size');
});

t.test('malformed frames are reported and skipped to the next newline; the next line is read', async (t) => {
  const good = encodeFrame('execute.input', 5, undefined, Buffer.from('abc'));
  const tooLong = Buffer.from(good);
  tooLong.writeUInt32BE(FRAME_MAX_PAYLOAD + 1, 5);
  const badType = Buffer.from(good);
  badType[1] = 9;
  const badId = encodeFrame('execute.input', 5, undefined, Buffer.from('abc'));
  badId.write('x', 9 + 'execute.input'.length, 'latin1');
  const wrongLength = Buffer.from(good);
  wrongLength.writeUInt32BE(2, 5);
  const cases: Record<string, [Buffer, RegExp]> = {
    'a length past the limit': [tooLong, /malformed frame header \(payload length 65537 over the 65536-byte limit\)/],
    'an unknown type': [badType, /unknown frame type 9/],
    'a malformed id': [badId, /malformed id "x"/],
    'a header cut short by a newline': [Buffer.from([0xf8, 0x01, 0x0a]), /malformed frame header/],
    'a length that is wrong': [wrongLength, /not followed by a newline \(a wrong length\?\) was dropped; 26 byte\(s\) skipped up to the next newline/],
    'an unknown method': [encodeFrame('no.such', 5, undefined, Buffer.from('abc')), /a frame of unknown method `no.such` \(3 bytes\) was skipped/],
  };
  for (const [what, [bytes, problem]] of Object.entries(cases)) {
    const { reader, messages, problems } = collect({ frames: true });
    reader.push(Buffer.concat([bytes, ping, good]));
    t.equal(problems.length, 1, `${what}: one problem`);
    t.match(problems[0], problem, what);
    t.same(messages.map((m) => m.kind), ['request', 'notification'], `${what}: the line and the frame after it are read`);
  }
  const { reader, messages, problems } = collect({ frames: true });
  reader.push(good.subarray(0, 20));
  reader.end();
  t.match(problems, [/the channel ended in the middle of a frame \(20 bytes\)/]);
  t.same(messages, []);
});

t.test('a frame before negotiation is a malformed line like any other', async (t) => {
  const { reader, messages, problems } = collect({ frames: false });
  reader.push(Buffer.concat([encodeFrame('execute.input', 5, undefined, Buffer.from('abc')), ping]));
  t.match(problems, [/not valid UTF-8 was skipped/]);
  t.same(messages.map((m) => m.kind), ['request']);
});

t.test('a half frame from an agent that died is ended by the next agent\'s opening newlines', async (t) => {
  const { reader, messages, problems } = collect({ frames: true });
  reader.push(encodeFrame('execute.output', 5, 'stdout', randomBytes(FRAME_MAX_PAYLOAD)).subarray(0, 1000));
  // The new agent opens with FRAME_SYNC_BYTES newlines, then its hello.
  reader.push(Buffer.alloc(FRAME_SYNC_BYTES, '\n'));
  reader.push(Buffer.from('{"jsonrpc":"2.0","id":"hello-1","method":"hello","params":{}}\n'));
  t.equal(messages.at(-1)?.kind, 'request', 'the hello is read');
  t.match(messages.at(-1), { method: 'hello' });
  t.ok(problems.length <= 1, 'at most the cut frame is reported');
});

t.test('opening newlines in any chunking are skipped, and a line right after them is read whole', async (t) => {
  const { reader, messages, problems } = collect({ frames: true });
  const opening = Buffer.alloc(FRAME_SYNC_BYTES, '\n');
  const stream = Buffer.concat([opening, ping, opening.subarray(0, 3000), ping]);
  for (const size of [1023, 1024, 1025, 4096, stream.length]) {
    for (let at = 0; at < stream.length; at += size) reader.push(stream.subarray(at, at + size));
  }
  t.same(problems, []);
  t.equal(messages.length, 10, 'both pings of each of the five passes');
  t.ok(messages.every((m) => m.kind === 'request' && m.method === 'ping'));
});

t.test('a session opens with FRAME_SYNC_BYTES newlines, one on a fresh connection (a control socket client)', async (t) => {
  const [channelEnd, otherEnd] = createMemoryChannelPair();
  const onChannel = createPeer(channelEnd, 'host');
  const fresh = createPeer(otherEnd, 'guest', { freshConnection: true });
  t.teardown(() => Promise.all([onChannel.close(), fresh.close()]));
  onChannel.start();
  fresh.start();
  await Promise.all([onChannel.waitForReady(2000), fresh.waitForReady(2000)]);
  const leadingNewlines = (written: Buffer[]): number => {
    const bytes = Buffer.concat(written);
    let count = 0;
    while (bytes[count] === 0x0a) count++;
    return count;
  };
  t.equal(leadingNewlines(channelEnd.written), FRAME_SYNC_BYTES, 'a channel may hold a half frame of an earlier agent');
  t.equal(leadingNewlines(otherEnd.written), 1, 'a new connection holds nothing of anyone else');
});

t.test('negotiation: frames only when both hellos offer them, in both directions', async (t) => {
  for (const [hostFrames, guestFrames] of [[true, true], [true, false], [false, true]] as const) {
    const [hostEnd, guestEnd] = createMemoryChannelPair();
    const capabilities = (frames: boolean): string[] => (frames ? framesInfo.capabilities : ['ping']);
    const host = createPeer(hostEnd, 'host', { localInfo: testAgentInfo('host', { capabilities: capabilities(hostFrames) }) });
    const guest = createPeer(guestEnd, 'guest', { localInfo: testAgentInfo('guest', { capabilities: capabilities(guestFrames) }) });
    t.teardown(() => Promise.all([host.close(), guest.close()]));
    const onHost: Buffer[] = [];
    const onGuest: Buffer[] = [];
    host.onNotification('stream.output', (params) => onHost.push(bulkDataOf(params as Record<string, unknown>)!));
    guest.onNotification('stream.output', (params) => onGuest.push(bulkDataOf(params as Record<string, unknown>)!));
    host.start();
    guest.start();
    await Promise.all([host.waitForReady(2000), guest.waitForReady(2000)]);
    const data = randomBytes(FRAME_MAX_PAYLOAD * 2 + 5);
    await guest.sendBulk({ method: 'stream.output', id: 1, data });
    await host.sendBulk({ method: 'stream.output', id: 2, data });
    await until(() => Buffer.concat(onHost).length === data.length && Buffer.concat(onGuest).length === data.length);
    t.ok(Buffer.concat(onHost).equals(data) && Buffer.concat(onGuest).equals(data), 'the bytes arrive exact both ways');
    const both = hostFrames && guestFrames;
    const framed = (end: MemoryChannel): boolean => end.written.some((chunk) => chunk[0] === 0xf8);
    const what = `host ${hostFrames ? 'offers' : 'does not offer'}, guest ${guestFrames ? 'offers' : 'does not offer'}`;
    t.equal(framed(guestEnd), both, `${what}: the guest sends ${both ? 'frames' : 'JSON lines'}`);
    t.equal(framed(hostEnd), both, `${what}: so does the host`);
    t.equal(onHost.length, both ? 3 : 1, both ? 'split in frames of at most 64 KiB' : 'one JSON line');
  }
});

t.test('a frames peer keeps serving through garbage frames, and a request after them is answered', async (t) => {
  const logger = createRecordingLogger();
  const { guest, guestEnd } = createPeerPair({ localInfo: testAgentInfo('guest', framesInfo), logger });
  t.teardown(() => guest.close());
  guest.start();
  // Play the host by hand: answer the hello with a frames-capable info.
  guestEnd.inject('{"jsonrpc":"2.0","id":"h","method":"hello","params":' + JSON.stringify({ ...testAgentInfo('host', framesInfo), nonce: 'abcdefgh12' }) + '}\n');
  await until(() => guest.isReady);
  const bad = encodeFrame('execute.input', 5, undefined, Buffer.from('abc'));
  bad.writeUInt32BE(0xffffffff, 5);
  guestEnd.inject(Buffer.concat([bad, encodeFrame('no.such', 1, undefined, Buffer.alloc(10)), Buffer.from('{"jsonrpc":"2.0","id":42,"method":"ping"}\n')]));
  await until(() => guestEnd.written.some((chunk) => chunk.toString().includes('"id":42,"result"')));
  await logger.waitFor(/malformed frame header \(payload length 4294967295/);
  await logger.waitFor(/unknown method `no.such`/);
  t.pass('answered after both bad frames');
});

async function until(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await delay(5);
  }
}

// A channel that takes one write at a time and finishes it when the test says: the scheduler's order.
function slowChannel() {
  const written: Buffer[] = [];
  const waiting: Array<() => void> = [];
  let pending = 0;
  const channel: ByteChannel = {
    description: 'slow',
    onData() {},
    onClose() {},
    write(chunk) {
      written.push(chunk);
      pending += chunk.length;
      return new Promise((resolve) => waiting.push(() => ((pending -= chunk.length), resolve())));
    },
    get pendingWriteBytes() {
      return pending;
    },
    pause() {},
    resume() {},
    close: async () => {},
  };
  return { channel, written, drain: () => waiting.shift()?.() };
}

t.test('scheduler: control lines go ahead of queued bulk, ids take turns, a response waits for its id\'s bytes', async (t) => {
  const { channel, written, drain } = slowChannel();
  const writer = new MessageWriter(channel, { label: 'slow', logger: silentLogger, maxWriteBacklogBytes: 1 << 30, budget: new MemoryBudget(1 << 30), onWriteFailed: () => t.fail('no write fails') });
  writer.setFrames(true);
  const big = randomBytes(FRAME_MAX_PAYLOAD * 3);
  const a = writer.writeBulk({ method: METHODS.executeOutput, id: 1, stream: 'stdout', data: big });
  const b = writer.writeBulk({ method: METHODS.executeOutput, id: 2, stream: 'stdout', data: big });
  void writer.write({ jsonrpc: '2.0', id: 1, result: { exitCode: 0 } });
  void writer.write({ jsonrpc: '2.0', id: 99, result: { time: 1 } });
  // What was written, message by message (a write may gather several).
  const order = (): string[] => {
    const { reader, messages } = collect({ frames: true });
    for (const chunk of written) reader.push(chunk);
    return messages.map((m) => (m.kind === 'notification' ? `frame ${(m.params as { id: number }).id}` : `line ${m.id as number}`));
  };
  t.same(order(), ['frame 1', 'line 99'], 'the ping answer is written at once, behind only the chunk already in the channel');
  for (let i = 0; i < 8; i++) {
    drain();
    await delay(1);
  }
  // Id 2 joined the turns while 1's first chunk was in the channel: 1 was already next.
  t.same(order(), ['frame 1', 'line 99', 'frame 1', 'frame 2', 'frame 1', 'frame 2', 'line 1', 'frame 2'], 'ids in turn; the response to 1 after all of 1\'s bytes');
  drain();
  await Promise.all([a, b]);
  t.equal(writer.pendingBytes, 0);
});

t.test('scheduler: a session that ends drops its queued bulk and releases the senders', async (t) => {
  const { channel, written } = slowChannel();
  const writer = new MessageWriter(channel, { label: 'slow', logger: silentLogger, maxWriteBacklogBytes: 1 << 30, budget: new MemoryBudget(1 << 30), onWriteFailed: () => {} });
  const sent = writer.writeBulk({ method: METHODS.executeInput, id: 1, data: randomBytes(1000) });
  const queued = writer.writeBulk({ method: METHODS.executeInput, id: 1, data: randomBytes(1000) });
  t.ok(writer.pendingBytes > 2000);
  writer.dropQueued();
  await queued;
  t.equal(written.length, 1, 'only the chunk already handed to the channel went out');
  t.equal(written[0]![0], '{'.charCodeAt(0), 'a JSON line: frames were not negotiated');
  void sent;
});

t.test('scheduler: small chunks of one id gather into writes of about 64 KiB; a sender is held back past BULK_AHEAD_BYTES queued', async (t) => {
  const { channel, written, drain } = slowChannel();
  const writer = new MessageWriter(channel, { label: 'slow', logger: silentLogger, maxWriteBacklogBytes: 1 << 30, budget: new MemoryBudget(1 << 30), onWriteFailed: () => {} });
  writer.setFrames(true);
  const fit = BULK_AHEAD_BYTES / 4096;
  const chunks = Array.from({ length: fit + 8 }, (_, i) => Buffer.alloc(4096, i));
  let accepted = 0;
  for (const data of chunks) {
    const sent = writer.writeBulk({ method: METHODS.executeOutput, id: 1, stream: 'stdout', data });
    const first = await Promise.race([sent.then(() => true), delay(20).then(() => false)]);
    if (!first) break;
    accepted++;
  }
  t.ok(accepted >= fit - 4 && accepted <= fit + 1, `the sender went on without waiting for ~${BULK_AHEAD_BYTES} bytes (${accepted} chunks of 4 KiB), then waited`);
  t.equal(written.length, 1, 'one write in the channel (the first chunk), the rest queued');
  for (let i = 0; i < 10 && writer.pendingBytes > 0; i++) {
    drain();
    await delay(5);
  }
  const gathered = written.slice(1).map((bytes) => bytes.length);
  t.ok(gathered.length >= 2 && gathered.every((bytes) => bytes <= 64 * 1024 + 4200), `the queued chunks went out gathered, in writes of at most one batch (${gathered.join(', ')} bytes)`);
  t.ok(gathered.length < accepted / 4, 'far fewer writes than chunks');
  const { reader, messages } = collect({ frames: true });
  for (const chunk of written) reader.push(chunk);
  t.equal(messages.length, accepted + 1, 'each chunk is still its own frame');
});

t.test('scheduler: a channel with writev gets a frame\'s payload as the sender\'s buffer, not a copy', async (t) => {
  const gathered: Buffer[][] = [];
  const channel: ByteChannel = {
    description: 'gathering',
    onData() {},
    onClose() {},
    write: async (chunk) => void gathered.push([chunk]),
    writev: async (chunks) => void gathered.push([...chunks]),
    pendingWriteBytes: 0,
    pause() {},
    resume() {},
    close: async () => {},
  };
  const writer = new MessageWriter(channel, { label: 'gathering', logger: silentLogger, maxWriteBacklogBytes: 1 << 30, budget: new MemoryBudget(1 << 30), onWriteFailed: () => {} });
  writer.setFrames(true);
  const data = randomBytes(FRAME_MAX_PAYLOAD + 10);
  await writer.writeBulk({ method: METHODS.streamOutput, id: 3, data });
  await delay(1);
  const parts = gathered.flat();
  t.ok(parts.some((part) => part.buffer === data.buffer && part.byteOffset === data.byteOffset && part.length === FRAME_MAX_PAYLOAD), 'the first payload is the sender\'s memory');
  const { reader, messages } = collect({ frames: true });
  for (const part of parts) reader.push(part);
  t.same(messages.map((m) => bulkDataOf((m as { params: Record<string, unknown> }).params)), [data.subarray(0, FRAME_MAX_PAYLOAD), data.subarray(FRAME_MAX_PAYLOAD)], 'two frames, the bytes exact');
});

t.test('scheduler: a channel that says its write batch (a socket: 256 KiB) gets writes gathered up to it', async (t) => {
  const { channel, written, drain } = slowChannel();
  Object.defineProperty(channel, 'writeBatchBytes', { value: 256 * 1024 });
  const writer = new MessageWriter(channel, { label: 'batched', logger: silentLogger, maxWriteBacklogBytes: 1 << 30, budget: new MemoryBudget(1 << 30), onWriteFailed: () => {} });
  writer.setFrames(true);
  // Two ids, 512 KiB each in 64 KiB chunks: the first write takes one frame, the next ones gather.
  const sends = [1, 2].flatMap((id) => Array.from({ length: 8 }, () => writer.writeBulk({ method: METHODS.streamOutput, id, data: randomBytes(64 * 1024) })));
  let settled = false;
  void Promise.all(sends).then(() => (settled = true));
  for (let i = 0; i < 40 && !(settled && writer.pendingBytes === 0); i++) {
    drain();
    await delay(2);
  }
  t.ok(settled, 'every sender released');
  const sizes = written.map((bytes) => bytes.length);
  t.ok(sizes.slice(1, -1).every((bytes) => bytes > 192 * 1024 && bytes <= 256 * 1024 + 64 * 1024 + 200), `writes of about 256 KiB (${sizes.join(', ')})`);
  const { reader, messages } = collect({ frames: true });
  for (const chunk of written) reader.push(chunk);
  t.equal(messages.length, 16, 'every chunk its own frame');
  // The first frame went out alone, before id 2 queued anything; from then on the ids alternate.
  t.same(messages.slice(1, 5).map((m) => (m as { params: { id: number } }).params.id), [1, 2, 1, 2], 'the ids still take turns');
});
