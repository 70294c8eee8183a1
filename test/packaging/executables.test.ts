// `npm run package`: the x64 single executables run with no Node anywhere on PATH and no package folder:
// --help, --version, the built-in commands extracted to a private folder, and both daemons serving each
// other over a loopback (the same shape as test/examples/bundle.test.ts for the esbuild bundle).
import t from 'tap';
import { execa } from 'execa';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../examples/demo/demo-daemons.js';
import { startLoopbackVm } from '../../examples/demo/loopback-vm.js';
import { ensureRelease } from '../helpers/release.js';

const release = await ensureRelease();
const hostExe = path.join(release, 'x64', 'negotiator-host');
const guestExe = path.join(release, 'x64', 'negotiator-guest');
const version = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-sea-'));
// A runtime folder of the test's own, so the extraction is seen (and cannot meet another run's).
const runtimeDir = path.join(work, 'run');
mkdirSync(runtimeDir, { mode: 0o700 });
const children: Array<ReturnType<typeof exe>> = [];
t.teardown(async () => {
  for (const child of children) child.kill('SIGTERM');
  await Promise.allSettled(children);
  rmSync(work, { recursive: true, force: true });
});

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
// Every node on that PATH is hidden (bound over with /dev/null in a mount namespace of the child's own),
// so an executable that still needed one would fail here.
const nodes = PATH.split(':').map((dir) => path.join(dir, 'node')).filter((file) => existsSync(file));
const MASK = `for f in ${nodes.map((file) => `'${file}'`).join(' ')}; do mount --bind /dev/null "$f" || exit 99; done; exec "$@"`;

// Run an executable with no node reachable, outside the repository, without tap's NODE_OPTIONS.
function exe(file: string, args: string[], env: Record<string, string> = {}) {
  return execa('unshare', ['--mount', 'sh', '-c', MASK, 'sh', file, ...args], {
    reject: false,
    all: true,
    stdin: 'ignore',
    cwd: work,
    timeout: 30_000,
    extendEnv: false,
    env: { PATH, HOME: work, XDG_RUNTIME_DIR: runtimeDir, ...env },
  });
}

t.test('no node is reachable for the executables (else the proof proves nothing)', async (t) => {
  const which = await exe('sh', ['-c', 'node --version']);
  t.not(which.exitCode, 0, `node is hidden: ${which.all}`);
  t.match(which.all, /node: (Permission denied|not found)/);
});

t.test('--help and --version of both executables', async (t) => {
  for (const [file, usage] of [[hostExe, 'Usage: negotiator-host [options] [command] [guest]'], [guestExe, 'Usage: negotiator-guest [options] [command]']] as const) {
    const help = await exe(file, ['--help']);
    t.equal(help.exitCode, 0, help.exitCode === 0 ? '--help exits 0' : help.all);
    t.equal(help.stdout.split('\n')[0], usage);
    const shown = await exe(file, ['--version']);
    t.same([shown.exitCode, shown.all], [0, version], 'the version, and no warning (code cache accepted)');
  }
});

t.test('a usage error exits 2 like the npm-installed CLI', async (t) => {
  const bad = await exe(hostExe, ['--no-such-option']);
  t.equal(bad.exitCode, 2, bad.all);
});

t.test('the daemons serve each other, built-in commands included', async (t) => {
  const vm = await startLoopbackVm(path.join(work, 'vm1'));
  t.teardown(() => vm.close());
  const hostSocket = path.join(work, 'host.sock');
  const guestSocket = path.join(work, 'guest.sock');
  children.push(
    exe(guestExe, ['--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', guestSocket]),
    exe(hostExe, ['--daemon', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', hostSocket]),
  );
  let list = '';
  for (let attempt = 0; attempt < 100 && !/h2g:ready g2h:ready/.test(list); attempt++) {
    list = (await exe(hostExe, ['--control-socket', hostSocket, '--list-guests'])).stdout;
    if (!/h2g:ready g2h:ready/.test(list)) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  t.match(list, new RegExp(`^vm1 +negotiator ${version.replace(/\./g, '\\.')} .*h2g:ready g2h:ready$`, 'm'));
  const uptime = await exe(hostExe, ['--control-socket', hostSocket, '--execute', 'uptime', 'vm1']);
  t.equal(uptime.exitCode, 0, uptime.all);
  t.match(uptime.stdout, /^\d+$/, 'the guest executable found its built-in commands');
  const hostname = await exe(guestExe, ['--control-socket', guestSocket, '--execute', 'hostname']);
  t.same([hostname.exitCode, hostname.stdout], [0, os.hostname()], 'the host executable found its built-in commands');
  const failing = await exe(hostExe, ['--control-socket', hostSocket, '--execute', 'no-such-command', 'vm1']);
  t.equal(failing.exitCode, 127, `an unknown command: 127 (${failing.all})`);
  const extracted = readdirSync(runtimeDir).filter((name) => name.startsWith('negotiator-builtins-'));
  t.equal(extracted.length, 1, `one private folder for the built-ins: ${extracted.join(', ')}`);
  const stat = lstatSync(path.join(runtimeDir, extracted[0]!));
  t.equal(stat.mode & 0o777, 0o700, 'mode 0700');
  t.ok(readdirSync(path.join(runtimeDir, extracted[0]!)).includes('uptime'));
});

t.test('a planted built-ins folder open to others is not used: the daemon falls back to a fresh private one', async (t) => {
  const planted = path.join(work, 'planted');
  mkdirSync(planted, { mode: 0o700 });
  const vm = await startLoopbackVm(path.join(work, 'vm2'));
  t.teardown(() => vm.close());
  const guestSocket = path.join(work, 'guest2.sock');
  const hostSocket = path.join(work, 'host2.sock');
  // First run makes the folder; then it is opened to everyone (as a squatter's would be).
  const env = { XDG_RUNTIME_DIR: planted };
  const guest = exe(guestExe, ['--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', guestSocket], env);
  const host = exe(hostExe, ['--daemon', '--no-libvirt', '--guest', `vm2=${vm.dir}`, '--control-socket', hostSocket]);
  children.push(guest, host);
  let list = '';
  for (let attempt = 0; attempt < 100 && !/h2g:ready g2h:ready/.test(list); attempt++) {
    list = (await exe(hostExe, ['--control-socket', hostSocket, '--list-guests'])).stdout;
    if (!/h2g:ready g2h:ready/.test(list)) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const [folder] = readdirSync(planted);
  t.ok(folder, 'the first daemon made its folder');
  guest.kill('SIGTERM');
  await guest;
  chmodSync(path.join(planted, folder!), 0o777);
  const again = exe(guestExe, ['--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', guestSocket], env);
  children.push(again);
  let uptime = await exe(hostExe, ['--control-socket', hostSocket, '--execute', 'uptime', 'vm2']);
  for (let attempt = 0; attempt < 50 && uptime.exitCode !== 0; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    uptime = await exe(hostExe, ['--control-socket', hostSocket, '--execute', 'uptime', 'vm2']);
  }
  t.equal(uptime.exitCode, 0, uptime.all);
  const folders = readdirSync(planted).sort();
  t.equal(folders.length, 2, `the open folder was left alone and a fresh one made: ${folders.join(', ')}`);
});
