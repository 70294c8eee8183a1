import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createLogger } from '../../common/base/logger.js';
import { createGuestDiscovery } from '../../host/guest-discovery.js';
import type { DiscoveredGuest } from '../../host/guest-model.js';
import { GuestTable } from '../../host/guest-table.js';
import { parseGuestSpec } from '../../host/static-guests.js';
import type { DomainSummary, Virsh, VirshStreamItem } from '../../host/virsh.js';

const fixture = (name: string): string => readFileSync(new URL(`../../../test/fixtures/libvirt/${name}`, import.meta.url), 'utf8');

const libvirtGuest = (id: number, state: 'connected' | 'disconnected' = 'disconnected'): DiscoveredGuest => ({
  name: 'vm',
  uuid: 'u-1',
  id,
  source: 'libvirt',
  channels: { hostToGuest: { path: `/run/${id}/h2g`, state }, guestToHost: { path: `/run/${id}/g2h`, state } },
});
const staticGuest: DiscoveredGuest = { name: 'vm', source: 'static', channels: { hostToGuest: { path: '/s/h2g' } } };

function record(table: GuestTable): string[] {
  const events: string[] = [];
  table.on('guest-up', (guest) => events.push(`up ${guest.source} ${guest.id ?? '-'}`));
  table.on('guest-down', (guest) => events.push(`down ${guest.source} ${guest.id ?? '-'}`));
  table.on('guest-changed', (guest, previous) => events.push(`changed ${previous.id ?? '-'}->${guest.id ?? '-'} ${guest.channels.hostToGuest?.state ?? '-'}`));
  return events;
}

t.test('up, changed (same instance), down+up (restart), down', async (t) => {
  const table = new GuestTable();
  const events = record(table);
  table.set(libvirtGuest(1));
  table.set(libvirtGuest(1));
  table.set(libvirtGuest(1, 'connected'));
  table.set(libvirtGuest(2));
  table.delete('libvirt', 'vm');
  table.delete('libvirt', 'vm');
  table.delete('static', 'nobody');
  t.same(events, ['up libvirt 1', 'changed 1->1 connected', 'down libvirt 1', 'up libvirt 2', 'down libvirt 2']);
});

t.test('guests handed out are frozen copies', async (t) => {
  const table = new GuestTable();
  const input = libvirtGuest(1);
  table.set(input);
  input.channels.hostToGuest = { path: '/elsewhere' };
  const kept = table.get('vm');
  t.same(kept, libvirtGuest(1), 'a later change to the input does not leak in');
  t.ok(Object.isFrozen(kept) && Object.isFrozen(kept?.channels) && Object.isFrozen(kept?.channels.hostToGuest));
  t.throws(() => {
    (kept as { name: string }).name = 'x';
  }, TypeError);
});

t.test('a --guest hides a libvirt domain of the same name, with one warning', async (t) => {
  const lines: string[] = [];
  const table = new GuestTable(createLogger({ format: 'journal', write: (line) => lines.push(line.trimEnd()) }));
  const events = record(table);
  table.set(libvirtGuest(1));
  table.set(staticGuest);
  table.set(libvirtGuest(1, 'connected'));
  t.same(table.get('vm'), staticGuest);
  table.delete('static', 'vm');
  t.same(events, ['up libvirt 1', 'down libvirt 1', 'up static -', 'down static -', 'up libvirt 1']);
  t.same(table.get('vm'), libvirtGuest(1, 'connected'), 'the libvirt guest was kept up to date while hidden');
  t.same(lines, ['<4>guest name `vm` is both a --guest option and a libvirt domain; using the --guest one (rename it to reach the domain)']);
});

t.test('list() is sorted by name', async (t) => {
  const table = new GuestTable();
  for (const name of ['c', 'a', 'b']) table.set({ name, source: 'static', channels: { guestToHost: { path: `/${name}` } } });
  t.same(table.list().map((guest) => guest.name), ['a', 'b', 'c']);
});

// A libvirt with one running domain (recorded XML) whose event stream stays quiet until aborted.
function quietLibvirt(): Virsh & { followed: number; ended: number } {
  return {
    uri: 'fake:///system',
    followed: 0,
    ended: 0,
    listDomains: async (): Promise<DomainSummary[]> => [{ name: 'ndisc-fix2', id: 4, uuid: '243dfc23-214a-4a5c-8d08-c6876a4998de' }],
    dumpXml: async () => fixture('libvirt9-transient-running-connected.xml'),
    async *followEvents({ signal }: { signal: AbortSignal }): AsyncGenerator<VirshStreamItem> {
      this.followed += 1;
      yield { type: 'stream-started' };
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      this.ended += 1;
    },
  };
}

t.test('createGuestDiscovery combines libvirt domains and --guest sockets', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const servers = ['negotiator-host-to-guest.0', 'negotiator-guest-to-host.0'].map((name) => createServer().listen(path.join(dir, name)));
  t.teardown(() => Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve)))));
  await Promise.all(servers.map((server) => new Promise((resolve) => server.once('listening', resolve))));
  const virsh = quietLibvirt();
  const discovery = createGuestDiscovery({ staticGuests: [parseGuestSpec(`demo=${dir}`)], libvirt: { virsh } });
  t.teardown(() => discovery.close());
  await discovery.ready;
  t.same(discovery.guests.list().map((guest) => [guest.name, guest.source, guest.channels.hostToGuest?.path]), [
    ['demo', 'static', path.join(dir, 'negotiator-host-to-guest.0')],
    ['ndisc-fix2', 'libvirt', '/var/lib/libvirt/qemu/channel/target/domain-4-ndisc-fix2/negotiator-host-to-guest.0'],
  ]);
  const closing = discovery.close();
  t.equal(discovery.close(), closing, 'close() is idempotent');
  await closing;
  t.same([virsh.followed, virsh.ended], [1, 1], 'the event stream was followed, then left');
});

t.test('without libvirt, --guest guests still work and the outage is one warning', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gr-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const server = createServer().listen(path.join(dir, 'h2g'));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  await new Promise((resolve) => server.once('listening', resolve));
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', format: 'journal', write: (line) => lines.push(line.trimEnd()) });
  const discovery = createGuestDiscovery({
    staticGuests: [parseGuestSpec(`demo=h2g=${dir}/h2g`)],
    libvirt: { virshPath: '/nonexistent/virsh', restartDelayMs: 20, maxRestartDelayMs: 40 },
    logger,
  });
  t.teardown(() => discovery.close());
  await discovery.ready;
  t.same(discovery.guests.list().map((guest) => guest.name), ['demo']);
  const deadline = Date.now() + 5000;
  while (lines.filter((line) => line.includes('libvirt still unavailable')).length < 3) {
    if (Date.now() > deadline) throw new Error(`virsh was not retried: ${lines.join('\n')}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  t.same(lines.filter((line) => /^<[34]>/.test(line)), [
    '<4>[virsh] cannot run `/nonexistent/virsh` (ENOENT): install libvirt-clients (Debian/Ubuntu: apt-get install libvirt-clients) or set `virshPath`. Retrying in the background; the next success is logged.',
  ]);
});

t.test('createGuestDiscovery checks its options before starting anything', async (t) => {
  t.throws(() => createGuestDiscovery({ rescanIntervalMs: 0 }), { name: 'ConfigError', message: 'Expected the `rescanIntervalMs` option to be a positive integer, got `0`' });
  t.throws(() => createGuestDiscovery({ libvirt: { timeoutMs: 1.5 } }), { name: 'ConfigError', message: 'Expected the `timeoutMs` option to be a positive integer, got `1.5`' });
});
