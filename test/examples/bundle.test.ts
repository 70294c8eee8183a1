// `npm run bundle`: the bundled CLIs run with a bare `node` from a folder with no node_modules anywhere
// above it: --help, --version, and both daemons serving each other (built-in commands found) over a loopback.
import t from 'tap';
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildBundles } from '../../examples/bundle/build-bundle.js';
import { PACKAGE_ROOT } from '../../examples/demo/demo-daemons.js';
import { startLoopbackVm } from '../../examples/demo/loopback-vm.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-bundle-'));
const out = path.join(work, 'bundle');
const children: Array<ReturnType<typeof node>> = [];
t.teardown(async () => {
  for (const child of children) child.kill('SIGTERM');
  await Promise.allSettled(children);
  rmSync(work, { recursive: true, force: true });
});
const [hostBundle, guestBundle] = await buildBundles(out);
const version = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

// Run a bundle with a bare node: no NODE_OPTIONS (tap's process tracker puts itself there), cwd outside the repo.
function node(bundle: string, args: string[]) {
  return execa('env', ['-u', 'NODE_OPTIONS', process.execPath, bundle, ...args], { reject: false, all: true, stdin: 'ignore', cwd: work, timeout: 30_000 });
}

t.test('the output: two .mjs files, the built-in commands and the version beside them, ignored by git', async (t) => {
  t.same([path.basename(hostBundle!), path.basename(guestBundle!)], ['negotiator-host.mjs', 'negotiator-guest.mjs']);
  t.ok(existsSync(path.join(out, 'builtin-commands', 'uptime')));
  t.equal((JSON.parse(readFileSync(path.join(out, 'package.json'), 'utf8')) as { version: string }).version, version);
  t.equal(readFileSync(path.join(out, '.gitignore'), 'utf8').split('\n')[1], '*');
  for (let dir = out; path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    t.notOk(existsSync(path.join(dir, 'node_modules')), `no node_modules in ${dir}: nothing can be resolved outside the bundle`);
  }
});

t.test('--help and --version of both bundles', async (t) => {
  for (const [bundle, usage] of [[hostBundle!, 'Usage: negotiator-host [options] [command] [guest]'], [guestBundle!, 'Usage: negotiator-guest [options] [command]']] as const) {
    const help = await node(bundle, ['--help']);
    t.equal(help.exitCode, 0, help.exitCode === 0 ? '--help exits 0' : help.all);
    t.equal(help.stdout.split('\n')[0], usage);
    const shown = await node(bundle, ['--version']);
    t.same([shown.exitCode, shown.stdout], [0, version]);
  }
});

t.test('the bundled daemons serve each other, built-in commands included', async (t) => {
  const vm = await startLoopbackVm(path.join(work, 'vm1'));
  t.teardown(() => vm.close());
  const hostSocket = path.join(work, 'host.sock');
  const guestSocket = path.join(work, 'guest.sock');
  children.push(
    node(guestBundle!, ['--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', guestSocket]),
    node(hostBundle!, ['--daemon', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', hostSocket]),
  );
  let list = '';
  for (let attempt = 0; attempt < 100 && !/h2g:ready g2h:ready/.test(list); attempt++) {
    list = (await node(hostBundle!, ['--control-socket', hostSocket, '--list-guests'])).stdout;
    if (!/h2g:ready g2h:ready/.test(list)) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  t.match(list, /^vm1 +negotiator \S+ .*h2g:ready g2h:ready$/m);
  const uptime = await node(hostBundle!, ['--control-socket', hostSocket, '--execute', 'uptime', 'vm1']);
  t.equal(uptime.exitCode, 0, uptime.all);
  t.match(uptime.stdout, /^\d+$/, 'the guest bundle found its built-in commands');
  const hostname = await node(guestBundle!, ['--control-socket', guestSocket, '--execute', 'hostname']);
  t.same([hostname.exitCode, hostname.stdout], [0, os.hostname()], 'the host bundle found its built-in commands');
});
