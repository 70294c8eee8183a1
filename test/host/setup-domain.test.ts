// `negotiator-host setup`: the decisions on an in-memory libvirt, the real virsh seam and the shell script
// against test/fixtures/libvirt/fake-virsh.mjs (argument shapes, the file given to attach-device), the
// shipped libvirt/negotiator-channels.xml, and the built CLI.
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { parseDomainXml } from '../../host/domain-xml.js';
import {
  DomainSetupError,
  createChannelXml,
  createDomainDefinitions,
  formatSetupResult,
  parseDomInfo,
  setUpDomain,
  type DomainDefinitions,
  type SetupResult,
} from '../../host/setup-domain.js';
import { VirshError } from '../../host/virsh.js';
import { HOST_CLI, runCli } from '../helpers/spawn-cli.js';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..', '..');
const FAKE_VIRSH = path.join(REPO, 'test', 'fixtures', 'libvirt', 'fake-virsh.mjs');
const SCRIPT = path.join(REPO, 'libvirt', 'add-negotiator-channels.sh');
const H2G = 'negotiator-host-to-guest.0';
const G2H = 'negotiator-guest-to-host.0';
const isRoot = process.getuid?.() === 0;

const channel = (name: string, extra = ''): string => `<channel type='unix'${extra}><target type='virtio' name='${name}'/></channel>`;
const domainXml = (name: string, channels: string[], id?: number): string =>
  `<domain type='kvm'${id === undefined ? '' : ` id='${id}'`}><name>${name}</name><devices>${channels.join('')}</devices></domain>`;

interface FakeDomain {
  persistent: boolean;
  running: boolean;
  /** Channel elements of the persistent definition (changed by attach). */
  config: string[];
  /** Channel elements of the running domain. */
  live: string[];
}

// An in-memory libvirt: attach-device --config appends to the definition, as libvirt does.
function fakeLibvirt(domains: Record<string, FakeDomain>, failAttachAt?: number) {
  const attached: Array<{ domain: string; xml: string }> = [];
  const noDomain = (name: string): VirshError => new VirshError('no-domain', `libvirt has no domain \`${name}\``, `error: failed to get domain '${name}'`);
  const find = (name: string): FakeDomain => {
    const domain = domains[name];
    if (!domain) throw noDomain(name);
    return domain;
  };
  const definitions: DomainDefinitions = {
    uri: 'qemu:///system',
    version: async () => '9.0.0',
    listAllDomains: async () => Object.keys(domains),
    describeDomain: async (name) => ({ persistent: find(name).persistent, running: find(name).running }),
    dumpInactiveXml: async (name) => domainXml(name, find(name).config),
    async attachDeviceToConfig(name, xml) {
      if (failAttachAt === attached.length) throw new VirshError('failed', 'virsh attach-device failed: error: out of ports');
      find(name).config.push(xml);
      attached.push({ domain: name, xml });
    },
  };
  const virsh = { dumpXml: async (name: string) => domainXml(name, find(name).running ? find(name).live : find(name).config, find(name).running ? 3 : undefined) };
  return { definitions, virsh, attached };
}

t.test('adds both channels to a definition without them; the second run has nothing to do', async (t) => {
  const lab = fakeLibvirt({ vm1: { persistent: true, running: false, config: [], live: [] } });
  const first = await setUpDomain('vm1', lab);
  t.same(first, { domain: 'vm1', uri: 'qemu:///system', added: [H2G, G2H], present: [], dryRun: false, running: false, restartNeeded: false, xml: [createChannelXml(H2G), createChannelXml(G2H)] });
  t.same(lab.attached.map((call) => call.xml), [
    `<channel type='unix'>\n  <target type='virtio' name='${H2G}'/>\n</channel>\n`,
    `<channel type='unix'>\n  <target type='virtio' name='${G2H}'/>\n</channel>\n`,
  ]);
  const second = await setUpDomain('vm1', lab);
  t.same([second.added, second.present], [[], [H2G, G2H]]);
  t.equal(lab.attached.length, 2, 'nothing attached the second time');
  t.equal(formatSetupResult(second), `vm1: already present, nothing to do (${H2G}, ${G2H} in the persistent definition)\n`);
});

t.test('adds only the missing channel, and a running domain is told to stop and start', async (t) => {
  const lab = fakeLibvirt({ vm2: { persistent: true, running: true, config: [channel(H2G)], live: [channel(H2G)] } });
  const result = await setUpDomain('vm2', lab);
  t.same([result.added, result.present, result.running, result.restartNeeded], [[G2H], [H2G], true, true]);
  const c = isRoot ? 'virsh' : 'virsh -c qemu:///system';
  t.equal(
    formatSetupResult(result),
    `vm2: added 1 channel (${G2H}) to the persistent definition; ${H2G} already present.\n` +
      'vm2 is running without them: they take effect after a full stop and start (a reboot is not enough):\n' +
      `  ${c} shutdown vm2    (then wait until \`${c} domstate vm2\` says shut off)\n` +
      `  ${c} start vm2\n`,
  );
});

t.test('already in the definition but not in the running domain: nothing to add, still a restart to do', async (t) => {
  const lab = fakeLibvirt({ vm3: { persistent: true, running: true, config: [channel(H2G), channel(G2H)], live: [] } });
  const result = await setUpDomain('vm3', lab);
  t.same([result.added, result.restartNeeded], [[], true]);
  t.match(formatSetupResult(result), /^vm3: already present, nothing to do .*\nvm3 is running without them: they take effect after a full stop and start \(a reboot is not enough\):\n.*shutdown vm3.*\n.*start vm3\n$/);
  const running = await setUpDomain('vm3', fakeLibvirt({ vm3: { persistent: true, running: true, config: [channel(H2G), channel(G2H)], live: [channel(H2G), channel(G2H)] } }));
  t.equal(running.restartNeeded, false, 'a domain running with both needs nothing');
});

t.test('--dry-run prints the XML it would add and changes nothing', async (t) => {
  const lab = fakeLibvirt({ vm4: { persistent: true, running: false, config: [], live: [] } });
  const result = await setUpDomain('vm4', { ...lab, dryRun: true });
  t.same([result.added, result.dryRun, lab.attached.length], [[H2G, G2H], true, 0]);
  const c = isRoot ? 'virsh' : 'virsh -c qemu:///system';
  t.equal(
    formatSetupResult(result),
    `vm4: would add 2 channels (${H2G}, ${G2H}). Dry run: nothing changed.\n` +
      `Each would be added with \`${c} attach-device vm4 FILE --config\`, FILE holding:\n` +
      `${createChannelXml(H2G)}${createChannelXml(G2H)}` +
      `vm4 is not running: the channels appear when it next starts (${c} start vm4).\n`,
  );
});

t.test('refuses a transient domain, an unknown one (listing the known ones) and an unusable channel', async (t) => {
  const lab = fakeLibvirt({
    live1: { persistent: false, running: true, config: [], live: [] },
    ptyvm: { persistent: true, running: false, config: [channel(H2G).replace("type='unix'", "type='pty'")], live: [] },
    connectvm: { persistent: true, running: false, config: [`<channel type='unix'><source mode='connect' path='/x'/><target type='virtio' name='${G2H}'/></channel>`], live: [] },
  });
  await t.rejects(setUpDomain('live1', lab), { name: 'DomainSetupError', message: /^`live1` is a transient domain: it has no persistent definition to add the channels to\. Make it persistent \(virsh.* dumpxml --inactive live1 > live1\.xml; virsh.* define live1\.xml\) and run setup again, or add the elements of libvirt\/negotiator-channels\.xml to the XML you create it from\.$/ });
  await t.rejects(setUpDomain('nope', lab), new DomainSetupError('libvirt at `qemu:///system` has no domain `nope`; the domains it knows: live1, ptyvm, connectvm'));
  await t.rejects(setUpDomain('ptyvm', lab), { message: new RegExp(`^\`ptyvm\` already has a channel named ${H2G.replace(/\./g, '\\.')}, but it is <channel type='pty'>, not type='unix'\\. setup does not change existing devices: replace it by hand \\(virsh.* edit ptyvm\\) with the element in libvirt/negotiator-channels\\.xml\\.$`) });
  await t.rejects(setUpDomain('connectvm', lab), { message: /has <source mode='connect'>/ });
  t.equal(lab.attached.length, 0);
  await t.rejects(setUpDomain(' ', lab), { name: 'ConfigError' });
});

t.test('a failed attach says what was already added and that running setup again finishes the job', async (t) => {
  const lab = fakeLibvirt({ vm5: { persistent: true, running: false, config: [], live: [] } }, 1);
  await t.rejects(setUpDomain('vm5', lab), {
    name: 'DomainSetupError',
    message: `could not add channel ${G2H} to \`vm5\` (${H2G} was added; run setup again once the cause is fixed): virsh attach-device failed: error: out of ports`,
  });
  const retry = await setUpDomain('vm5', fakeLibvirt({ vm5: { persistent: true, running: false, config: lab.attached.map((call) => call.xml), live: [] } }));
  t.same([retry.added, retry.present], [[G2H], [H2G]]);
});

t.test('libvirt/negotiator-channels.xml holds exactly the channels setup adds', async (t) => {
  const shipped = readFileSync(path.join(REPO, 'libvirt', 'negotiator-channels.xml'), 'utf8');
  const wrap = (devices: string): string => `<domain><name>x</name><devices>${devices}</devices></domain>`;
  t.same(parseDomainXml(wrap(shipped)).channels, parseDomainXml(wrap(createChannelXml(H2G) + createChannelXml(G2H))).channels);
  t.same(parseDomainXml(wrap(shipped)).channels.map((c) => [c.type, c.targetType, c.name]), [['unix', 'virtio', H2G], ['unix', 'virtio', G2H]]);
});

t.test('parseDomInfo reads persistence and activity from `virsh dominfo`', async (t) => {
  t.same(parseDomInfo('Id:             -\nName:           vm\nState:          shut off\nPersistent:     yes\n'), { persistent: true, running: false });
  t.same(parseDomInfo('Id:             7\nName:           vm\nState:          running\nPersistent:     no\n'), { persistent: false, running: true });
  t.throws(() => parseDomInfo('nonsense'), { name: 'VirshError' });
});

// A fake virsh in a fresh directory, also reachable as `virsh` through PATH (for the CLI and the script).
function setUpFakeVirsh(t: Test, config: Record<string, unknown>) {
  const dir = mkdtempSync(path.join(tmpdir(), 'fake-virsh-setup-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  symlinkSync(FAKE_VIRSH, path.join(dir, 'virsh'));
  const env = { FAKE_VIRSH_DIR: dir, PATH: `${dir}:${process.env.PATH ?? ''}` };
  const calls = (): Array<{ command: string; args: string[]; lcAll?: string }> =>
    existsSync(path.join(dir, 'calls.jsonl')) ? readFileSync(path.join(dir, 'calls.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line)) : [];
  return { dir, env, calls };
}

const DOMINFO_PERSISTENT = 'Id:             -\nName:           vm1\nState:          shut off\nPersistent:     yes\n';

t.test('the virsh seam: command lines, the C locale, the device file, and errors by kind', async (t) => {
  const fake = setUpFakeVirsh(t, {
    dominfo: { byArg: { vm1: { stdout: DOMINFO_PERSISTENT }, '*': { stderr: "error: failed to get domain 'zz'", exit: 1 } } },
    dumpxml: { stdout: domainXml('vm1', []) },
    list: { stdout: 'vm1\nvm2\n\n' },
    'attach-device': { stdout: '' },
  });
  process.env.FAKE_VIRSH_DIR = fake.dir;
  const definitions = createDomainDefinitions({ uri: 'test:///x', virshPath: FAKE_VIRSH });
  t.same(await definitions.describeDomain('vm1'), { persistent: true, running: false });
  t.same(await definitions.listAllDomains(), ['vm1', 'vm2']);
  t.equal(await definitions.dumpInactiveXml('vm1'), domainXml('vm1', []));
  await definitions.attachDeviceToConfig('vm1', createChannelXml(H2G));
  const error = await definitions.describeDomain('zz').catch((caught: unknown) => caught);
  t.match(error, { name: 'VirshError', kind: 'no-domain' });
  const calls = fake.calls();
  t.same(calls.map((call) => call.args.slice(0, 3)), [['-c', 'test:///x', 'dominfo'], ['-c', 'test:///x', 'list'], ['-c', 'test:///x', 'dumpxml'], ['-c', 'test:///x', 'attach-device'], ['-c', 'test:///x', 'dominfo']]);
  t.same(calls[2]!.args.slice(3), ['--inactive', 'vm1']);
  const attach = calls[3]!.args;
  t.same([attach[3], attach[5]], ['vm1', '--config']);
  t.notOk(existsSync(attach[4]!), 'the device file is removed afterwards');
  t.ok(calls.every((call) => call.lcAll === 'C'), 'virsh runs in the C locale');
  const missing = createDomainDefinitions({ virshPath: path.join(fake.dir, 'no-such-virsh') });
  await t.rejects(missing.version(), { name: 'VirshError', kind: 'missing', message: /install libvirt-clients/ });
  // What attach-device reads: a virsh that keeps a copy of its FILE argument.
  const keeping = path.join(fake.dir, 'keeping-virsh');
  writeFileSync(keeping, `#!/bin/sh\ncp "$5" "${fake.dir}/device.xml"\n`, { mode: 0o755 });
  await createDomainDefinitions({ virshPath: keeping }).attachDeviceToConfig('vm1', createChannelXml(G2H));
  t.equal(readFileSync(path.join(fake.dir, 'device.xml'), 'utf8'), createChannelXml(G2H));
  t.throws(() => createDomainDefinitions({ changeTimeoutMs: 0 }), { name: 'ConfigError', message: 'Expected the `changeTimeoutMs` option to be a positive integer, got `0`' });
});

t.test('add-negotiator-channels.sh adds what is missing, once, and refuses transient and unknown domains', async (t) => {
  const fake = setUpFakeVirsh(t, {
    dominfo: { byArg: { vm1: { stdout: DOMINFO_PERSISTENT }, live1: { stdout: DOMINFO_PERSISTENT.replace('yes', 'no') }, '*': { stderr: "error: failed to get domain 'zz'", exit: 1 } } },
    dumpxml: [{ stdout: `<domain>\n  <devices>\n    <channel type='unix'>\n      <target type='virtio' name='${H2G}'/>\n    </channel>\n  </devices>\n</domain>\n` }],
    list: { stdout: 'vm1\nlive1\n' },
    'attach-device': { stdout: '' },
  });
  const run = (...args: string[]) => execa(SCRIPT, args, { reject: false, env: fake.env, stdin: 'ignore' });
  const added = await run('vm1');
  t.same([added.exitCode, added.stdout.split('\n').slice(0, 3)], [0, [`vm1: ${H2G} already present`, `vm1: added ${G2H}`, 'vm1: added 1 channel(s). They take effect after a full stop and start (a reboot is not enough):']]);
  const attach = fake.calls().filter((call) => call.command === 'attach-device');
  t.same(attach.map((call) => [call.args[0], call.args[1], call.args[3], call.args[5]]), [['-c', 'qemu:///system', 'vm1', '--config']]);
  const transient = await run('live1');
  t.same([transient.exitCode, transient.stderr.split('\n')[0]], [1, "error: 'live1' is a transient domain (no persistent definition to change): make it persistent with"]);
  const unknown = await run('zz');
  t.equal(unknown.exitCode, 1);
  t.match(unknown.stderr, /has no domain 'zz' .*; defined domains: vm1 live1$/m);
  t.equal((await run()).exitCode, 2, 'usage');
});

t.test('the built CLI: `setup GUEST` and `setup --dry-run --json`, and an unknown domain', async (t) => {
  const fake = setUpFakeVirsh(t, {
    dominfo: { byArg: { vm1: { stdout: DOMINFO_PERSISTENT }, '*': { stderr: "error: failed to get domain 'zz'", exit: 1 } } },
    dumpxml: { stdout: domainXml('vm1', []) },
    list: { stdout: 'vm1\n' },
    'attach-device': { stdout: '' },
  });
  const setup = await runCli(HOST_CLI, ['setup', 'vm1'], { env: fake.env });
  t.same([setup.exitCode, setup.stderr], [0, '']);
  t.match(setup.stdout, new RegExp(`^vm1: added 2 channels \\(${H2G}, ${G2H}\\) to the persistent definition\\.\nvm1 is not running: the channels appear when it next starts \\(virsh.* start vm1\\)\\.\n$`));
  t.equal(fake.calls().filter((call) => call.command === 'attach-device').length, 2);
  const dry = await runCli(HOST_CLI, ['setup', '--dry-run', 'vm1', '--json', '--libvirt-uri', 'test:///y'], { env: fake.env });
  const result = JSON.parse(dry.stdout) as SetupResult;
  t.same([dry.exitCode, result.dryRun, result.added, result.uri], [0, true, [H2G, G2H], 'test:///y']);
  t.equal(fake.calls().filter((call) => call.command === 'attach-device').length, 2, 'the dry run attached nothing');
  const unknown = await runCli(HOST_CLI, ['setup', 'zz'], { env: fake.env });
  t.same([unknown.exitCode, unknown.stdout, unknown.stderr], [255, '', 'negotiator-host: error: libvirt at `qemu:///system` has no domain `zz`; the domains it knows: vm1\n']);
});
