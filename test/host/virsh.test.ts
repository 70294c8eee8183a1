import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { createLogger, type Logger } from '../../common/base/logger.js';
import {
  createVirsh,
  parseDomainList,
  parseDomainTable,
  parseVirshEventLine,
  resolveVirshOptions,
  VirshError,
  type VirshStreamItem,
} from '../../host/virsh.js';
import { createDomainDefinitions } from '../../host/setup-domain.js';
import { isAlive } from '../helpers/processes.js';

const fixtures = new URL('../../../test/fixtures/libvirt/', import.meta.url).pathname;
const fakeVirsh = path.join(fixtures, 'fake-virsh.mjs');
const hangingVirsh = path.join(fixtures, 'hanging-virsh.sh');
const readFixture = (name: string): string => readFileSync(path.join(fixtures, name), 'utf8');

// A fresh fake-virsh configuration; FAKE_VIRSH_DIR is inherited by the virsh children.
function setUpFake(t: Test, config: Record<string, unknown>): {
  calls: () => Array<{ command: string; args: string[]; lcAll?: string; pid: number }>;
  hangingPids: () => number[];
} {
  const dir = mkdtempSync(path.join(tmpdir(), 'fake-virsh-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  process.env.FAKE_VIRSH_DIR = dir;
  const lines = (file: string): string[] => (existsSync(path.join(dir, file)) ? readFileSync(path.join(dir, file), 'utf8').trim().split('\n') : []);
  return {
    calls: () => lines('calls.jsonl').map((line) => JSON.parse(line)),
    hangingPids: () => lines('hanging.pids').map(Number),
  };
}


function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger({ level: 'debug', format: 'journal', write: (line) => lines.push(line.trimEnd()) }), lines };
}

async function rejectsWith(promise: Promise<unknown>): Promise<VirshError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof VirshError) return error;
    throw error;
  }
  throw new Error('expected a VirshError');
}

// Race one step of an iterator against a rejecting timeout.
async function nextWithin<T>(iterator: AsyncIterator<T>, ms: number): Promise<IteratorResult<T>> {
  const controller = new AbortController();
  const timeout = sleep(ms, undefined, { signal: controller.signal }).then(() => {
    throw new Error(`no stream item within ${ms} ms`);
  });
  try {
    return await Promise.race([iterator.next(), timeout]);
  } finally {
    controller.abort();
    timeout.catch(() => {});
  }
}

// Collect stream items until `done` says so; reject when the stream ends first or stalls for `ms`.
async function collect(iterator: AsyncIterator<VirshStreamItem>, done: (items: VirshStreamItem[]) => boolean, ms = 5000): Promise<VirshStreamItem[]> {
  const items: VirshStreamItem[] = [];
  while (!done(items)) {
    const step = await nextWithin(iterator, ms);
    if (step.done) throw new Error(`the stream ended before the expected items: ${JSON.stringify(items.map(summarize))}`);
    items.push(step.value);
  }
  return items;
}

const summarize = (item: VirshStreamItem): string =>
  item.type === 'domain' ? `${item.domain}:${item.event}:${item.lifecycle ?? '-'}:${item.detail}`
    : item.type === 'stream-ended' ? `ended:${item.error.kind}:${item.retryInMs}` : 'started';

t.test('parseDomainList reads recorded `virsh list --uuid --name --id` output', async (t) => {
  t.same(parseDomainList(readFixture('list-uuid-name-id.txt')), [{ uuid: '243dfc23-214a-4a5c-8d08-c6876a4998de', id: 4, name: 'ndisc-fix2' }]);
  t.same(parseDomainList(readFixture('list-uuid-name-id-test-driver.txt')), [
    { uuid: '6695eb01-f6a4-8304-79aa-97f2502e193f', id: 1, name: 'test' },
    { uuid: '99c59969-b8c1-4f51-a4da-966b96167dc3', id: 2, name: 'web&db "prod" <1>' },
  ], 'a name with spaces and quotes is kept whole');
  t.same(parseDomainList('\n'), [], 'no domains');
});

t.test('parseDomainTable reads the default table, skipping inactive rows', async (t) => {
  t.same(parseDomainTable(readFixture('list-table.txt')), [{ id: 4, name: 'ndisc-fix2' }]);
  t.same(parseDomainTable(readFixture('list-table-test-driver.txt')), [{ id: 1, name: 'test' }, { id: 2, name: 'web&db "prod" <1>' }]);
  const table = ' Id   Name        State\n-------------------------------\n 3    two words   in shutdown\n -    off         shut off\n 7    p           paused\n';
  t.same(parseDomainTable(table), [{ id: 3, name: 'two words' }, { id: 7, name: 'p' }]);
});

t.test('parseVirshEventLine reads recorded event streams, with and without timestamps', async (t) => {
  const parse = (text: string) => text.split('\n').map(parseVirshEventLine).filter((event) => event !== null).map((event) => summarize(event));
  const restart = [
    'ndisc-fix1:lifecycle:shutdown:Finished after host request',
    'ndisc-fix1:lifecycle:stopped:Destroyed',
    'ndisc-fix1:lifecycle:resumed:Unpaused',
    'ndisc-fix1:lifecycle:started:Booted',
  ];
  t.same(parse(readFixture('events-lifecycle.txt')), [...restart, ...restart], '`virsh event --loop --event lifecycle` over two restarts');
  t.same(parse(readFixture('events-timestamp.txt')), [...restart, ...restart, 'ndisc-fix2:lifecycle:resumed:Unpaused', 'ndisc-fix2:lifecycle:started:Booted'], '`--all --timestamp`');
  t.same(parseVirshEventLine("event 'device-added' for domain 'vm 1': channel2"), { type: 'domain', domain: 'vm 1', event: 'device-added', detail: 'channel2' });
  t.same(parseVirshEventLine("event 'lifecycle' for domain vm2: Stopped Shutdown"), { type: 'domain', domain: 'vm2', event: 'lifecycle', lifecycle: 'stopped', detail: 'Shutdown' }, 'libvirt before 6.x did not quote the name');
  t.same(parseVirshEventLine("event 'reboot' for domain 'a'"), { type: 'domain', domain: 'a', event: 'reboot', detail: '' });
  t.same(parseVirshEventLine("event 'lifecycle' for domain 'a': Exploded Badly"), { type: 'domain', domain: 'a', event: 'lifecycle', detail: 'Exploded Badly' }, 'an unknown lifecycle kind has no `lifecycle`');
  for (const line of ['events received: 0', 'alias: dimm0', '', 'event loop interrupted']) t.equal(parseVirshEventLine(line), null, JSON.stringify(line));
});

t.test('listDomains runs virsh with the URI in the C locale', async (t) => {
  const fake = setUpFake(t, { list: { stdout: readFixture('list-uuid-name-id.txt') } });
  const virsh = createVirsh({ virshPath: fakeVirsh, uri: 'qemu:///custom' });
  t.same(await virsh.listDomains(), [{ uuid: '243dfc23-214a-4a5c-8d08-c6876a4998de', id: 4, name: 'ndisc-fix2' }]);
  t.same(fake.calls().map(({ args, lcAll }) => ({ args, lcAll })), [{ args: ['-c', 'qemu:///custom', 'list', '--uuid', '--name', '--id'], lcAll: 'C' }]);
  t.equal(virsh.uri, 'qemu:///custom');
});

t.test('an old virsh that rejects `list --uuid --name --id` is asked for the table from then on', async (t) => {
  const fake = setUpFake(t, {
    list: { byArg: { '--id': { stderr: 'error: Options --name and --uuid are mutually exclusive', exit: 1 }, list: { stdout: readFixture('list-table.txt') } } },
  });
  const virsh = createVirsh({ virshPath: fakeVirsh });
  t.same(await virsh.listDomains(), [{ id: 4, name: 'ndisc-fix2' }]);
  t.same(await virsh.listDomains(), [{ id: 4, name: 'ndisc-fix2' }]);
  t.same(fake.calls().map(({ args }) => args.slice(2).join(' ')), ['list --uuid --name --id', 'list', 'list']);
});

t.test('dumpXml returns the XML; an unknown domain is a no-domain error', async (t) => {
  setUpFake(t, { dumpxml: { byArg: { vm1: { stdout: '<domain/>' }, '*': { stderr: "error: failed to get domain 'gone'", exit: 1 } } } });
  const virsh = createVirsh({ virshPath: fakeVirsh });
  t.equal(await virsh.dumpXml('vm1'), '<domain/>');
  const error = await rejectsWith(virsh.dumpXml('gone'));
  t.equal(error.kind, 'no-domain');
  t.equal(error.message, "libvirt has no domain `gone` (it stopped or was undefined): error: failed to get domain 'gone'");
});

t.test('an unreachable libvirtd is one warning per outage, and its return one info line', async (t) => {
  const stderr = "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory";
  setUpFake(t, { list: [{ stderr, exit: 1 }, { stderr, exit: 1 }, { stdout: '' }, { stderr, exit: 1 }] });
  const { logger, lines } = captureLogger();
  const virsh = createVirsh({ virshPath: fakeVirsh, logger });
  const error = await rejectsWith(virsh.listDomains());
  t.equal(error.kind, 'unreachable');
  t.equal(error.message, "cannot reach libvirt at `qemu:///system`: error: failed to connect to the hypervisor | error: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory. Is libvirtd (or virtqemud) running, and may this user use it (root, or the libvirt group)?");
  t.equal(error.stderr, stderr);
  await rejectsWith(virsh.listDomains());
  t.same(await virsh.listDomains(), []);
  await rejectsWith(virsh.listDomains());
  t.same(lines.map((line) => line.slice(0, 3)), ['<4>', '<7>', '<6>', '<4>'], 'warn, debug, info (back), warn (new outage)');
  t.match(lines[0], /cannot reach libvirt .* Retrying in the background; the next success is logged\.$/);
  t.equal(lines[2], '<6>libvirt at `qemu:///system` answers again');
});

t.test('a missing virsh binary says to install libvirt-clients', async (t) => {
  const virsh = createVirsh({ virshPath: '/nonexistent/virsh' });
  const error = await rejectsWith(virsh.listDomains());
  t.equal(error.kind, 'missing');
  t.equal(error.message, 'cannot run `/nonexistent/virsh` (ENOENT): install libvirt-clients (Debian/Ubuntu: apt-get install libvirt-clients) or set `virshPath`.');
});

t.test('a virsh that hangs is killed at the deadline', async (t) => {
  const fake = setUpFake(t, {});
  const virsh = createVirsh({ virshPath: hangingVirsh, timeoutMs: 500 });
  const error = await rejectsWith(virsh.listDomains());
  t.equal(error.kind, 'timeout');
  t.equal(error.message, '`virsh -c qemu:///system list --uuid --name --id` did not finish within 500 ms: libvirtd at `qemu:///system` is stuck or overloaded (raise `timeoutMs` if it is only slow).');
  t.same(fake.hangingPids().map(isAlive), [false], 'the hung virsh is gone');
});

t.test('an aborted call is canceled and its virsh killed', async (t) => {
  const fake = setUpFake(t, {});
  const virsh = createVirsh({ virshPath: hangingVirsh });
  const controller = new AbortController();
  const pending = rejectsWith(virsh.dumpXml('vm', { signal: controller.signal }));
  while (fake.hangingPids().length === 0) await sleep(20); // bounded by tap's timeout
  controller.abort();
  t.equal((await pending).kind, 'canceled');
  t.same(fake.hangingPids().map(isAlive), [false], 'the virsh is gone');
});

t.test('other failures carry the command, exit code and stderr', async (t) => {
  setUpFake(t, { dumpxml: { stderr: 'error: internal error: something odd', exit: 3 } });
  const error = await rejectsWith(createVirsh({ virshPath: fakeVirsh }).dumpXml('vm'));
  t.equal(error.kind, 'failed');
  t.equal(error.message, '`virsh -c qemu:///system dumpxml vm` exited with code 3: error: internal error: something odd');
});

t.test('one classifier: a dropped connection (keepalive) is `unreachable` for discovery, setup and doctor alike', async (t) => {
  const keepalive = { stderr: 'error: Disconnected from qemu:///system due to keepalive timeout', exit: 1 };
  setUpFake(t, { dumpxml: keepalive, dominfo: keepalive, list: keepalive });
  const discovery = await rejectsWith(createVirsh({ virshPath: fakeVirsh }).dumpXml('vm'));
  const definitions = createDomainDefinitions({ virshPath: fakeVirsh });
  const setup = await rejectsWith(definitions.describeDomain('vm'));
  const doctor = await rejectsWith(definitions.listAllDomains());
  t.same([discovery.kind, setup.kind, doctor.kind], ['unreachable', 'unreachable', 'unreachable']);
  t.equal(setup.message, 'cannot reach libvirt at `qemu:///system`: error: Disconnected from qemu:///system due to keepalive timeout. Is libvirtd (or virtqemud) running, and may this user use it (root, or the libvirt group)?');
});

t.test('followEvents parses events, restarts virsh when it exits, and stops on abort', async (t) => {
  const fake = setUpFake(t, {
    event: [
      { stdout: `${readFixture('events-lifecycle.txt')}events received: 8\n`, stderr: 'error: Disconnected from qemu:///system due to end of file\nerror: internal error: client socket is closed', exit: 1 },
      { stdout: "event 'lifecycle' for domain 'vm2': Started Booted\n", hang: true },
    ],
  });
  const { logger, lines } = captureLogger();
  const virsh = createVirsh({ virshPath: fakeVirsh, logger, restartDelayMs: 50 });
  const controller = new AbortController();
  const stream = virsh.followEvents({ signal: controller.signal })[Symbol.asyncIterator]();
  const items = await collect(stream, (seen) => seen.some((item) => item.type === 'domain' && item.domain === 'vm2'));
  const restart = [
    'ndisc-fix1:lifecycle:shutdown:Finished after host request',
    'ndisc-fix1:lifecycle:stopped:Destroyed',
    'ndisc-fix1:lifecycle:resumed:Unpaused',
    'ndisc-fix1:lifecycle:started:Booted',
  ];
  t.same(items.map(summarize), [
    'started',
    ...restart,
    ...restart,
    'ended:unreachable:50',
    'started',
    'vm2:lifecycle:started:Booted',
  ]);
  t.same(fake.calls().map(({ args }) => args.slice(2).join(' ')), ['event --loop --all', 'event --loop --all']);
  t.equal(lines.filter((line) => line.startsWith('<4>')).length, 1, 'one warning');
  t.equal(lines[0], '<4>cannot reach libvirt at `qemu:///system`: error: Disconnected from qemu:///system due to end of file | error: internal error: client socket is closed. Is libvirtd (or virtqemud) running, and may this user use it (root, or the libvirt group)? Retrying in the background; the next success is logged.');
  controller.abort();
  t.same(await nextWithin(stream, 5000), { done: true, value: undefined }, 'the stream ends once aborted');
  t.same(fake.calls().map(({ pid }) => isAlive(pid)), [false, false], 'the running virsh event was killed');
});

t.test('followEvents backs off exponentially while virsh keeps failing, logging once', async (t) => {
  setUpFake(t, { event: { stderr: 'error: failed to connect to the hypervisor', exit: 1 } });
  const { logger, lines } = captureLogger();
  const virsh = createVirsh({ virshPath: fakeVirsh, logger, restartDelayMs: 20, maxRestartDelayMs: 80 });
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const items = await collect(virsh.followEvents({ signal: controller.signal })[Symbol.asyncIterator](), (seen) => seen.filter((item) => item.type === 'stream-ended').length === 5);
  t.same(items.filter((item) => item.type === 'stream-ended').map(summarize), [
    'ended:unreachable:20', 'ended:unreachable:40', 'ended:unreachable:80', 'ended:unreachable:80', 'ended:unreachable:80',
  ]);
  t.equal(lines.filter((line) => line.startsWith('<4>')).length, 1, 'one warning for the whole outage');
});

t.test('options are checked before anything runs', async (t) => {
  t.throws(() => resolveVirshOptions({ timeoutMs: -1 }), { name: 'ConfigError', message: 'Expected the `timeoutMs` option to be a positive integer, got `-1`' });
  t.throws(() => resolveVirshOptions({ uri: ' ' }), { message: 'Expected the `uri` option to be a libvirt URI such as `qemu:///system`, got an empty string' });
  t.same(resolveVirshOptions(), { uri: 'qemu:///system', virshPath: 'virsh', timeoutMs: 10_000, restartDelayMs: 1000, maxRestartDelayMs: 30_000, logger: resolveVirshOptions().logger });
  t.ok(Object.isFrozen(resolveVirshOptions()));
});
