// A FIFO stands in for the virtio-serial port. Opened read-write it is a loopback: what the channel writes
// comes back. Opened read-only it reads like a port: 0 with no writer (host absent), EAGAIN with a quiet
// writer (host there), and the writer coming and going is the host leaving and coming back.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { ChannelClosedError } from '../../common/wire/errors.js';
import { createDeviceChannel, openPortChannel, READ_MECHANISMS, type PortChannel, type PortChannelOptions } from '../../guest/port-channel.js';
import { createReadWakeup, onGrid } from '../../guest/port-read-wakeup.js';
import { openSerialChannel } from '../../guest/serial-tty.js';
import { createRecordingLogger } from '../helpers/agents.js';

const { O_RDONLY, O_RDWR, O_WRONLY, O_NONBLOCK } = fs.constants;
const PORT_CHANNEL_JS = fileURLToPath(new URL('../../guest/port-channel.js', import.meta.url));

function makeFifo(t: Test): string {
  const fifo = path.join(t.testdir({}), 'port');
  execFileSync('mkfifo', [fifo]);
  return fifo;
}

function openFifoChannel(t: Test, fifo: string, flags: number, options: PortChannelOptions): PortChannel {
  const channel = createDeviceChannel(fs.openSync(fifo, flags | O_NONBLOCK), { description: 'test port', ...options });
  t.teardown(() => channel.close());
  return channel;
}

interface Received {
  readonly bytes: () => Buffer;
  /** Resolves once `count` bytes have come; rejects after timeoutMs. */
  waitForBytes(count: number, timeoutMs?: number): Promise<Buffer>;
}

function collect(channel: PortChannel): Received {
  const chunks: Buffer[] = [];
  let size = 0;
  const waiters = new Set<() => void>();
  channel.onData((chunk) => {
    chunks.push(chunk);
    size += chunk.length;
    for (const waiter of waiters) waiter();
  });
  const bytes = (): Buffer => Buffer.concat(chunks);
  return {
    bytes,
    waitForBytes: (count, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms with ${size} of ${count} bytes`));
        }, timeoutMs);
        const check = (): void => {
          if (size < count) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(bytes());
        };
        waiters.add(check);
        check();
      }),
  };
}

// Poll a condition that has no event of its own (hostConnected), failing after timeoutMs.
async function until(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

for (const readMechanism of READ_MECHANISMS) {
  t.test(`${readMechanism}: bytes come back through a loopback in order`, async (t) => {
    const channel = openFifoChannel(t, makeFifo(t), O_RDWR, { readMechanism });
    t.equal(channel.readMechanism, readMechanism);
    const received = collect(channel);
    const payload = randomBytes(3 * 1024 * 1024);
    for (let offset = 0, size = 1; offset < payload.length; offset += size, size = (size * 7 + 13) % 100_000) {
      await channel.write(payload.subarray(offset, offset + size));
    }
    t.equal(sha256(await received.waitForBytes(payload.length)), sha256(payload));
    t.equal(channel.hostConnected, true);
    t.equal(channel.pendingWriteBytes, 0);
  });

  t.test(`${readMechanism}: the host leaving and coming back is seen, and onReset runs before its data`, async (t) => {
    const fifo = makeFifo(t);
    const channel = openFifoChannel(t, fifo, O_RDONLY, { readMechanism, pollIntervalMs: 20 });
    const events: string[] = [];
    channel.onReset(() => events.push('reset'));
    channel.onData((chunk) => events.push(`data:${chunk.toString()}`));
    t.equal(channel.hostConnected, undefined, 'unknown before the first read');
    await until('the host to be seen absent', () => channel.hostConnected === false);

    let writer = fs.openSync(fifo, O_WRONLY | O_NONBLOCK);
    await until('the host to be seen', () => channel.hostConnected === true);
    t.same(events, ['reset'], 'a host that was absent at start counts as coming back');
    fs.writeSync(writer, 'one');
    await until('data', () => events.length === 2);
    fs.closeSync(writer);
    await until('the host to be seen gone', () => channel.hostConnected === false);

    writer = fs.openSync(fifo, O_WRONLY | O_NONBLOCK);
    fs.writeSync(writer, 'two');
    await until('data after the reset', () => events.length === 4);
    t.same(events, ['reset', 'data:one', 'reset', 'data:two']);
    fs.closeSync(writer);
  });

  t.test(`${readMechanism}: onAbsent runs when the host leaves, so that its peer stops being ready`, async (t) => {
    const fifo = makeFifo(t);
    const channel = openFifoChannel(t, fifo, O_RDONLY, { readMechanism, pollIntervalMs: 20 });
    const events: string[] = [];
    channel.onReset(() => events.push('reset'));
    channel.onAbsent(() => events.push('absent'));
    await until('the host to be seen absent', () => channel.hostConnected === false);
    const writer = fs.openSync(fifo, O_WRONLY | O_NONBLOCK);
    await until('the host to be seen', () => channel.hostConnected === true);
    fs.closeSync(writer);
    await until('the host to be seen gone', () => channel.hostConnected === false);
    t.same(events, ['absent', 'reset', 'absent']);
  });

  t.test(`${readMechanism}: bytes the host sent just before leaving are all delivered`, async (t) => {
    const fifo = makeFifo(t);
    const channel = openFifoChannel(t, fifo, O_RDONLY, { readMechanism, pollIntervalMs: 20 });
    const received = collect(channel);
    await until('the host to be seen absent', () => channel.hostConnected === false);
    const payload = randomBytes(60 * 1024);
    const writer = fs.openSync(fifo, O_WRONLY | O_NONBLOCK);
    t.equal(fs.writeSync(writer, payload), payload.length);
    fs.closeSync(writer);
    t.equal(sha256(await received.waitForBytes(payload.length)), sha256(payload));
    await until('the host to be seen gone', () => channel.hostConnected === false);
  });

  t.test(`${readMechanism}: writes while the host is absent are dropped at once`, async (t) => {
    const fifo = makeFifo(t);
    // Read-only: a write that reached the fd would fail with EBADF and close the channel.
    const channel = openFifoChannel(t, fifo, O_RDONLY, { readMechanism, pollIntervalMs: 20 });
    let closed = false;
    channel.onClose(() => (closed = true));
    await until('the host to be seen absent', () => channel.hostConnected === false);
    await channel.write(Buffer.alloc(1024 * 1024));
    t.equal(channel.pendingWriteBytes, 0);
    t.notOk(closed);
  });

  t.test(`${readMechanism}: writes honour backpressure`, async (t) => {
    const channel = openFifoChannel(t, makeFifo(t), O_RDWR, { readMechanism, writeHighWaterMark: 1000 });
    const received = collect(channel);
    channel.pause();
    await channel.write(Buffer.from('under the high-water mark'));
    const big = randomBytes(1024 * 1024);
    let written = false;
    const writing = channel.write(big).then(() => (written = true));
    await sleep(100);
    t.notOk(written, 'a write the device cannot take stays pending');
    t.ok(channel.pendingWriteBytes > 0 && channel.pendingWriteBytes < big.length, `${channel.pendingWriteBytes} bytes still queued`);
    t.equal(received.bytes().length, 0, 'nothing delivered while paused');
    channel.resume();
    await writing;
    const all = await received.waitForBytes(25 + big.length);
    t.equal(sha256(all.subarray(25)), sha256(big));
    t.equal(channel.pendingWriteBytes, 0);
  });

  t.test(`${readMechanism}: close is idempotent, rejects unsent writes and closes the fd`, async (t) => {
    const fd = fs.openSync(makeFifo(t), O_RDWR | O_NONBLOCK);
    const channel = createDeviceChannel(fd, { readMechanism, description: 'test port' });
    const closeCalls: Array<Error | undefined> = [];
    channel.onClose((error) => closeCalls.push(error));
    channel.pause();
    const unsent = channel.write(Buffer.alloc(1024 * 1024)).then(() => 'resolved', (error: unknown) => error);
    const first = channel.close();
    t.equal(channel.close(), first, 'the same promise');
    await first;
    t.match(await unsent, new ChannelClosedError('test port closed before the bytes were sent.'));
    await t.rejects(channel.write(Buffer.from('x')), { name: 'ChannelClosedError', message: 'Cannot write to test port: the channel is closed.' });
    t.same(closeCalls, [undefined], 'onClose once, without an error');
    t.throws(() => fs.fstatSync(fd), { code: 'EBADF' });
    await channel.close();
  });

  t.test(`${readMechanism}: a read error closes the channel with that error`, async (t) => {
    const channel = createDeviceChannel(fs.openSync(t.testdir({}), O_RDONLY | O_NONBLOCK), { readMechanism, description: 'a directory' });
    const error = await new Promise<Error | undefined>((resolve) => channel.onClose(resolve));
    t.match(error?.message, /^Reading a directory failed: EISDIR/);
    await t.rejects(channel.write(Buffer.from('x')), ChannelClosedError);
  });
}

t.test('a throwing listener is logged and data keeps flowing', async (t) => {
  const logger = createRecordingLogger();
  const channel = openFifoChannel(t, makeFifo(t), O_RDWR, { logger });
  channel.onData(() => {
    throw new Error('listener bug');
  });
  const received = collect(channel);
  await channel.write(Buffer.from('a'));
  await received.waitForBytes(1);
  await channel.write(Buffer.from('b'));
  t.equal((await received.waitForBytes(2)).toString(), 'ab');
  t.match(await logger.waitFor(/listener bug/), 'A data listener of test port threw: listener bug');
});

t.test('openPortChannel validates options before opening and describes the device', async (t) => {
  await t.rejects(openPortChannel('/nonexistent/port', { pollIntervalMs: 0 }), {
    name: 'ConfigError',
    message: 'Expected the `pollIntervalMs` option to be a positive integer, got `0`.',
  });
  await t.rejects(openPortChannel('/nonexistent/port', { readMechanism: 'select' as 'poll' }), { name: 'ConfigError', message: /`readMechanism`/ });
  await t.rejects(openPortChannel('/nonexistent/port'), { name: 'DeviceOpenError', code: 'ENOENT' });
  const fifo = makeFifo(t);
  const channel = await openPortChannel(fifo);
  t.teardown(() => channel.close());
  t.equal(channel.description, fifo);
  t.equal(channel.readMechanism, 'epoll', 'epoll where this Node has the pipe handle');
  const received = collect(channel);
  await channel.write(Buffer.from('loop'));
  t.equal((await received.waitForBytes(4)).toString(), 'loop');
});

t.test('waiting channels hold no threadpool thread: fs calls still run', async (t) => {
  // Four threads in the default pool: eight channels blocked in it would stall readFile forever.
  for (let index = 0; index < 4; index++) {
    const absent = openFifoChannel(t, makeFifo(t), O_RDONLY, {});
    await until('the host to be seen absent', () => absent.hostConnected === false);
    await absent.write(Buffer.from('dropped'));
    const full = openFifoChannel(t, makeFifo(t), O_RDWR, {});
    full.pause();
    void full.write(Buffer.alloc(1024 * 1024)).catch(() => {});
  }
  const read = readFile(fileURLToPath(import.meta.url));
  const timeout = sleep(3000).then(() => 'stalled');
  t.not(await Promise.race([read, timeout]), 'stalled');
});

// A child process with a channel in a given state gets SIGTERM, closes the channel and must exit 0 at once.
async function runUntilSigterm(t: Test, fifo: string, setup: string): Promise<{ code: number | null; ms: number }> {
  const script = `
    import fs from 'node:fs';
    import { createDeviceChannel } from ${JSON.stringify(PORT_CHANNEL_JS)};
    const { O_RDONLY, O_RDWR, O_NONBLOCK } = fs.constants;
    ${setup}
    process.on('SIGTERM', () => void channel.close());
    channel.onClose(() => console.log('closed'));
    setTimeout(() => console.log('ready'), 200);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void child.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (data: Buffer) => data.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`child exited early with ${code}`)));
  });
  const started = Date.now();
  child.kill('SIGTERM');
  const code = await Promise.race([
    new Promise<number | null>((resolve) => child.once('exit', resolve)),
    sleep(5000).then(() => {
      throw new Error('the child did not exit within 5 s of SIGTERM');
    }),
  ]);
  return { code, ms: Date.now() - started };
}

t.test('a process exits 0 on SIGTERM with the host absent and a write dropped', async (t) => {
  const fifo = makeFifo(t);
  const { code } = await runUntilSigterm(
    t,
    fifo,
    `const channel = createDeviceChannel(fs.openSync(${JSON.stringify(fifo)}, O_RDONLY | O_NONBLOCK), { pollIntervalMs: 50 });
     setTimeout(() => channel.write(Buffer.alloc(100000)).then(() => console.log('dropped')), 100);`,
  );
  t.equal(code, 0);
});

t.test('a process exits 0 on SIGTERM with a write blocked by a full device', async (t) => {
  const fifo = makeFifo(t);
  const { code } = await runUntilSigterm(
    t,
    fifo,
    `const channel = createDeviceChannel(fs.openSync(${JSON.stringify(fifo)}, O_RDWR | O_NONBLOCK));
     channel.pause();
     channel.write(Buffer.alloc(4 << 20)).catch((error) => console.log(error.name));`,
  );
  t.equal(code, 0);
});

// A fresh process (which way is in use is logged once per process): two loopback channels carry bytes, and
// the debug lines naming the read mechanism are printed. `withoutBinding` removes process.binding first, as
// a Node without the internal pipe handle would be.
async function runTwoChannels(t: Test, withoutBinding: boolean): Promise<{ mechanisms: string[]; mechanismLines: string[]; epollRefusal: string }> {
  const fifos = [makeFifo(t), makeFifo(t)];
  const script = `
    ${withoutBinding ? 'delete process.binding;' : ''}
    import fs from 'node:fs';
    const { createDeviceChannel, openPortChannel } = await import(${JSON.stringify(PORT_CHANNEL_JS)});
    const lines = [];
    const logger = { level: 'debug', error() {}, warn() {}, info() {}, debug: (m) => lines.push(m), child: () => logger };
    const mechanisms = [];
    for (const fifo of ${JSON.stringify(fifos)}) {
      const channel = createDeviceChannel(fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK), { logger });
      const echoed = new Promise((resolve) => channel.onData((chunk) => chunk.toString() === 'ping' && resolve()));
      await channel.write(Buffer.from('ping'));
      await echoed;
      mechanisms.push(channel.readMechanism);
      await channel.close();
    }
    const epollRefusal = await openPortChannel('/nonexistent', { readMechanism: 'epoll' }).catch((error) => error.name + ': ' + error.message);
    console.log(JSON.stringify({ mechanisms, mechanismLines: lines.filter((line) => line.startsWith('Ports are read')), epollRefusal }));
  `;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  t.equal(result.status, 0, `the child ran: ${result.stderr}`);
  return JSON.parse(result.stdout) as { mechanisms: string[]; mechanismLines: string[]; epollRefusal: string };
}

t.test('every supported Node line has the epoll fast path, and says so once at debug level', async (t) => {
  const { mechanisms, mechanismLines, epollRefusal } = await runTwoChannels(t, false);
  t.same(mechanisms, ['epoll', 'epoll'], `Node ${process.version} has the internal pipe handle`);
  t.same(mechanismLines, ["Ports are read when epoll says so (Node's internal pipe handle, process.binding('pipe_wrap'))."]);
  t.match(epollRefusal, /^DeviceOpenError: /, 'epoll may be asked for');
});

t.test('a Node without the internal pipe handle falls back to polling, and says so once at debug level', async (t) => {
  const { mechanisms, mechanismLines, epollRefusal } = await runTwoChannels(t, true);
  t.same(mechanisms, ['poll', 'poll'], 'auto chose poll, and bytes still flow');
  t.same(mechanismLines, ["Ports are read on a timer, every 500 ms at most: this Node has no usable internal pipe handle (process.binding('pipe_wrap'))."]);
  t.equal(epollRefusal, "ConfigError: The `epoll` read mechanism needs Node's internal pipe handle, which this Node lacks: use `auto` or `poll`.");
});

t.test('createDeviceChannel refuses a blocking fd', async (t) => {
  const fd = fs.openSync(makeFifo(t), O_RDWR);
  t.teardown(() => fs.closeSync(fd));
  t.throws(() => createDeviceChannel(fd), {
    name: 'ConfigError',
    message: `Expected fd ${fd} to be open with \`O_NONBLOCK\` (add \`fs.constants.O_NONBLOCK\` to the open flags).`,
  });
});

// Two pseudo-terminals joined by socat stand in for a serial line and the host's end of it.
const ptySkip = spawnSync('sh', ['-c', 'command -v socat && command -v stty'], { stdio: 'ignore' }).status === 0 ? false : 'needs socat and stty';
t.test('openSerialChannel makes the line raw at the speed asked and carries bytes both ways', { skip: ptySkip }, async (t) => {
  const dir = t.testdir({});
  const [line, hostSide] = [path.join(dir, 'ttyS1'), path.join(dir, 'host')];
  const socat = spawn('socat', [`pty,raw,echo=0,link=${line}`, `pty,raw,echo=0,link=${hostSide}`], { stdio: 'ignore' });
  t.teardown(() => void socat.kill());
  await until('socat to make the ptys', () => fs.existsSync(line) && fs.existsSync(hostSide));
  // Undo the raw mode socat set, to see openSerialChannel set it.
  execFileSync('stty', ['-F', line, 'sane', '9600']);

  const channel = await openSerialChannel(line, { baud: 115200 });
  t.teardown(() => channel.close());
  t.equal(channel.description, `${line}@115200`);
  const settings = execFileSync('stty', ['-F', line, '-a'], { encoding: 'utf8' });
  t.match(settings, /speed 115200 baud/);
  t.match(settings, /-icanon\b/);
  t.match(settings, /-echo\b/);
  t.match(settings, /\bclocal\b/);

  const host = openFifoChannel(t, hostSide, O_RDWR, {});
  const fromGuest = collect(host);
  const fromHost = collect(channel);
  const payload = randomBytes(200 * 1024);
  await channel.write(payload);
  t.equal(sha256(await fromGuest.waitForBytes(payload.length)), sha256(payload), 'guest to host, every byte value intact');
  await host.write(Buffer.from('\x00\x03\x04\r\n\xff'));
  t.same(await fromHost.waitForBytes(6), Buffer.from('\x00\x03\x04\r\n\xff'), 'control characters pass through raw');
  t.equal(channel.hostConnected, true);
});

t.test('openSerialChannel refuses a bad speed and a device that is not a tty', async (t) => {
  await t.rejects(openSerialChannel('/dev/ttyS1', { baud: 12345 }), {
    name: 'ConfigError',
    message: /^Expected the `baud` option to be one of 1200, .*, got `12345`\.$/,
  });
  const fifo = makeFifo(t);
  const openFds = fs.readdirSync('/proc/self/fd').length;
  await t.rejects(openSerialChannel(fifo), {
    name: 'DeviceOpenError',
    code: 'STTY',
    message: new RegExp(`^Cannot set ${fifo} to raw mode at 38400 baud with \`stty -F ${fifo} raw .*Check that it is a serial line`),
  });
  t.equal(fs.readdirSync('/proc/self/fd').length, openFds, 'the fd of the failed attempt was closed');
});

t.test('while the host stays away, reads drift apart up to 4x the poll interval, on a shared grid', async (t) => {
  t.equal(onGrid(100, 250, 1_000), 250, 'ends on the grid');
  t.equal(onGrid(500, 250, 1_000), 500, 'already on it');
  t.equal(onGrid(500, 250, 1_001), 749);
  // A FIFO with no writer reads 0 at once: the host is away, and stays away.
  const fd = fs.openSync(makeFifo(t), O_RDONLY | O_NONBLOCK);
  const reads: number[] = [];
  const intervalMs = 40;
  const wakeup = createReadWakeup(fd, { mechanism: 'poll', pollIntervalMs: intervalMs, logger: createRecordingLogger() }, {
    read: () => {
      reads.push(performance.now());
      if (reads.length < 10) wakeup.readWhenHostBack();
    },
    onChunk: () => {},
    onError: (error) => t.fail(error.message),
  });
  t.teardown(() => new Promise<void>((resolve) => wakeup.close(resolve)));
  wakeup.readWhenHostBack();
  reads.push(performance.now());
  const deadline = Date.now() + 10_000;
  while (reads.length < 10 && Date.now() < deadline) await sleep(20);
  const gaps = reads.slice(1).map((at, index) => at - reads[index]!);
  t.equal(gaps.length, 9, 'every read came');
  // Timers never fire early: lower bounds hold at any load (1 ms of slack for timer rounding).
  const expected = [40, 60, 90, 135, 160, 160, 160, 160, 160];
  gaps.forEach((gap, index) => t.ok(gap >= expected[index]! - 1, `gap ${index + 1}: ${gap.toFixed(1)} ms >= ${expected[index]} ms`));
  t.ok(gaps.at(-1)! < 160 + 40 + 500, 'and capped (with the grid and some load)');
});

// Replace fs.readSync or fs.writeSync for this test, as the channel's modules see them (node:fs's named
// exports follow the object after syncBuiltinESMExports).
function spyOnFs<K extends 'readSync' | 'writeSync'>(t: Test, name: K, wrap: (original: (typeof fs)[K]) => (typeof fs)[K]): void {
  const original = fs[name];
  fs[name] = wrap(original);
  syncBuiltinESMExports();
  t.teardown(() => {
    fs[name] = original;
    syncBuiltinESMExports();
  });
}

t.test('a frame is written in pieces of 32 KiB at most: small ones gathered and copied, large ones from their own memory', async (t) => {
  const fd = fs.openSync(makeFifo(t), O_RDWR | O_NONBLOCK);
  const header = Buffer.alloc(20, 0x68);
  const payload = randomBytes(64 * 1024);
  const end = Buffer.from('\n');
  const writes: Array<{ bytes: number; fromPayload: boolean }> = [];
  spyOnFs(t, 'writeSync', (original) =>
    ((...args: Parameters<typeof fs.writeSync>) => {
      const written = (original as (...a: unknown[]) => number)(...args);
      if (args[0] === fd) writes.push({ bytes: written, fromPayload: (args[1] as unknown as Buffer).buffer === payload.buffer });
      return written;
    }) as typeof fs.writeSync,
  );
  const channel = createDeviceChannel(fd, { readMechanism: 'poll', description: 'test port' });
  t.teardown(() => channel.close());
  const received = collect(channel);
  await channel.writev!([header, payload, end]);
  const sent = Buffer.concat([header, payload, end]);
  t.equal(sha256(await received.waitForBytes(sent.length)), sha256(sent), 'the bytes, in order');
  // The header and the payload's first 32,748 bytes in one copied write; the next 32 KiB straight from
  // the payload; its last 20 bytes and the end gathered again.
  t.same(writes, [
    { bytes: 32 * 1024, fromPayload: false },
    { bytes: 32 * 1024, fromPayload: true },
    { bytes: 21, fromPayload: false },
  ]);
});

t.test('port reads that come together are delivered together; a delivery holds at most 4x its bytes', async (t) => {
  // A port read gives at most 4 KiB: so does this FIFO's, here.
  spyOnFs(t, 'readSync', (original) =>
    ((fd: number, buffer: Buffer, offset: number, length: number, position: null) => original(fd, buffer, offset, Math.min(length, 4096), position)) as typeof fs.readSync,
  );
  const fifo = makeFifo(t);
  const channel = openFifoChannel(t, fifo, O_RDONLY, { readMechanism: 'poll', pollIntervalMs: 20 });
  const events: string[] = [];
  const chunks: Buffer[] = [];
  channel.onData((chunk) => {
    chunks.push(chunk);
    events.push(`data ${chunk.length}`);
  });
  channel.onAbsent(() => events.push('absent'));
  const writer = fs.openSync(fifo, O_WRONLY | O_NONBLOCK);
  // Written before the channel's first read (it reads on a later turn): 16 port reads' worth at once (all
  // that a FIFO holds).
  const bulk = randomBytes(64 * 1024);
  fs.writeSync(writer, bulk);
  await until('the bulk to arrive', () => chunks.length > 0);
  t.same(events, [`data ${bulk.length}`], '16 reads, one delivery');
  t.ok(chunks[0]!.buffer.byteLength > bulk.length, 'handed over in the buffer it was read into, not copied');
  t.ok(chunks[0]!.buffer.byteLength <= 4 * bulk.length, `held in ${chunks[0]!.buffer.byteLength} bytes`);
  const small = randomBytes(1000);
  fs.writeSync(writer, small);
  fs.closeSync(writer);
  await until('the host to be seen gone', () => events.includes('absent'));
  t.same(events, [`data ${bulk.length}`, 'data 1000', 'absent'], 'the last bytes, then the host gone');
  t.not(chunks[1]!.buffer, chunks[0]!.buffer, 'a small delivery is a copy, not a view of the gather buffer');
  t.ok(chunks[1]!.buffer.byteLength <= Buffer.poolSize, `held in ${chunks[1]!.buffer.byteLength} bytes (Node's pool at most)`);
  t.equal(sha256(Buffer.concat(chunks)), sha256(Buffer.concat([bulk, small])));
});
