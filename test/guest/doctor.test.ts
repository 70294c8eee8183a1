// `negotiator-guest doctor`: the checks on fake sysfs, /dev and /proc trees (device opens through the seam
// where the kernel's answers cannot be faked: EACCES, EBUSY), a fake guest daemon on a real control
// socket, a fake host on a real socket, and the built CLIs end to end over a loopback "VM".
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { RpcError } from '../../common/wire/errors.js';
import { CHANNEL_NAMES, ERROR_CODES, METHODS } from '../../common/wire/protocol.js';
import { RpcPeer } from '../../common/wire/rpc-peer.js';
import { connectChannel, createStreamChannel } from '../../common/wire/stream-channel.js';
import { diagnoseGuest, exitCodeOfChecks, formatChecks, type DoctorCheck, type GuestDoctorOptions } from '../../guest/doctor.js';
import { testAgentInfo } from '../helpers/agents.js';
import { startFakeHost, type FakeHost } from '../helpers/fake-host.js';
import { startLoopbackVm } from '../helpers/loopback-vm.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { GUEST_CLI, HOST_CLI, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const H2G = CHANNEL_NAMES.hostToGuest;
const G2H = CHANNEL_NAMES.guestToHost;
const MODULES = 'virtio_console 45056 0 - Live 0x0000000000000000\nvirtio_pci 32768 0 - Live 0x0000000000000000\n';

interface Holder {
  pid: number;
  cmdline: string;
  /** Device entries (vportNpM) it has open. */
  entries: string[];
}

// sys/, dev/ and proc/ in a fresh directory; `ports` maps vportNpM to its name. A holder's fd links are
// absolute, as the kernel's are.
function fakeGuest(t: Test, options: { ports?: Record<string, string>; devices?: string[]; modules?: string; builtin?: boolean; holders?: Holder[] } = {}) {
  const root = mkdtempSync(path.join(tmpdir(), 'negotiator-guest-tree-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const write = (file: string, text: string): void => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  };
  const ports = options.ports ?? { vport1p1: H2G, vport1p2: G2H };
  mkdirSync(path.join(root, 'sys', 'class', 'virtio-ports'), { recursive: true });
  mkdirSync(path.join(root, 'dev'), { recursive: true });
  for (const [entry, name] of Object.entries(ports)) write(`sys/class/virtio-ports/${entry}/name`, `${name}\n`);
  if (options.builtin) write('sys/module/virtio_console/uevent', '');
  for (const entry of options.devices ?? Object.keys(ports)) write(`dev/${entry}`, '');
  write('proc/modules', options.modules ?? MODULES);
  for (const holder of options.holders ?? []) {
    write(`proc/${holder.pid}/cmdline`, holder.cmdline);
    mkdirSync(path.join(root, 'proc', String(holder.pid), 'fd'), { recursive: true });
    holder.entries.forEach((entry, fd) => symlinkSync(path.join(root, 'dev', entry), path.join(root, 'proc', String(holder.pid), 'fd', String(fd + 3))));
  }
  return { sysRoot: path.join(root, 'sys'), devRoot: path.join(root, 'dev'), procRoot: path.join(root, 'proc'), root };
}

async function startHost(t: Test): Promise<FakeHost> {
  const dir = mkdtempSync(path.join(tmpdir(), 'negotiator-guest-doctor-'));
  const host = await startFakeHost(dir);
  t.teardown(async () => {
    await host.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return host;
}

function options(roots: { sysRoot: string; devRoot: string; procRoot: string }, overrides: Partial<GuestDoctorOptions> = {}): GuestDoctorOptions {
  return {
    hostToGuest: { kind: 'virtio', name: H2G },
    guestToHost: { kind: 'virtio', name: G2H },
    controlSocket: '/nonexistent/negotiator-test/guest.sock',
    localInfo: testAgentInfo('guest'),
    timeoutMs: 2000,
    ...roots,
    ...overrides,
  };
}

const summarize = (checks: DoctorCheck[]): string[] => checks.map((c) => `${c.status} ${c.id} ${c.what}`);
const errno = (code: string): Error => Object.assign(new Error(`${code}: simulated, open`), { code });

// A guest daemon's control socket answering `status` and relaying `commands.list` as the test says.
async function startFakeDaemon(t: Test, pid: number, status: (info: ReturnType<typeof testAgentInfo>) => object, listCommands: () => unknown) {
  const dir = mkdtempSync(path.join(tmpdir(), 'negotiator-guest-doctor-daemon-'));
  const socketPath = path.join(dir, 'guest.sock');
  const info = testAgentInfo('guest', { pid });
  const peers: RpcPeer[] = [];
  const server = net.createServer((socket) => {
    const peer = new RpcPeer(createStreamChannel(socket, 'cli'), { localInfo: info, label: 'cli' });
    peer.handle(METHODS.status, () => status(info));
    peer.handle(METHODS.listCommands, listCommands);
    peers.push(peer);
    peer.start();
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.teardown(async () => {
    await Promise.all(peers.map((peer) => peer.close()));
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });
  return socketPath;
}

t.test('every check ok without a daemon (a warning): driver, ports by name, devices, the host directly', async (t) => {
  const roots = fakeGuest(t);
  const host = await startHost(t);
  const checks = await diagnoseGuest(options(roots, { openHostChannel: () => connectChannel(host.g2hPath, 2000) }));
  t.same(summarize(checks).slice(0, 4), [
    'ok virtio-console virtio_console module loaded',
    `ok ports ports found by name: ${H2G} (vport1p1), ${G2H} (vport1p2)`,
    `ok devices ${roots.devRoot}/vport1p1 (${H2G}) opens read-write, ${roots.devRoot}/vport1p2 (${G2H}) opens read-write`,
    'warn guest-daemon no guest daemon answers at /nonexistent/negotiator-test/guest.sock',
  ]);
  t.match(checks[4], { status: 'ok', id: 'host', what: new RegExp(`^the host answers: negotiator 0\\.0\\.0-test on host-box \\(Linux 6\\.1\\.0-test, protocol 1\\); hello and ping took \\d+ ms \\(direct on virtio-serial port ${G2H.replace(/\./g, '\\.')}, no guest daemon\\)$`) });
  t.equal(checks.length, 5);
  t.equal(exitCodeOfChecks(checks), 0);
  t.match(formatChecks(checks), /^ok {4}virtio_console module loaded\n.*\nwarn  no guest daemon answers at \S+  start negotiator-guest --daemon \(`systemctl enable --now negotiator-guest`; installed with npm, put the package's examples\/services\/negotiator-guest\.service in \/etc\/systemd\/system\/ first\): without it the host cannot call this guest\n/s);
});

t.test('a built-in virtio_console is found in /sys/module', async (t) => {
  const checks = await diagnoseGuest(options(fakeGuest(t, { modules: 'virtio_pci 1 0 - Live 0x0\n', builtin: true }), { openHostChannel: () => Promise.reject(new Error('not asked here')) }));
  t.same(summarize(checks)[0], 'ok virtio-console virtio_console built into the kernel');
});

t.test('no driver and no ports: both FAIL, nothing further is tried', async (t) => {
  let asked = false;
  const roots = fakeGuest(t, { ports: {}, modules: '' });
  const checks = await diagnoseGuest(options(roots, { openHostChannel: () => ((asked = true), Promise.reject(new Error('no'))) }));
  t.same(summarize(checks), [
    'fail virtio-console virtio_console is not loaded',
    `fail ports no virtio-serial port named ${H2G} or ${G2H} in ${path.join(roots.sysRoot, 'class', 'virtio-ports')}; found no named ports at all`,
    'warn guest-daemon no guest daemon answers at /nonexistent/negotiator-test/guest.sock',
  ]);
  t.match(checks[0]!.fix, /^modprobe virtio_console; .*CONFIG_VIRTIO_CONSOLE$/);
  t.match(checks[1]!.fix, /^load virtio_console \(above\)/);
  t.equal(asked, false, 'the host is not asked without ports');
  t.equal(exitCodeOfChecks(checks), 1);
});

t.test('other ports but not ours: FAIL naming what was found, with the host-side fix', async (t) => {
  const checks = await diagnoseGuest(options(fakeGuest(t, { ports: { vport0p1: 'org.qemu.guest_agent.0' } })));
  t.match(checks[1], {
    status: 'fail',
    id: 'ports',
    what: new RegExp(`^no virtio-serial port named ${H2G.replace(/\./g, '\\.')} or ${G2H.replace(/\./g, '\\.')} in \\S+; found only org\\.qemu\\.guest_agent\\.0 \\(vport0p1\\)$`),
    fix: 'the channels are not in the domain: on the host run `negotiator-host setup GUEST`, then stop and start the guest (virsh shutdown GUEST; virsh start GUEST): a reboot is not enough',
  });
});

t.test('device problems: no node, no permission, busy (naming the holder)', async (t) => {
  const roots = fakeGuest(t, {
    ports: { vport1p1: H2G, vport1p2: G2H, vport1p3: 'x' },
    devices: ['vport1p1', 'vport1p3'],
  });
  const missing = await diagnoseGuest(options(roots));
  t.match(missing.find((c) => c.id === 'devices' && c.status === 'fail'), { what: new RegExp(`^no device node ${roots.devRoot}/vport1p2 \\(${G2H.replace(/\./g, '\\.')}\\): ENOENT`), fix: /devtmpfs/ });
  t.notOk(missing.some((c) => c.id === 'host'), 'the host is not asked when a port cannot be used');

  const withBoth = fakeGuest(t, { holders: [{ pid: 123, cmdline: 'other-agent\0--port\0', entries: ['vport1p1'] }] });
  const denied = await diagnoseGuest(options(withBoth, { tryOpenDevice: () => Promise.reject(errno('EACCES')) }));
  t.match(denied.find((c) => c.id === 'devices'), { status: 'fail', what: new RegExp(`^no read-write access to ${withBoth.devRoot}/vport1p1 \\(${H2G.replace(/\./g, '\\.')}\\) \\(owner uid \\d+, gid \\d+, mode \\d+; we are uid \\d+\\)$`), fix: /^run as root/ });

  const busy = await diagnoseGuest(options(withBoth, { tryOpenDevice: (device) => (device.endsWith('vport1p1') ? Promise.reject(errno('EBUSY')) : Promise.resolve()) }));
  t.same(
    busy.filter((c) => c.id === 'devices').map((c) => [c.status, c.what]),
    [
      ['fail', `${withBoth.devRoot}/vport1p1 (${H2G}) is busy: held by pid 123: other-agent --port`],
      ['ok', `${withBoth.devRoot}/vport1p2 (${G2H}) opens read-write`],
    ],
  );
  const nobody = await diagnoseGuest(options(fakeGuest(t), { tryOpenDevice: () => Promise.reject(errno('EBUSY')) }));
  t.match(nobody.find((c) => c.id === 'devices'), { status: 'fail', what: /is busy, and no process visible here holds it$/, fix: /run as root to see every process/ });
});

t.test('with a daemon: busy ports held by it are fine, its channels and the host are checked through it', async (t) => {
  const roots = fakeGuest(t, { holders: [{ pid: 321, cmdline: 'node\0/usr/bin/negotiator-guest\0--daemon\0', entries: ['vport1p1', 'vport1p2'] }] });
  const hostInfo = { ...testAgentInfo('host'), nonce: 'n0nce-n0nce' };
  const connected = await startFakeDaemon(
    t,
    321,
    (agent) => ({ agent, channels: [{ name: `virtio-serial port ${H2G}`, open: true, connected: true, peer: hostInfo, error: null }, { name: `virtio-serial port ${G2H}`, open: true, connected: true, peer: hostInfo, error: null }] }),
    () => ({ commands: [{ name: 'uptime', description: '' }] }),
  );
  const checks = await diagnoseGuest(options(roots, { controlSocket: connected, tryOpenDevice: () => Promise.reject(errno('EBUSY')) }));
  t.same(summarize(checks).slice(1, 5), [
    `ok ports ports found by name: ${H2G} (vport1p1), ${G2H} (vport1p2)`,
    `ok devices ${roots.devRoot}/vport1p1 (${H2G}) is held by the guest daemon (pid 321), ${roots.devRoot}/vport1p2 (${G2H}) is held by the guest daemon (pid 321)`,
    `ok guest-daemon guest daemon answers at ${connected} (negotiator 0.0.0-test, pid 321)`,
    'ok daemon-channels the daemon\'s channels are connected to negotiator 0.0.0-test on host-box (Linux 6.1.0-test, protocol 1)',
  ]);
  t.match(checks[5], { status: 'ok', id: 'host', what: /^the host answers through the guest daemon \(1 command listed in \d+ ms\)$/ });
  t.equal(exitCodeOfChecks(checks), 0);

  const cut = await startFakeDaemon(
    t,
    321,
    (agent) => ({ agent, channels: [{ name: `virtio-serial port ${H2G}`, open: true, connected: false, peer: null, error: null }, { name: `virtio-serial port ${G2H}`, open: false, connected: false, peer: null, error: 'cannot open: EBUSY' }] }),
    () => Promise.reject(new RpcError(ERROR_CODES.channelClosed, 'the host agent is not connected')),
  );
  const down = await diagnoseGuest(options(roots, { controlSocket: cut, tryOpenDevice: () => Promise.reject(errno('EBUSY')) }));
  t.same(summarize(down).slice(3), [
    `ok guest-daemon guest daemon answers at ${cut} (negotiator 0.0.0-test, pid 321)`,
    `fail daemon-channels the daemon's channel virtio-serial port ${H2G} is not connected: open, but the host agent has not answered its hello`,
    `fail daemon-channels the daemon's channel virtio-serial port ${G2H} is not connected: cannot open: EBUSY`,
    'fail host the host does not answer through the guest daemon: the host agent is not connected',
  ]);
  t.equal(down[4]!.fix, 'on the host, start negotiator-host --daemon and run `negotiator-host doctor GUEST` there');
});

t.test('a host that does not answer its hello FAILs with the deadline', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'negotiator-guest-doctor-'));
  const mute = path.join(dir, 'mute.sock');
  const accepted: net.Socket[] = [];
  const server = net.createServer((socket) => void accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(mute, resolve));
  t.teardown(async () => {
    for (const socket of accepted) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });
  const checks = await diagnoseGuest(options(fakeGuest(t), { timeoutMs: 300, openHostChannel: () => connectChannel(mute, 1000) }));
  t.match(checks.at(-1), { status: 'fail', id: 'host', what: new RegExp(`^the host does not answer on virtio-serial port ${G2H.replace(/\./g, '\\.')}: no answer to the handshake from the host within 300 ms`) });
});

t.test('the built CLI on fake trees: ok with a host on a socket, FAIL (exit 1) without ports', async (t) => {
  const roots = fakeGuest(t, { ports: { vport1p1: H2G } });
  const host = await startHost(t);
  const args = ['doctor', '--sys-root', roots.sysRoot, '--dev-root', roots.devRoot, '--proc-root', roots.procRoot, '--control-socket', path.join(roots.root, 'none.sock'), '--guest-to-host', `unix:${host.g2hPath}`];
  const ok = await runCli(GUEST_CLI, args);
  t.same([ok.exitCode, ok.stderr], [0, '']);
  t.match(ok.stdout, new RegExp(`^ok {4}virtio_console module loaded\nok {4}ports found by name: ${H2G.replace(/\./g, '\\.')} \\(vport1p1\\)\nok {4}\\S+/vport1p1 \\(${H2G.replace(/\./g, '\\.')}\\) opens read-write\nwarn  no guest daemon answers at .*\nok {4}the host answers: negotiator \\S+ on .*\\(direct on unix:${host.g2hPath.replace(/\./g, '\\.')}, no guest daemon\\)\n$`));
  const empty = fakeGuest(t, { ports: {}, modules: '' });
  const failing = await runCli(GUEST_CLI, ['doctor', '--json', '--sys-root', empty.sysRoot, '--dev-root', empty.devRoot, '--proc-root', empty.procRoot, '--control-socket', path.join(empty.root, 'none.sock')]);
  t.equal(failing.exitCode, 1);
  const report = JSON.parse(failing.stdout) as { ok: boolean; checks: DoctorCheck[] };
  t.same([report.ok, report.checks.map((c) => [c.status, c.id])], [false, [['fail', 'virtio-console'], ['fail', 'ports'], ['warn', 'guest-daemon']]]);
});

t.test('the built CLIs end to end: a real guest daemon reaching a real host daemon', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'negotiator-guest-doctor-'));
  const vm = await startLoopbackVm(path.join(dir, 'vm1'));
  const guestControl = path.join(dir, 'guest.sock');
  const channels = ['--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', guestControl];
  const guest = startCli(GUEST_CLI, ['--daemon', ...channels, '--commands-dir', FIXTURE_COMMANDS]);
  const host = startCli(HOST_CLI, ['--daemon', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', path.join(dir, 'host.sock'), '--commands-dir', FIXTURE_COMMANDS]);
  t.teardown(async () => {
    for (const child of [guest, host]) child.kill('SIGKILL');
    await Promise.allSettled([guest, host]);
    await vm.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitForOutput(host, /guest vm1.*connected to the guest agent/, 20_000);
  await waitForOutput(guest, /connected to the host agent[\s\S]*connected to the host agent/, 20_000);
  const run = await runCli(GUEST_CLI, ['doctor', ...channels]);
  t.same([run.exitCode, run.stderr], [0, '']);
  t.match(run.stdout, new RegExp(`^ok {4}guest daemon answers at ${guestControl} \\(negotiator \\S+, pid \\d+\\)\nok {4}the daemon's channels are connected to negotiator \\S+ on .*\nok {4}the host answers through the guest daemon \\(\\d+ commands listed in \\d+ ms\\)\n$`));
});
