// The services of the stream benchmarks (bench/stream-services.ts) and the client halves that time them:
// exact byte counts pass, and a transfer that loses or gains bytes fails instead of yielding a figure.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { downloadFrom, startStreamServices, uploadTo } from '../../bench/stream-services.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-stream-services-'));
const paths = { sink: path.join(dir, 'sink.sock'), source: path.join(dir, 'source.sock') };
const closeServices = await startStreamServices(paths);
t.teardown(() => (closeServices(), rmSync(dir, { recursive: true, force: true })));

const connect = (file: string): net.Socket => net.connect({ path: file, allowHalfOpen: true });
// Sizes around the services' 256 KiB write: none, less than one, a partial last one.
const SIZES = [0, 1, 256 * 1024, 2 * 256 * 1024 + 7];

t.test('upload: the sink counts exactly the bytes sent', async (t) => {
  for (const bytes of SIZES) await t.resolves(uploadTo(connect(paths.sink), bytes), `${bytes} bytes`);
});

t.test('download: the source writes exactly the bytes asked for', async (t) => {
  for (const bytes of SIZES) await t.resolves(downloadFrom(connect(paths.source), bytes), `${bytes} bytes`);
});

t.test('a transfer whose count does not match fails', async (t) => {
  // The sink answers with the length of the count line ("10\n": 3), one byte: not the 10 asked for.
  await t.rejects(downloadFrom(connect(paths.sink), 10), { message: 'received 1 of 10 bytes from the source' });
  // The source finds no count line in zeros and closes at their end without an answer.
  await t.rejects(uploadTo(connect(paths.source), 1000), { message: 'the sink counted "" of 1000 bytes sent' });
});
