import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { createLogger, type Logger } from '../../common/base/logger.js';
import type { DiscoveredGuest } from '../../host/guest-model.js';
import { GuestTable } from '../../host/guest-table.js';
import { findNegotiatorChannels, parseDomainXml } from '../../host/domain-xml.js';
import { LibvirtDiscovery, type LibvirtDiscoveryOptions } from '../../host/libvirt-discovery.js';
import { VirshError, type DomainSummary, type Virsh, type VirshCallOptions, type VirshStreamItem } from '../../host/virsh.js';

// ---- an in-memory libvirt: domains whose XML is made from real recorded dumpxml output, an event stream
// the test feeds, failure switches, and counters of what discovery asked.

const fixtures = new URL('../../../test/fixtures/libvirt/', import.meta.url).pathname;
const readFixture = (name: string): string => readFileSync(`${fixtures}${name}`, 'utf8');
const WITH_CHANNELS = readFixture('libvirt9-transient-running-disconnected.xml');
const WITHOUT_CHANNELS = readFixture('libvirt9-test-driver-no-channels.xml');

interface FakeDomain {
  name: string;
  uuid: string;
  id: number;
  xml: string;
}

let uuidCounter = 0;
const nextUuid = (): string => `00000000-0000-4000-8000-${String(++uuidCounter).padStart(12, '0')}`;

// The recorded XML with another name, uuid and id (and so other socket paths).
function domainXml(name: string, uuid: string, id: number, channels: boolean): string {
  return channels
    ? WITH_CHANNELS.replace("id='1'", `id='${id}'`)
        .replace(/084809d6-1c83-44fc-beb8-8a83f69c5b74/g, uuid)
        .replace(/domain-1-ndisc-fix1/g, `domain-${id}-${name}`)
        .replace(/ndisc-fix1/g, name)
    : WITHOUT_CHANNELS.replace("id='1'", `id='${id}'`).replace('6695eb01-f6a4-8304-79aa-97f2502e193f', uuid).replace('<name>test</name>', `<name>${name}</name>`);
}

const socketPath = (name: string, id: number, channel: string): string =>
  `/var/lib/libvirt/qemu/channel/target/domain-${id}-${name}/${channel}`;

class FakeVirsh implements Virsh {
  readonly uri = 'fake:///system';
  readonly domains = new Map<string, FakeDomain>();
  /** When set, listDomains and dumpXml fail with it. */
  failure: VirshError | undefined;
  /** Resolved before each dumpXml answers (a gate a test can hold closed). */
  dumpGate: Promise<void> = Promise.resolve();
  dumpDelayMs = 0;
  readonly dumped: string[] = [];
  listCalls = 0;
  inFlight = 0;
  maxInFlight = 0;
  followers = 0;
  readonly #queue: VirshStreamItem[] = [];
  #wake: (() => void) | undefined;
  #nextId = 1;

  // Start (or restart) a domain: a new id every time, as libvirt does; `announce` sends the Started event.
  start(name: string, options: { channels?: boolean; announce?: boolean; uuid?: string } = {}): FakeDomain {
    const id = this.#nextId++;
    const uuid = options.uuid ?? nextUuid();
    const domain = { name, uuid, id, xml: domainXml(name, uuid, id, options.channels ?? true) };
    this.domains.set(name, domain);
    if (options.announce ?? true) this.emit({ type: 'domain', domain: name, event: 'lifecycle', lifecycle: 'started', detail: 'Booted' });
    return domain;
  }

  stop(name: string, options: { announce?: boolean } = {}): void {
    this.domains.delete(name);
    if (options.announce ?? true) this.emit({ type: 'domain', domain: name, event: 'lifecycle', lifecycle: 'stopped', detail: 'Destroyed' });
  }

  /** Events emitted and not yet read by discovery. */
  get queued(): number {
    return this.#queue.length;
  }

  emit(item: VirshStreamItem): void {
    this.#queue.push(item);
    this.#wake?.();
  }

  async listDomains(): Promise<DomainSummary[]> {
    this.listCalls += 1;
    await sleep(1);
    if (this.failure) throw this.failure;
    return [...this.domains.values()].map(({ name, uuid, id }) => ({ name, uuid, id }));
  }

  async dumpXml(domain: string, options: VirshCallOptions = {}): Promise<string> {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      this.dumped.push(domain);
      await this.dumpGate;
      await sleep(this.dumpDelayMs);
      if (options.signal?.aborted) throw new VirshError('canceled', 'canceled');
      if (this.failure) throw this.failure;
      const found = this.domains.get(domain) ?? [...this.domains.values()].find((candidate) => candidate.uuid === domain);
      if (!found) throw new VirshError('no-domain', `libvirt has no domain \`${domain}\``);
      return found.xml;
    } finally {
      this.inFlight -= 1;
    }
  }

  async *followEvents({ signal }: { signal: AbortSignal }): AsyncGenerator<VirshStreamItem> {
    this.followers += 1;
    const onAbort = (): void => this.#wake?.();
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        const item = this.#queue.shift();
        if (item) yield item;
        else await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.followers -= 1;
    }
  }
}

// Wait until `condition` holds; reject after `ms` with `what` in the message.
async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

// ---- helpers ----------------------------------------------------------------------------------------

const H2G = 'negotiator-host-to-guest.0';
const G2H = 'negotiator-guest-to-host.0';

function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger({ level: 'debug', format: 'journal', write: (line) => lines.push(line.trimEnd()) }), lines };
}

// A discovery over a fake libvirt, recording every guest table event as a short string.
function startDiscovery(t: Test, virsh: FakeVirsh, options: Partial<LibvirtDiscoveryOptions> = {}) {
  const table = new GuestTable();
  const events: string[] = [];
  const guests: DiscoveredGuest[] = [];
  table.on('guest-up', (guest) => {
    events.push(`up ${guest.name} ${guest.id ?? ''}`);
    guests.push(guest);
  });
  table.on('guest-down', (guest) => events.push(`down ${guest.name} ${guest.id ?? ''}`));
  table.on('guest-changed', (guest) => events.push(`changed ${guest.name} ${guest.id ?? ''}`));
  const { logger, lines } = captureLogger();
  const discovery = new LibvirtDiscovery({ virsh, sink: table, logger, resyncDelayMs: 0, ...options });
  t.teardown(() => discovery.close());
  return { discovery, table, events, guests, lines };
}

const expectedGuest = (domain: FakeDomain): DiscoveredGuest => ({
  name: domain.name,
  uuid: domain.uuid,
  id: domain.id,
  source: 'libvirt',
  channels: {
    hostToGuest: { path: socketPath(domain.name, domain.id, H2G), state: 'disconnected' },
    guestToHost: { path: socketPath(domain.name, domain.id, G2H), state: 'disconnected' },
  },
});

// ---- the domain XML -----------------------------------------------------------------------------------

t.test('parseDomainXml reads recorded libvirt 9 documents', async (t) => {
  t.same(parseDomainXml(readFixture('libvirt9-transient-running-connected.xml')), {
    name: 'ndisc-fix2',
    uuid: '243dfc23-214a-4a5c-8d08-c6876a4998de',
    id: 4,
    channels: [
      { type: 'unix', name: H2G, targetType: 'virtio', path: `/var/lib/libvirt/qemu/channel/target/domain-4-ndisc-fix2/${H2G}`, mode: 'bind', state: 'connected' },
      { type: 'unix', name: G2H, targetType: 'virtio', path: `/var/lib/libvirt/qemu/channel/target/domain-4-ndisc-fix2/${G2H}`, mode: 'bind', state: 'disconnected' },
    ],
  });
  t.same(parseDomainXml(readFixture('libvirt9-transient-running-disconnected.xml')).channels.map((channel) => [channel.path, channel.state]), [
    [`/var/lib/libvirt/qemu/channel/target/domain-1-ndisc-fix1/${H2G}`, 'disconnected'],
    [`/var/lib/libvirt/qemu/channel/target/domain-1-ndisc-fix1/${G2H}`, 'disconnected'],
  ]);
  t.same(parseDomainXml(readFixture('libvirt9-test-driver-no-channels.xml')), { name: 'test', uuid: '6695eb01-f6a4-8304-79aa-97f2502e193f', id: 1, channels: [] });
  t.same(parseDomainXml(readFixture('libvirt9-test-driver-odd-name.xml')), {
    name: 'web&db "prod" <1>',
    uuid: 'aca5cc5f-f24d-483f-baf0-879bab63576a',
    id: 2,
    channels: [
      { type: 'unix', name: 'org.qemu.guest_agent.0', targetType: 'virtio', path: '/var/lib/libvirt/qemu/channel/target/odd.org.qemu.guest_agent.0', mode: 'bind' },
      { type: 'pty', name: G2H, targetType: 'virtio' },
      { type: 'unix', name: H2G, targetType: 'virtio', path: '/srv/sockets/neg h2g.sock', mode: 'connect' },
    ],
  }, 'entities in the name are decoded; channels nobody can use are still listed');
});

t.test('parseDomainXml reads other layouts and syntax: attribute order, either quote, comments, CDATA', async (t) => {
  const handwritten = parseDomainXml(readFixture('handwritten-input-odd-name.xml'));
  const { name, channels } = parseDomainXml(readFixture('libvirt9-test-driver-odd-name.xml'));
  t.same(handwritten, { name, channels }, 'the input libvirt was given reads the same as its output');
  t.notOk('uuid' in handwritten || 'id' in handwritten, 'absent, not undefined');
  t.same(parseDomainXml(readFixture('handwritten-libvirt1.2-flat-layout.xml')), {
    name: 'legacy-guest',
    uuid: '5c3b8e1a-0d3f-4e55-9a0b-7f1c2d3e4f50',
    id: 7,
    channels: [
      { type: 'unix', name: H2G, targetType: 'virtio', path: `/var/lib/libvirt/qemu/channel/target/legacy-guest.${H2G}`, mode: 'bind' },
      { type: 'unix', name: G2H, targetType: 'virtio', path: `/var/lib/libvirt/qemu/channel/target/legacy-guest.${G2H}`, mode: 'bind' },
      { type: 'unix', name: 'org.qemu.guest_agent.0', targetType: 'virtio', path: '/var/lib/libvirt/qemu/channel/target/legacy-guest.org.qemu.guest_agent.0', mode: 'bind' },
    ],
  });
  t.same(parseDomainXml(readFixture('handwritten-run-layout-odd-syntax.xml')), {
    name: 'a-very-long-guest-name-for-layout-tests',
    uuid: '0f7e6d5c-4b3a-2918-0706-f5e4d3c2b1a0',
    id: 12,
    channels: [
      { type: 'spicevmc', name: 'com.redhat.spice.0', targetType: 'virtio', state: 'disconnected' },
      { type: 'unix', name: G2H, targetType: 'virtio', path: `/run/libvirt/qemu/channel/12-a-very-long-guest-na/${G2H}`, mode: 'bind', state: 'connected' },
      { type: 'unix', name: H2G, targetType: 'virtio', path: `/run/libvirt/qemu/channel/12-a-very-long-guest-na/${H2G}`, mode: 'bind', state: 'disconnected' },
    ],
  }, 'look-alike channels in a comment, CDATA and <metadata> are not channels');
  t.same(parseDomainXml(readFixture('handwritten-inactive.xml')), {
    name: 'sleeping',
    uuid: '11111111-2222-3333-4444-555555555555',
    channels: [{ type: 'unix', name: H2G, targetType: 'virtio' }, { type: 'unix', name: G2H, targetType: 'virtio' }],
  }, 'an inactive domain has no id and no paths');
  t.equal(parseDomainXml("<domain id='-1'><name>x</name></domain>").id, undefined, 'id -1 means inactive');
  t.equal(parseDomainXml('<domain><name>a&#38;b&#x21;</name></domain>').name, 'a&b!', 'character references');
});

t.test('parseDomainXml says where bad XML is bad', async (t) => {
  const cases: Array<[string, string]> = [
    ['<domain><name>x</name><!-- never closed', 'bad XML: unterminated comment at offset 22'],
    ['<domain><name>x</nam></domain>', 'bad XML: unexpected </nam> at offset 15'],
    ['<domain><name>x</name>', 'bad XML: <domain> is never closed at offset 22'],
    ["<domain id=1><name>x</name></domain>", 'bad XML: attribute id of <domain> is not quoted at offset 11'],
    ["<domain id='1' id='2'><name>x</name></domain>", 'bad XML: attribute id given twice in <domain> at offset 18'],
    ['<domain><name>a &nbsp; b</name></domain>', 'bad XML: unknown entity &nbsp; near offset 14'],
    ['<domain><name>a & b</name></domain>', 'bad XML: unterminated entity near offset 14'],
    ['<domain/><domain/>', 'bad XML: a second root element at offset 16'],
    ['', 'bad XML: no root element at offset 0'],
    ['<network><name>x</name></network>', 'expected a <domain> document, got <network>'],
    ['<domain><uuid>u</uuid></domain>', 'the <domain> has no <name>'],
    ['error: failed to get domain', 'bad XML: text outside the root element at offset 0'],
  ];
  for (const [xml, message] of cases) t.throws(() => parseDomainXml(xml), { name: 'SyntaxError', message }, JSON.stringify(xml));
});

t.test('findNegotiatorChannels takes bind-mode unix channels and says why others are unusable', async (t) => {
  t.same(findNegotiatorChannels(parseDomainXml(readFixture('libvirt9-transient-running-connected.xml'))), {
    channels: {
      hostToGuest: { path: `/var/lib/libvirt/qemu/channel/target/domain-4-ndisc-fix2/${H2G}`, state: 'connected' },
      guestToHost: { path: `/var/lib/libvirt/qemu/channel/target/domain-4-ndisc-fix2/${G2H}`, state: 'disconnected' },
    },
    problems: [],
  });
  t.same(findNegotiatorChannels(parseDomainXml(readFixture('handwritten-libvirt1.2-flat-layout.xml'))).channels, {
    hostToGuest: { path: `/var/lib/libvirt/qemu/channel/target/legacy-guest.${H2G}` },
    guestToHost: { path: `/var/lib/libvirt/qemu/channel/target/legacy-guest.${G2H}` },
  }, 'no state attribute: no state');
  t.same(findNegotiatorChannels(parseDomainXml(readFixture('libvirt9-test-driver-odd-name.xml'))), {
    channels: {},
    problems: [
      `channel ${H2G} has <source mode='connect'>, so QEMU would connect to a socket nobody serves; use mode='bind' or leave <source> out (see libvirt/)`,
      `channel ${G2H} is <channel type='pty'>; negotiator-host needs <channel type='unix'> (see libvirt/)`,
    ],
  });
  t.same(findNegotiatorChannels(parseDomainXml(readFixture('handwritten-inactive.xml'))).problems, [
    `channel ${H2G} has no <source path> in the live XML; is the domain running?`,
    `channel ${G2H} has no <source path> in the live XML; is the domain running?`,
  ]);
  t.same(findNegotiatorChannels(parseDomainXml(readFixture('libvirt9-test-driver-no-channels.xml'))), { channels: {}, problems: [] });
});

// ---- discovery ------------------------------------------------------------------------------------------

t.test('the first rescan reports running domains with channels, with the paths from their XML', async (t) => {
  const virsh = new FakeVirsh();
  const one = virsh.start('one', { announce: false });
  virsh.start('plain', { channels: false, announce: false });
  const { discovery, table, events, lines } = startDiscovery(t, virsh);
  await discovery.ready;
  t.same(table.list(), [expectedGuest(one)]);
  t.same(events, [`up one ${one.id}`]);
  t.same(lines.filter((line) => line.startsWith('<6>')), ['<6>guest plain has no negotiator channels; see libvirt/ to add them']);
});

t.test('hundreds of guests starting and stopping are followed from events, a few virsh at a time', async (t) => {
  const virsh = new FakeVirsh();
  virsh.dumpDelayMs = 2;
  const { discovery, table, events } = startDiscovery(t, virsh, { concurrency: 4 });
  await discovery.ready;
  const started = Array.from({ length: 300 }, (_, index) => virsh.start(`vm${index}`));
  await until(() => table.list().length === 300, '300 guests up');
  t.same(table.list(), started.map(expectedGuest).sort((a, b) => a.name.localeCompare(b.name)));
  t.ok(virsh.maxInFlight <= 4, `at most 4 dumpxml at once (saw ${virsh.maxInFlight})`);
  t.equal(virsh.dumped.length, 300, 'each new domain inspected once');
  for (const domain of started.slice(0, 150)) virsh.stop(domain.name);
  await until(() => table.list().length === 150, '150 guests down');
  t.equal(events.filter((event) => event.startsWith('down')).length, 150);
  t.equal(virsh.dumped.length, 300, 'a stop needs no virsh call');
  await discovery.rescan();
  t.equal(virsh.dumped.length, 300, 'a rescan inspects nothing it already knows');
  t.equal(table.list().length, 150);
});

t.test('running domains without negotiator channels are remembered, not re-inspected, logged once', async (t) => {
  const virsh = new FakeVirsh();
  for (let index = 0; index < 50; index += 1) virsh.start(`bare${index}`, { channels: false, announce: false });
  const { discovery, table, lines } = startDiscovery(t, virsh);
  await discovery.ready;
  for (let round = 0; round < 3; round += 1) await discovery.rescan();
  t.equal(virsh.dumped.length, 50, 'one dumpxml per domain over four rescans');
  t.same(table.list(), []);
  t.equal(lines.filter((line) => line.includes('has no negotiator channels')).length, 50, 'one info line per domain');
  // A restart of a persistent domain is a new instance (same uuid, new id): inspected again, not logged again.
  virsh.start('bare7', { channels: false, announce: false, uuid: virsh.domains.get('bare7')?.uuid });
  await discovery.rescan();
  t.same(virsh.dumped.slice(50), [virsh.domains.get('bare7')?.uuid]);
  t.equal(lines.filter((line) => line.includes('bare7 has no')).length, 1);
});

t.test('a channel hot-plugged into a running domain is noticed from its device-added event', async (t) => {
  const virsh = new FakeVirsh();
  const bare = virsh.start('hot', { channels: false, announce: false });
  const { discovery, table, events } = startDiscovery(t, virsh);
  await discovery.ready;
  bare.xml = domainXml('hot', bare.uuid, bare.id, true);
  virsh.emit({ type: 'domain', domain: 'hot', event: 'device-added', detail: 'channel0' });
  await until(() => table.get('hot') !== undefined, 'hot up');
  bare.xml = bare.xml.replace("state='disconnected'", "state='connected'");
  virsh.emit({ type: 'domain', domain: 'hot', event: 'device-removed', detail: 'channel9' });
  await until(() => events.length === 2, 'a second event');
  t.same(events, [`up hot ${bare.id}`, `changed hot ${bare.id}`]);
  t.equal(table.get('hot')?.channels.hostToGuest?.state, 'connected');
});

t.test('libvirt down, then up: nothing reported meanwhile, a rescan when the event stream is back', async (t) => {
  const virsh = new FakeVirsh();
  virsh.failure = new VirshError('unreachable', 'cannot reach libvirt at `fake:///system`: error: failed to connect to the hypervisor');
  const { discovery, table, lines } = startDiscovery(t, virsh, { rescanIntervalMs: 60_000 });
  await discovery.ready;
  t.same(table.list(), []);
  virsh.emit({ type: 'stream-ended', error: virsh.failure, retryInMs: 1000 });
  const vm = virsh.start('vm', { announce: false });
  virsh.failure = undefined;
  const listsBefore = virsh.listCalls;
  virsh.emit({ type: 'stream-started' });
  await until(() => table.get('vm') !== undefined, 'vm up after the stream came back');
  t.ok(virsh.listCalls > listsBefore, 'a rescan followed the stream start');
  t.same(table.get('vm'), expectedGuest(vm));
  t.same(lines.filter((line) => /^<[34]>/.test(line)), [], 'the outage is the virsh seam\'s to log, once');
});

t.test('an event stream failing for another reason is one warning per distinct reason', async (t) => {
  const virsh = new FakeVirsh();
  const { discovery, lines } = startDiscovery(t, virsh);
  await discovery.ready;
  const odd = new VirshError('failed', '`virsh -c fake:///system event --loop --all` exited with code 1: error: odd');
  for (let round = 0; round < 3; round += 1) virsh.emit({ type: 'stream-ended', error: odd, retryInMs: 10 });
  await until(() => virsh.queued === 0, 'the items to be read');
  t.same(lines.filter((line) => line.startsWith('<4>')), ['<4>following libvirt events: `virsh -c fake:///system event --loop --all` exited with code 1: error: odd; retrying']);
});

t.test('a stop and a restart missed while the stream was down show as down and up with the new paths', async (t) => {
  const virsh = new FakeVirsh();
  const before = virsh.start('vm', { announce: false });
  const gone = virsh.start('gone', { announce: false });
  const { discovery, table, events } = startDiscovery(t, virsh);
  await discovery.ready;
  virsh.emit({ type: 'stream-ended', error: new VirshError('unreachable', 'down'), retryInMs: 1000 });
  const after = virsh.start('vm', { announce: false, uuid: before.uuid });
  virsh.stop('gone', { announce: false });
  virsh.emit({ type: 'stream-started' });
  await until(() => events.length === 5, 'down/up of vm and down of gone');
  t.same(events.slice(2).sort(), [`down gone ${gone.id}`, `down vm ${before.id}`, `up vm ${after.id}`]);
  t.same(table.get('vm'), expectedGuest(after));
  t.not(table.get('vm')?.channels.hostToGuest?.path, expectedGuest(before).channels.hostToGuest?.path);
});

t.test('an inspection overtaken by a newer event is dropped', async (t) => {
  const virsh = new FakeVirsh();
  const { discovery, table, events } = startDiscovery(t, virsh);
  await discovery.ready;
  let open: () => void = () => {};
  virsh.dumpGate = new Promise((resolve) => (open = resolve));
  virsh.start('flash');
  await until(() => virsh.inFlight === 1, 'the dumpxml of flash to start');
  // The domain stops while its dumpxml is pending; that dumpxml still answers with the running XML.
  virsh.emit({ type: 'domain', domain: 'flash', event: 'lifecycle', lifecycle: 'stopped', detail: 'Destroyed' });
  await until(() => virsh.queued === 0, 'the stop to be read');
  open();
  await until(() => virsh.inFlight === 0, 'the dumpxml to finish');
  t.same(events, [], 'no guest-up from the stale answer');
  t.equal(table.get('flash'), undefined);
});

t.test('close() is idempotent, ends the event stream and reports nothing afterwards', async (t) => {
  const virsh = new FakeVirsh();
  const { discovery, events } = startDiscovery(t, virsh);
  await discovery.ready;
  await until(() => virsh.followers === 1, 'the event stream to be followed');
  const closing = discovery.close();
  t.equal(discovery.close(), closing, 'the same promise');
  await closing;
  t.equal(virsh.followers, 0, 'the stream was left');
  virsh.start('late');
  await discovery.rescan();
  t.same(events, [], 'nothing after close');
});

t.test('options are checked', async (t) => {
  const virsh = new FakeVirsh();
  t.throws(() => new LibvirtDiscovery({ virsh, sink: new GuestTable(), concurrency: 0 }), { name: 'ConfigError', message: 'Expected the `concurrency` option to be an integer of at least 1, got `0`' });
});
