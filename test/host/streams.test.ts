// Forwarded streams with the built CLIs as real processes over a loopback "VM": the real OpenSSH client
// through `--connect` as its ProxyCommand to a real sshd started here (a remote command, scp of 64 MiB),
// 100 concurrent streams through `--forward`, half-close, the errors, a guest-to-host forward, a daemon's
// forward across a guest agent restart, and an agent stop ending open streams at once.
import t from 'tap';
import { execa } from 'execa';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startLoopbackVm } from '../helpers/loopback-vm.js';
import { GUEST_CLI, HOST_CLI, outputMark, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const SSHD = '/usr/sbin/sshd';
if (!existsSync(SSHD)) {
  t.fail(`${SSHD} is missing: install openssh-server and openssh-client (apt-get install openssh-server openssh-client; .ci/run does)`);
  process.exit(1);
}

const root = mkdtempSync(path.join(os.tmpdir(), 'negotiator-streams-'));
chmodSync(root, 0o755);
const user = os.userInfo().username;
const freePort = async (): Promise<number> => {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
};

// sshd on the loopback with its own host key and authorized_keys; the client key beside it.
const sshDir = path.join(root, 'ssh');
mkdirSync(sshDir, { mode: 0o700 });
await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(sshDir, 'host_key')]);
await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(sshDir, 'client_key')]);
writeFileSync(path.join(sshDir, 'authorized_keys'), readFileSync(path.join(sshDir, 'client_key.pub')));
const sshPort = await freePort();
writeFileSync(
  path.join(sshDir, 'sshd_config'),
  [
    `ListenAddress 127.0.0.1:${sshPort}`,
    `HostKey ${path.join(sshDir, 'host_key')}`,
    `AuthorizedKeysFile ${path.join(sshDir, 'authorized_keys')}`,
    `PidFile ${path.join(sshDir, 'sshd.pid')}`,
    'StrictModes no',
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n'),
);
mkdirSync('/run/sshd', { recursive: true });
const sshd = execa(SSHD, ['-D', '-e', '-f', path.join(sshDir, 'sshd_config')], { reject: false, all: true });

// Services: a digest service (answers `<bytes> <sha256>` after the client's EOF) and a quiet one.
const startService = async (handler: (socket: net.Socket) => void): Promise<net.Server> => {
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    handler(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
};
const digest = await startService((socket) => {
  const hash = createHash('sha256');
  let bytes = 0;
  socket.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  socket.on('end', () => socket.end(`${bytes} ${hash.digest('hex')}\n`));
});
const quiet = await startService(() => {});
const portOf = (server: net.Server): number => (server.address() as net.AddressInfo).port;

const vm = await startLoopbackVm(path.join(root, 'vm1'));
const hostControl = path.join(root, 'host.sock');
const guestControl = path.join(root, 'guest.sock');
const startGuest = () =>
  startCli(GUEST_CLI, [
    '--daemon',
    '--host-to-guest', vm.guestChannels.hostToGuest,
    '--guest-to-host', vm.guestChannels.guestToHost,
    '--control-socket', guestControl,
    '--services-dir', path.join(root, 'guest-services'),
    '--service', `ssh=tcp:127.0.0.1:${sshPort}`,
    '--service', `digest=tcp:127.0.0.1:${portOf(digest)}`,
    '--service', `quiet=tcp:127.0.0.1:${portOf(quiet)}`,
    '-v',
  ]);
const host = startCli(HOST_CLI, [
  '--daemon', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', hostControl, '--rescan', '1', '-v',
  '--services-dir', path.join(root, 'host-services'),
  '--service', `hostdigest=tcp:127.0.0.1:${portOf(digest)} guests=vm1`,
  '--service', `vm2only=tcp:127.0.0.1:${portOf(digest)} guests=vm2`,
  '--forward', '0:digest@vm1',
]);
let guest = startGuest();
t.teardown(async () => {
  for (const child of [host, guest, sshd]) child.kill('SIGKILL');
  await Promise.allSettled([host, guest, sshd]);
  for (const server of [digest, quiet]) server.close();
  await vm.close();
  rmSync(root, { recursive: true, force: true });
});
await waitForOutput(host, /ready: control socket/);
await waitForOutput(host, /guest vm1.*connected to the guest agent/, 20_000);
const daemonForwardPort = Number((await waitForOutput(host, /forwarding tcp:127\.0\.0\.1:\d+/)).split(':').at(-1));

const hostCliArgs = ['--control-socket', hostControl, '--no-libvirt'];
const proxyCommand = `${process.execPath} ${HOST_CLI} ${hostCliArgs.join(' ')} --connect ssh %h`;
const sshOptions = [
  '-F', '/dev/null',
  '-i', path.join(sshDir, 'client_key'),
  '-o', 'BatchMode=yes',
  '-o', 'StrictHostKeyChecking=no',
  '-o', 'UserKnownHostsFile=/dev/null',
  '-o', 'LogLevel=ERROR',
  '-o', `ProxyCommand=${proxyCommand}`,
];

// One connection through a forward: send `payload`, half-close, read the reply.
function roundTrip(port: number, payload: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString()));
    socket.on('error', reject);
    socket.end(payload);
  });
}
const expected = (payload: Buffer): string => `${payload.length} ${createHash('sha256').update(payload).digest('hex')}\n`;

t.test('ssh through --connect as ProxyCommand: a remote command, then scp of 64 MiB with equal checksum', async (t) => {
  const run = await execa('ssh', [...sshOptions, `${user}@vm1`, 'echo hello from; echo $SSH_CONNECTION'], { reject: false, timeout: 60_000 });
  t.equal(run.exitCode, 0, run.stderr);
  t.match(run.stdout, /^hello from\n127\.0\.0\.1 \d+ 127\.0\.0\.1 \d+$/);
  const file = path.join(root, 'big.bin');
  writeFileSync(file, randomBytes(64 * 1024 * 1024));
  const copy = path.join(root, 'big.copy');
  const scp = await execa('scp', ['-q', ...sshOptions, file, `${user}@vm1:${copy}`], { reject: false, timeout: 300_000 });
  t.equal(scp.exitCode, 0, scp.stderr);
  const sum = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');
  t.equal(sum(copy), sum(file), '64 MiB arrived intact');
  await waitForOutput(guest, /the host opened service `ssh`/);
});

t.test('100 concurrent streams through --forward, byte-exact, each half-closed', async (t) => {
  const forward = startCli(HOST_CLI, [...hostCliArgs, '--forward', '0:digest', 'vm1']);
  t.teardown(() => void forward.kill('SIGINT'));
  const port = Number((await waitForOutput(forward, /forwarding tcp:127\.0\.0\.1:\d+/)).split(':').at(-1));
  const payloads = Array.from({ length: 100 }, (_, i) => randomBytes(100_000 + i * 1013));
  const replies = await Promise.all(payloads.map((payload) => roundTrip(port, payload)));
  t.equal(replies.filter((reply, i) => reply === expected(payloads[i]!)).length, 100);
  forward.kill('SIGINT');
  t.equal((await forward).exitCode, 0, 'Ctrl-C ends a forward with 0');
});

t.test('errors: unknown service lists the available ones; the host policy hides other guests\' services', async (t) => {
  const unknown = await runCli(HOST_CLI, [...hostCliArgs, '--connect', 'nope', 'vm1']);
  t.equal(unknown.exitCode, 255);
  t.match(unknown.stderr, /no service `nope` on the guest; available: digest, quiet, ssh/);
  const hidden = await runCli(GUEST_CLI, ['--control-socket', guestControl, '--connect', 'vm2only'], { input: '' });
  t.equal(hidden.exitCode, 255);
  t.match(hidden.stderr, /no service `vm2only` on the host for guest vm1; available: hostdigest$/m);
  const noGuest = await runCli(HOST_CLI, [...hostCliArgs, '--connect', 'ssh']);
  t.equal(noGuest.exitCode, 2);
});

t.test('guest -> host: --connect with stdin half-closed, and a guest-side --forward; the host log names the guest', async (t) => {
  const connect = await runCli(GUEST_CLI, ['--control-socket', guestControl, '--connect', 'hostdigest'], { input: 'abc' });
  t.same([connect.exitCode, connect.stdout], [0, expected(Buffer.from('abc'))]);
  const forward = startCli(GUEST_CLI, ['--control-socket', guestControl, '--forward', '0:hostdigest']);
  t.teardown(() => void forward.kill('SIGINT'));
  const port = Number((await waitForOutput(forward, /forwarding tcp:127\.0\.0\.1:\d+/)).split(':').at(-1));
  const payload = randomBytes(3 * 1024 * 1024);
  t.equal(await roundTrip(port, payload), expected(payload));
  await waitForOutput(host, /guest vm1 opened service `hostdigest`/);
});

t.test('an agent restart ends open streams at once with that error; the daemon\'s forward serves again after', async (t) => {
  const open = startCli(HOST_CLI, [...hostCliArgs, '--connect', 'quiet', 'vm1']);
  await waitForOutput(guest, /the host opened service `quiet`/);
  const mark = outputMark(host);
  const stoppedAt = Date.now();
  guest.kill('SIGTERM');
  const ended = await open;
  t.equal(ended.exitCode, 255);
  t.match(String(ended.all), /is stopping .*its streams ended/);
  t.ok(Date.now() - stoppedAt < 5000, `ended in ${Date.now() - stoppedAt} ms`);
  await guest;
  guest = startGuest();
  await waitForOutput(host, /connected to the guest agent|new session with the guest agent/, 20_000, mark);
  const payload = randomBytes(100_000);
  t.equal(await roundTrip(daemonForwardPort, payload), expected(payload), 'the daemon\'s listener outlived the restart');
});
