// `negotiator-host doctor`: the checks on an in-memory libvirt with real UNIX sockets and a real agent
// (test/helpers/socket-agent.ts), file-system denials through the fs seam, and the built CLIs end to end
// over a loopback "VM" (QEMU-like sockets) with a real guest daemon, first without and then with a host daemon.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { CHANNEL_NAMES } from '../../common/wire/protocol.js';
import { diagnoseHost, exitCodeOfChecks, formatChecks, type DoctorCheck, type HostDoctorOptions } from '../../host/doctor.js';
import type { DomainDefinitions } from '../../host/setup-domain.js';
import { VirshError } from '../../host/virsh.js';
import { testAgentInfo } from '../helpers/agents.js';
import { startLoopbackVm } from '../helpers/loopback-vm.js';
import { FIXTURE_COMMANDS, startSocketAgent, type SocketAgent } from '../helpers/socket-agent.js';
import { GUEST_CLI, HOST_CLI, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const H2G = CHANNEL_NAMES.hostToGuest;
const G2H = CHANNEL_NAMES.guestToHost;

interface Channel {
  name: string;
  path?: string;
  state?: 'connected' | 'disconnected';
  type?: string;
}
interface FakeDomain {
  running: boolean;
  persistent?: boolean;
  /** What `virsh dumpxml` shows (live when running). */
  channels: Channel[];
  /** The persistent definition's channels; default the same names as `channels`. */
  config?: string[];
}

const channelXml = (c: Channel): string =>
  `<channel type='${c.type ?? 'unix'}'>${c.path ? `<source mode='bind' path='${c.path}'/>` : ''}<target type='virtio' name='${c.name}'${c.state ? ` state='${c.state}'` : ''}/></channel>`;
const domainXml = (name: string, domain: FakeDomain): string =>
  `<domain type='kvm'${domain.running ? " id='3'" : ''}><name>${name}</name><devices>${domain.channels.map(channelXml).join('')}</devices></domain>`;

// The doctor's options over an in-memory libvirt holding `domains`.
function fakeLibvirt(domains: Record<string, FakeDomain>, overrides: Partial<HostDoctorOptions> = {}): HostDoctorOptions {
  const find = (name: string): FakeDomain => {
    const domain = domains[name];
    if (!domain) throw new VirshError('no-domain', `libvirt has no domain \`${name}\``, `error: failed to get domain '${name}'`);
    return domain;
  };
  const definitions: DomainDefinitions = {
    uri: 'qemu:///system',
    version: async () => '9.0.0',
    listAllDomains: async () => Object.keys(domains),
    describeDomain: async (name) => ({ persistent: find(name).persistent ?? true, running: find(name).running }),
    dumpInactiveXml: async (name) => domainXml(name, { running: false, channels: (find(name).config ?? find(name).channels.map((c) => c.name)).map((n) => ({ name: n })) }),
    attachDeviceToConfig: async () => {
      throw new Error('doctor must not change anything');
    },
  };
  return {
    staticGuests: [],
    virsh: {
      uri: 'qemu:///system',
      listDomains: async () => Object.entries(domains).filter(([, d]) => d.running).map(([name], i) => ({ name, id: i + 1 })),
      dumpXml: async (name) => domainXml(name, find(name)),
    },
    definitions,
    controlSocket: '/nonexistent/negotiator-test/host.sock',
    localInfo: testAgentInfo('host'),
    timeoutMs: 2000,
    isAppArmorEnabled: async () => false,
    ...overrides,
  };
}

// [status, id, what] of each check, guest-prefixed like the output.
const summarize = (checks: DoctorCheck[]): string[] => checks.map((c) => `${c.status} ${c.id} ${c.guest ? `${c.guest}: ` : ''}${c.what}`);

// A real agent on `h2g.sock` and a silent listener on `g2h.sock`, in one directory.
async function startGuestSockets(t: Test): Promise<{ agent: SocketAgent; h2g: string; g2h: string; dir: string }> {
  const agent = await startSocketAgent();
  const g2h = path.join(agent.tmp, 'g2h.sock');
  const accepted: net.Socket[] = [];
  const silent = net.createServer((socket) => void accepted.push(socket));
  await new Promise<void>((resolve) => silent.listen(g2h, resolve));
  t.teardown(async () => {
    for (const socket of accepted) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
    await agent.close();
  });
  return { agent, h2g: agent.socketPath, g2h, dir: agent.tmp };
}

t.test('a running guest whose agent answers: all ok but the missing host daemon (a warning)', async (t) => {
  const { h2g, g2h, dir } = await startGuestSockets(t);
  const checks = await diagnoseHost(fakeLibvirt({ vm1: { running: true, channels: [{ name: H2G, path: h2g, state: 'connected' }, { name: G2H, path: g2h, state: 'connected' }] } }));
  t.same(summarize(checks).slice(0, 6), [
    'ok virsh virsh 9.0.0 present',
    'ok libvirt libvirt answers at qemu:///system (1 running guest)',
    'warn host-daemon no host daemon answers at /nonexistent/negotiator-test/host.sock',
    `ok channels vm1: negotiator channels defined (${H2G}, ${G2H})`,
    `ok sockets vm1: channel sockets exist and we may connect (${dir})`,
    'ok channel-state vm1: libvirt says both channels are connected (the guest has its ports open)',
  ]);
  t.match(checks[6], { id: 'agent', status: 'ok', guest: 'vm1', what: /^the agent answers: negotiator 0\.0\.0-test on guest-box \(Linux 6\.1\.0-test, protocol 1\); hello and ping took \d+ ms \(direct, no host daemon\)$/ });
  t.equal(checks.length, 7);
  t.equal(exitCodeOfChecks(checks), 0);
  t.match(formatChecks(checks), /^ok {4}virsh 9\.0\.0 present\n.*\nwarn  no host daemon answers at \S+  start negotiator-host --daemon \(`systemctl enable --now negotiator-host`; installed with npm, put the package's examples\/services\/negotiator-host\.service in \/etc\/systemd\/system\/ first\): without it the guests cannot call the host\n.*\nok {4}vm1: the agent answers: /s);
});

t.test('a guest that is not running: its definition is checked, then it FAILs as not running', async (t) => {
  const options = fakeLibvirt({ off: { running: false, channels: [{ name: H2G }, { name: G2H }] }, bare: { running: false, channels: [] } });
  const checks = await diagnoseHost({ ...options, guestName: 'off' });
  const c = process.getuid?.() === 0 ? 'virsh' : 'virsh -c qemu:///system';
  t.same(formatChecks(checks.slice(3)), `ok    off: negotiator channels defined (${H2G}, ${G2H})\nFAIL  off: not running, so nothing more can be checked  start it: ${c} start off\n`);
  t.equal(exitCodeOfChecks(checks), 1);
  const bare = await diagnoseHost({ ...options, guestName: 'bare' });
  t.same(summarize(bare.slice(3)), [`fail channels bare: the definition lacks ${H2G} and ${G2H}`, 'fail running bare: not running, so nothing more can be checked']);
  t.equal(bare[3]!.fix, 'run `negotiator-host setup bare`');
});

t.test('missing channels: restart advice when only the running domain lacks them, setup advice otherwise', async (t) => {
  const options = fakeLibvirt({
    added: { running: true, channels: [], config: [H2G, G2H] },
    plain: { running: true, channels: [] },
    half: { running: true, channels: [{ name: H2G, path: '/x', state: 'connected' }] },
    transient: { running: true, persistent: false, channels: [] },
  });
  const all = await diagnoseHost(options);
  t.same(summarize(all.slice(3)), [
    `fail channels added: added runs without ${H2G} and ${G2H}, though its persistent definition has them (added after it started)`,
    `fail channels half: half lacks ${G2H}`,
    'warn channels plain: no negotiator channels (fine if this guest does not run negotiator)',
    `fail channels transient: transient lacks ${H2G} and ${G2H} and is transient`,
  ]);
  t.match(all[3]!.fix, /^stop and start it: virsh.* shutdown added, wait until it is shut off, virsh.* start added \(a reboot is not enough\)$/);
  t.match(all[5]!.fix, /^run `negotiator-host setup plain`, then stop and start it: .*shutdown plain.*start plain \(a reboot is not enough\)$/);
  t.equal(all[6]!.fix, 'add the elements of libvirt/negotiator-channels.xml to the XML it is created from, then create it again');
  const named = await diagnoseHost({ ...options, guestName: 'plain' });
  t.match(named.at(-1), { status: 'fail', id: 'channels' }, 'a guest asked for by name FAILs without channels');
  t.equal(exitCodeOfChecks(named), 1);
});

t.test('an unusable channel (pty) is named with the fix', async (t) => {
  const checks = await diagnoseHost({ ...fakeLibvirt({ vm: { running: true, channels: [{ name: H2G, type: 'pty', path: '/dev/pts/3' }, { name: G2H, path: '/x' }] } }), guestName: 'vm' });
  t.match(checks.at(-1), { status: 'fail', id: 'channels', what: `channel ${H2G} is <channel type='pty'>; negotiator-host needs <channel type='unix'> (see libvirt/)`, fix: /libvirt\/negotiator-channels\.xml \(virsh.* edit vm\)/ });
});

t.test('an unknown guest FAILs listing the domains libvirt knows', async (t) => {
  const checks = await diagnoseHost({ ...fakeLibvirt({ a: { running: false, channels: [] }, b: { running: true, channels: [] } }), guestName: 'zz' });
  t.match(checks.at(-1), { status: 'fail', id: 'guest', guest: 'zz', what: 'libvirt has no domain zz', fix: 'the domains it knows: a, b' });
});

t.test('a disconnected channel FAILs, and the agent is not asked', async (t) => {
  const { agent, h2g, g2h } = await startGuestSockets(t);
  const checks = await diagnoseHost(fakeLibvirt({ vm1: { running: true, channels: [{ name: H2G, path: h2g, state: 'disconnected' }, { name: G2H, path: g2h, state: 'connected' }] } }));
  t.match(checks.at(-1), { status: 'fail', id: 'channel-state', what: `libvirt says ${H2G} is disconnected: no process in the guest has the port open`, fix: /negotiator-guest --daemon.*negotiator-guest doctor/ });
  t.equal(agent.peers.length, 0, 'no connection was made to the guest');
});

t.test('an agent that does not answer its hello FAILs with the deadline', async (t) => {
  const { g2h, dir } = await startGuestSockets(t);
  const mute = path.join(dir, 'mute.sock');
  const accepted: net.Socket[] = [];
  const server = net.createServer((socket) => void accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(mute, resolve));
  t.teardown(() => {
    for (const socket of accepted) socket.destroy();
    return new Promise((resolve) => server.close(resolve));
  });
  const checks = await diagnoseHost({ ...fakeLibvirt({ vm1: { running: true, channels: [{ name: H2G, path: mute }, { name: G2H, path: g2h }] } }), timeoutMs: 300 });
  t.match(checks.at(-1), { status: 'fail', id: 'agent', what: new RegExp(`^the agent does not answer on ${mute.replace(/\./g, '\\.')}: no answer to the handshake from the agent in vm1 within 300 ms`) });
});

t.test('socket problems: an unreachable directory, a missing directory, a missing socket (with AppArmor advice when it is on), not a socket', async (t) => {
  const root = t.testdir({ sockets: { 'regular-file': '' }, locked: {} });
  const socket = path.join(root, 'sockets', 'vm.sock');
  const denied = path.join(root, 'locked');
  const options = fakeLibvirt({
    locked: { running: true, channels: [{ name: H2G, path: path.join(denied, 'a.sock') }, { name: G2H, path: path.join(denied, 'b.sock') }] },
    nodir: { running: true, channels: [{ name: H2G, path: path.join(root, 'gone', 'a.sock') }, { name: G2H, path: path.join(root, 'gone', 'b.sock') }] },
    nosock: { running: true, channels: [{ name: H2G, path: socket }, { name: G2H, path: socket }] },
    file: { running: true, channels: [{ name: H2G, path: path.join(root, 'sockets', 'regular-file') }, { name: G2H, path: path.join(root, 'sockets', 'regular-file') }] },
  });
  const fs = await import('node:fs/promises');
  const deny = async (file: string, mode: number): Promise<void> => {
    if (file === denied) throw Object.assign(new Error(`EACCES: permission denied, access '${file}'`), { code: 'EACCES' });
    return fs.access(file, mode);
  };
  const checks = await diagnoseHost({ ...options, fs: { access: deny, stat: fs.stat }, isAppArmorEnabled: async () => true });
  const byGuest = (guest: string): DoctorCheck[] => checks.filter((c) => c.guest === guest && c.id === 'sockets');
  t.same(byGuest('locked').map((c) => c.status), ['fail'], 'one line for both sockets in one directory');
  t.match(byGuest('locked')[0], { what: new RegExp(`^cannot reach the channel sockets: no access to directory ${denied} \\(owner \\S+:\\S+, mode 0\\d{3}; we are uid \\d+\\)$`), fix: `run as root (sudo), or let this user search ${denied}` });
  t.same(byGuest('nodir').length, 1);
  t.match(byGuest('nodir')[0], { what: `directory ${path.join(root, 'gone')} does not exist, so the channel sockets in it cannot either`, fix: new RegExp(`^give QEMU's user the directory, as Negotiator's README does: mkdir -p ${path.join(root, 'gone')} && chown libvirt-qemu:kvm ${path.join(root, 'gone')}; AppArmor`) });
  const missing = byGuest('nosock')[0]!;
  t.match(missing.what, new RegExp(`^${socket} does not exist although the guest runs: QEMU could not create it in ${path.dirname(socket)} \\(owner `));
  t.match(missing.fix, /chown libvirt-qemu:kvm .*; AppArmor is enabled here: allow QEMU the directory with `owner \/var\/lib\/libvirt\/qemu\/channel\/target\/\* rw,` .* in \/etc\/apparmor\.d\/abstractions\/libvirt-qemu and reload AppArmor, then stop and start nosock$/);
  t.match(byGuest('file')[0], { what: `${path.join(root, 'sockets', 'regular-file')} is not a socket` });
  t.notOk(checks.some((c) => c.id === 'agent'), 'no agent is asked on an unusable socket');
  const quiet = await diagnoseHost({ ...options, guestName: 'nosock', isAppArmorEnabled: async () => false });
  t.notMatch(quiet.find((c) => c.id === 'sockets')!.fix, /AppArmor is enabled/, 'no AppArmor advice where AppArmor is off');
});

t.test('virsh missing or libvirt unreachable: FAIL, and a named guest cannot be looked up', async (t) => {
  const options = fakeLibvirt({});
  const missing = await diagnoseHost({
    ...options,
    guestName: 'vm1',
    definitions: { ...options.definitions!, version: () => Promise.reject(new VirshError('missing', 'cannot run `virsh` (ENOENT): install libvirt-clients')) },
  });
  t.same(summarize(missing), [
    'fail virsh virsh cannot be run: cannot run `virsh` (ENOENT): install libvirt-clients',
    'warn host-daemon no host daemon answers at /nonexistent/negotiator-test/host.sock',
    'fail guest vm1: no guest vm1: it is not a --guest and libvirt cannot be asked',
  ]);
  const down = await diagnoseHost({
    ...options,
    virsh: { ...options.virsh!, listDomains: () => Promise.reject(new VirshError('unreachable', 'cannot reach libvirt', 'error: failed to connect to the hypervisor\nerror: Failed to connect socket')) },
  });
  t.match(down[1], { status: 'fail', id: 'libvirt', what: 'libvirt does not answer at qemu:///system: error: failed to connect to the hypervisor | error: Failed to connect socket', fix: /start libvirtd/ });
  t.equal(exitCodeOfChecks(down), 1);
  const off = await diagnoseHost({ ...options, virsh: undefined, definitions: undefined });
  t.same(summarize(off), ['warn host-daemon no host daemon answers at /nonexistent/negotiator-test/host.sock', 'warn guest no running guests to check'], '--no-libvirt: no libvirt checks');
});

t.test('the built CLIs end to end: the agent directly, then through the host daemon', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'negotiator-doctor-'));
  const vm = await startLoopbackVm(path.join(dir, 'vm1'));
  const hostControl = path.join(dir, 'host.sock');
  const guest = startCli(GUEST_CLI, ['--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', path.join(dir, 'guest.sock'), '--commands-dir', FIXTURE_COMMANDS]);
  let host: ReturnType<typeof startCli> | undefined;
  t.teardown(async () => {
    for (const child of [guest, host]) child?.kill('SIGKILL');
    await Promise.allSettled([guest, host]);
    await vm.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitForOutput(guest, /ready: control socket/);
  const doctor = (...args: string[]) => runCli(HOST_CLI, ['doctor', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', hostControl, ...args]);

  const direct = await doctor('vm1');
  t.same([direct.exitCode, direct.stderr], [0, '']);
  t.match(direct.stdout, new RegExp(`^warn  no host daemon answers at ${hostControl}  start negotiator-host --daemon .*\nok    vm1: channel sockets exist and we may connect \\(${vm.dir}\\)\nok    vm1: the agent answers: negotiator \\S+ on .*; hello and ping took \\d+ ms \\(direct, no host daemon\\)\n$`));

  host = startCli(HOST_CLI, ['--daemon', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', hostControl, '--commands-dir', FIXTURE_COMMANDS]);
  await waitForOutput(host, /guest vm1.*connected to the guest agent/, 20_000);
  const viaDaemon = await doctor('--json');
  t.equal(viaDaemon.exitCode, 0);
  const report = JSON.parse(viaDaemon.stdout) as { ok: boolean; checks: DoctorCheck[] };
  t.equal(report.ok, true);
  t.same(report.checks.map((c) => [c.status, c.id]), [['ok', 'host-daemon'], ['ok', 'sockets'], ['ok', 'daemon-guest'], ['ok', 'agent']]);
  t.match(report.checks[0]!.what, new RegExp(`^host daemon answers at ${hostControl} \\(negotiator \\S+, pid \\d+, 1 guest\\)$`));
  t.match(report.checks[3]!.what, /^the agent answers through the host daemon \(\d+ commands listed in \d+ ms\)$/);

  const unknown = await doctor('vm9');
  t.equal(unknown.exitCode, 1, 'a guest that does not exist FAILs');
  t.match(unknown.stdout, /^FAIL  vm9: no guest vm9: it is not a --guest and libvirt cannot be asked  /m);
});

t.test('a guest the host daemon does not serve FAILs', async (t) => {
  const { h2g, g2h } = await startGuestSockets(t);
  const dir = mkdtempSync(path.join(tmpdir(), 'negotiator-doctor-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const hostControl = path.join(dir, 'host.sock');
  mkdirSync(path.join(dir, 'empty'));
  writeFileSync(path.join(dir, 'empty', '.keep'), '');
  const host = startCli(HOST_CLI, ['--daemon', '--no-libvirt', '--control-socket', hostControl, '--commands-dir', path.join(dir, 'empty')]);
  t.teardown(async () => {
    host.kill('SIGKILL');
    await host;
  });
  await waitForOutput(host, /ready: control socket/);
  const checks = await diagnoseHost({ ...fakeLibvirt({}), virsh: undefined, definitions: undefined, controlSocket: hostControl, staticGuests: [{ name: 'vm2', hostToGuest: h2g, guestToHost: g2h }] });
  t.match(checks.find((c) => c.id === 'daemon-guest'), { status: 'fail', guest: 'vm2', what: 'the host daemon does not know vm2', fix: 'start the daemon with --guest vm2=... as well' });
});
