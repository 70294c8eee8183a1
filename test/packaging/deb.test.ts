// `npm run package`: the Debian packages. Each amd64 package is installed on this machine (root, no
// systemd running), run (--version, doctor, the daemon with its built-in commands), removed and purged,
// and what appeared and what is left is checked; lintian reports no error for any of the four.
// Bad input: installing while a daemon (the npm-installed one) already holds the control socket
// succeeds, and `doctor` says that daemon answers.
import t from 'tap';
import { execa } from 'execa';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GUEST_CLI, PACKAGE_ROOT } from '../../examples/demo/demo-daemons.js';
import { startLoopbackVm } from '../../examples/demo/loopback-vm.js';
import { ensureRelease } from '../helpers/release.js';

// The installed executables, without tap's NODE_OPTIONS (the executables honour it).
const installedCli = (program: string, args: string[], env: Record<string, string> = {}) =>
  execa(`/usr/bin/${program}`, args, { reject: false, all: true, stdin: 'ignore', timeout: 60_000, env: { NODE_OPTIONS: '', ...env } });
const version = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const isRoot = process.getuid?.() === 0;
const hasDpkg = existsSync('/usr/bin/dpkg');
if (!isRoot || !hasDpkg) {
  t.comment(`skipped: installing packages needs root and dpkg (uid ${process.getuid?.()}, dpkg ${hasDpkg ? 'present' : 'missing'})`);
  t.pass('nothing to install here');
  t.end();
} else {
  await main();
}

// Every path whose name holds "negotiator" where a package could leave something.
async function negotiatorPaths(): Promise<string[]> {
  const roots = ['/usr', '/etc', '/var/lib', '/lib', '/run'].filter((dir) => existsSync(dir));
  const found = await execa('find', [...roots, '-xdev', '-name', '*negotiator*'], { reject: false });
  return found.stdout.split('\n').filter((line) => line !== '').sort();
}

async function main(): Promise<void> {
  const release = await ensureRelease();
  const deb = (program: string, arch: string): string => path.join(release, `${program}_${version}_${arch}.deb`);
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-deb-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const dpkg = (...args: string[]) => execa('dpkg', args, { reject: false, all: true, env: { DEBIAN_FRONTEND: 'noninteractive' } });
  // Leftovers of an interrupted earlier run would make the before/after comparison lie.
  await dpkg('--purge', 'negotiator-host', 'negotiator-guest');

  t.test('lintian: no errors in any of the four packages', async (t) => {
    const debs = ['negotiator-host', 'negotiator-guest'].flatMap((program) => ['amd64', 'arm64'].map((arch) => deb(program, arch)));
    const lintian = await execa('lintian', ['--allow-root', '--tag-display-limit', '0', ...debs], { reject: false, all: true, timeout: 1_200_000 });
    const errors = lintian.all.split('\n').filter((line) => /^E: /.test(line));
    t.same(errors, [], `lintian errors (all output:\n${lintian.all})`);
    t.equal(lintian.exitCode, 0, 'lintian ran to its end and found nothing at its failing level (error)');
  });

  for (const [program, side] of [['negotiator-guest', 'guest'], ['negotiator-host', 'host']] as const) {
    t.test(`${program}: install, run, remove, purge`, async (t) => {
      const before = await negotiatorPaths();
      const installed = await dpkg('-i', deb(program, 'amd64'));
      t.equal(installed.exitCode, 0, installed.all);
      t.match(installed.all, /systemd is not running here: start the daemon with `negotiator-\w+ --daemon`/, 'the installation says how to start the daemon without systemd');
      const appeared = (await negotiatorPaths()).filter((file) => !before.includes(file));
      const expected = [
        `/usr/bin/${program}`,
        `/usr/lib/systemd/system/${program}.service`,
        '/usr/lib/negotiator',
        `/usr/share/doc/${program}`,
        `/usr/share/man/man1/${program}.1.gz`,
        `/usr/share/lintian/overrides/${program}`,
        ...(side === 'guest' ? ['/usr/lib/udev/rules.d/90-negotiator-guest.rules'] : []),
      ];
      for (const file of expected) t.ok(appeared.includes(file) || before.includes(file), `installed: ${file}`);
      t.same(readdirSync('/usr/lib/negotiator/commands'), [], '/usr/lib/negotiator/commands is there, empty');
      t.match((await dpkg('-S', '/usr/lib/negotiator/commands')).stdout, new RegExp(`\\b${program}\\b`), 'and the package owns it');
      t.match(readFileSync(`/usr/lib/systemd/system/${program}.service`, 'utf8'), new RegExp(`^ExecStart=/usr/bin/${program} --daemon`, 'm'));
      const shown = await installedCli(program, ['--version']);
      t.same([shown.exitCode, shown.all], [0, version]);
      const doctor = await installedCli(program, ['doctor', ...(side === 'host' ? ['--no-libvirt'] : [])]);
      t.match(doctor.all, side === 'guest' ? /negotiator-host-to-guest\.0/ : /no host daemon answers at \/run\/negotiator\/host\.sock/, `doctor names what is missing:\n${doctor.all}`);

      const removed = await dpkg('-r', program);
      t.equal(removed.exitCode, 0, removed.all);
      t.notOk(existsSync(`/usr/bin/${program}`), 'the executable is gone after remove');
      const purged = await dpkg('--purge', program);
      t.equal(purged.exitCode, 0, purged.all);
      t.same(await negotiatorPaths(), before, 'nothing left after purge');
    });
  }

  t.test('negotiator-guest: installed while a daemon holds the control socket, the daemon\'s built-ins, and purge', async (t) => {
    const before = await negotiatorPaths();
    const vm = await startLoopbackVm(path.join(work, 'vm'));
    t.teardown(() => vm.close());
    const channels = ['--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost];
    const waitForDaemon = async (): Promise<string> => {
      let doctor = '';
      for (let attempt = 0; attempt < 100; attempt++) {
        doctor = (await installedCli('negotiator-guest', ['doctor'])).all;
        if (/^ok .*guest daemon/m.test(doctor)) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      return doctor;
    };
    // The npm-installed daemon, on the default control socket.
    const npmDaemon = execa(process.execPath, [GUEST_CLI, '--daemon', ...channels], { reject: false, all: true, stdin: 'ignore' });
    try {
      const installed = await dpkg('-i', deb('negotiator-guest', 'amd64'));
      t.equal(installed.exitCode, 0, `the installation does not fail: ${installed.all}`);
      t.match(await waitForDaemon(), /^ok .*guest daemon/m, 'doctor reports the daemon that was already running');
    } finally {
      npmDaemon.kill('SIGTERM');
      await npmDaemon;
    }
    // The package's daemon writes its built-in commands under /run/negotiator (no XDG_RUNTIME_DIR for root services).
    const daemon = installedCli('negotiator-guest', ['--daemon', ...channels], { XDG_RUNTIME_DIR: '' });
    try {
      t.match(await waitForDaemon(), /^ok .*guest daemon/m, 'the package\'s daemon answers');
      const folders = readdirSync('/run/negotiator').filter((name) => name.startsWith('negotiator-builtins-0-'));
      t.equal(folders.length, 1, `its built-in commands: ${folders.join(', ')}`);
    } finally {
      daemon.kill('SIGTERM');
      await daemon;
    }
    const purged = await dpkg('--purge', 'negotiator-guest');
    t.equal(purged.exitCode, 0, purged.all);
    t.same(await negotiatorPaths(), before, 'nothing left after purge, the built-in commands\' folder included');
  });
}
