import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { createLogger } from '../../common/base/logger.js';
import { GuestTable } from '../../host/guest-table.js';
import { parseGuestSpec, parseGuestSpecs, StaticGuestWatcher, type StaticGuestSpec } from '../../host/static-guests.js';

const H2G = 'negotiator-host-to-guest.0';
const G2H = 'negotiator-guest-to-host.0';

// Wait until `condition` holds; reject after `ms`.
async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

// A short directory under /tmp (socket paths are limited to 107 bytes).
function shortTempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'sg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// Listen on a UNIX socket the way QEMU's `-chardev socket,server=on` does; closing removes the file.
async function listen(t: Test, socketPath: string): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return server;
}

function watchGuests(t: Test, specs: StaticGuestSpec[]) {
  const table = new GuestTable();
  const events: string[] = [];
  table.on('guest-up', (guest) => events.push(`up ${guest.name}`));
  table.on('guest-down', (guest) => events.push(`down ${guest.name}`));
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', format: 'journal', write: (line) => lines.push(line.trimEnd()) });
  const watcher = new StaticGuestWatcher({ specs, sink: table, logger });
  t.teardown(() => watcher.close());
  return { watcher, table, events, lines };
}

t.test('parseGuestSpec: a directory of sockets named after the channels', async (t) => {
  t.same(parseGuestSpec('vm1=/run/vm1'), { name: 'vm1', hostToGuest: `/run/vm1/${H2G}`, guestToHost: `/run/vm1/${G2H}` });
  t.same(parseGuestSpec('vm1=socks/', '/base'), { name: 'vm1', hostToGuest: `/base/socks/${H2G}`, guestToHost: `/base/socks/${G2H}` }, 'relative to cwd');
  t.same(parseGuestSpec('web.prod-2=./h2g=odd', '/b'), { name: 'web.prod-2', hostToGuest: `/b/h2g=odd/${H2G}`, guestToHost: `/b/h2g=odd/${G2H}` }, './ makes a directory that looks like a key a directory');
});

t.test('parseGuestSpec: explicit socket paths', async (t) => {
  t.same(parseGuestSpec('vm=h2g=/s/a,g2h=/s/b'), { name: 'vm', hostToGuest: '/s/a', guestToHost: '/s/b' });
  t.same(parseGuestSpec('vm=g2h=b,h2g=a', '/c'), { name: 'vm', hostToGuest: '/c/a', guestToHost: '/c/b' }, 'either order, relative to cwd');
  t.same(parseGuestSpec('vm=h2g=/s/a,b.sock'), { name: 'vm', hostToGuest: '/s/a,b.sock' }, 'a path may hold a comma; one channel is allowed');
  t.same(parseGuestSpec('vm=g2h=/s/x=y'), { name: 'vm', guestToHost: '/s/x=y' }, 'and an equals sign');
});

t.test('parseGuestSpec: bad specs say what is wrong and what is expected', async (t) => {
  const help = 'NAME=DIR (a directory holding the sockets negotiator-host-to-guest.0 and negotiator-guest-to-host.0) or NAME=h2g=PATH,g2h=PATH';
  const cases: Array<[string, string]> = [
    ['vm1', `Expected \`--guest\` to be ${help}, got \`vm1\``],
    ['vm1=', `Expected \`--guest\` to be ${help}, got \`vm1=\``],
    ['=/dir', '`--guest =/dir`: the guest name `` must be 1-128 letters, digits or . _ : @ + -'],
    ['my vm=/dir', '`--guest my vm=/dir`: the guest name `my vm` must be 1-128 letters, digits or . _ : @ + -'],
    ['vm=h2g=/a,gh2=/b', '`--guest vm=h2g=/a,gh2=/b`: unknown key `gh2`; use h2g=PATH and/or g2h=PATH'],
    ['vm=h2g=', '`--guest vm=h2g=`: `h2g=` needs a socket path'],
    ['vm=h2g=/a,h2g=/b', '`--guest vm=h2g=/a,h2g=/b`: `h2g` is given twice'],
  ];
  for (const [option, message] of cases) t.throws(() => parseGuestSpec(option), { name: 'ConfigError', message }, option);
  t.throws(() => parseGuestSpecs(['a=/x', 'b=/y', 'a=/z']), { name: 'ConfigError', message: '`--guest a=...` is given twice; give each guest once' });
  t.same(parseGuestSpecs(['a=/x', 'b=h2g=/y']).map((spec) => spec.name), ['a', 'b']);
});

t.test('a static guest is up while both its sockets exist', async (t) => {
  const dir = shortTempDir(t);
  const { watcher, table, events, lines } = watchGuests(t, [parseGuestSpec(`vm=${dir}`)]);
  await watcher.ready;
  t.same(table.list(), []);
  t.same(lines, [`<6>guest vm: waiting for ${dir}/${H2G} and ${dir}/${G2H} (created when its QEMU starts)`]);
  const h2g = await listen(t, path.join(dir, H2G));
  await listen(t, path.join(dir, G2H));
  await until(() => table.get('vm') !== undefined, 'vm up');
  t.same(table.get('vm'), { name: 'vm', source: 'static', channels: { hostToGuest: { path: `${dir}/${H2G}` }, guestToHost: { path: `${dir}/${G2H}` } } });
  await new Promise<void>((resolve) => h2g.close(() => resolve()));
  await until(() => table.get('vm') === undefined, 'vm down');
  t.same(events, ['up vm', 'down vm']);
  t.equal(lines.length, 1, 'waiting is logged once');
});

t.test('a socket directory that does not exist yet is picked up when it appears', async (t) => {
  const dir = path.join(shortTempDir(t), 'later');
  const { watcher, table } = watchGuests(t, [parseGuestSpec(`vm=${dir}`)]);
  await watcher.ready;
  // QEMU starts a little later, as it would: chokidar sets up the watch of a missing path's parent
  // asynchronously after its 'ready'. The periodic recheck (30 s) is far beyond the wait below.
  await sleep(500);
  mkdirSync(dir);
  await listen(t, path.join(dir, H2G));
  await listen(t, path.join(dir, G2H));
  await until(() => table.get('vm') !== undefined, 'vm up');
  rmSync(dir, { recursive: true });
  await until(() => table.get('vm') === undefined, 'vm down');
});

t.test('a path that is not a socket is reported once and never up', async (t) => {
  const dir = shortTempDir(t);
  writeFileSync(path.join(dir, 'file'), '');
  const { watcher, table, lines } = watchGuests(t, [parseGuestSpec(`vm=h2g=${dir}/file`)]);
  await watcher.ready;
  await listen(t, path.join(dir, 'other')); // another change in the directory: a recheck
  await sleep(200); // nothing should happen; the assertion below fails if the guest came up
  t.equal(table.get('vm'), undefined);
  t.same(lines.filter((line) => line.startsWith('<4>')), [
    `<4>guest vm: ${dir}/file exists but is not a socket; point --guest at the sockets QEMU creates (-chardev socket,server=on,path=...)`,
  ]);
});

t.test('close() is idempotent and reports nothing afterwards', async (t) => {
  const dir = shortTempDir(t);
  const { watcher, events } = watchGuests(t, [parseGuestSpec(`vm=${dir}`)]);
  await watcher.ready;
  const closing = watcher.close();
  t.equal(watcher.close(), closing);
  await closing;
  await listen(t, path.join(dir, H2G));
  await listen(t, path.join(dir, G2H));
  await sleep(200);
  t.same(events, []);
});

t.test('closed before watching started (chokidar loads on first use): ready settles, nothing is reported', async (t) => {
  const dir = shortTempDir(t);
  const { watcher, events } = watchGuests(t, [parseGuestSpec(`vm=${dir}`)]);
  await watcher.close();
  const timeout = new AbortController();
  try {
    await Promise.race([watcher.ready, sleep(5000, undefined, { signal: timeout.signal }).then(() => Promise.reject(new Error('ready did not settle within 5 s')))]);
  } finally {
    timeout.abort();
  }
  await sleep(100);
  t.notOk(process.getActiveResourcesInfo().includes('FSEventWrap'), 'no directory is watched');
  await listen(t, path.join(dir, H2G));
  await listen(t, path.join(dir, G2H));
  await sleep(200);
  t.same(events, []);
});

t.test('no specs: nothing to watch, ready at once', async (t) => {
  const { watcher } = watchGuests(t, []);
  await watcher.ready;
  await watcher.close();
  t.pass('closed');
});
