// The arm64 single executables under Debian's qemu-user-static (qemu-aarch64-static -L /usr/aarch64-linux-gnu,
// the sysroot of libc6-arm64-cross and libstdc++6-arm64-cross, which .ci/run installs): --version with no
// code-cache warning (the arm64 blob carries none: one made on x64 is refused), and both daemons serving
// each other over a loopback, built-in commands included. Emulated V8 starts slowly: generous deadlines.
import t from 'tap';
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../examples/demo/demo-daemons.js';
import { startLoopbackVm } from '../../examples/demo/loopback-vm.js';
import { ensureRelease } from '../helpers/release.js';

const QEMU = '/usr/bin/qemu-aarch64-static';
const SYSROOT = '/usr/aarch64-linux-gnu';
const missing = [QEMU, path.join(SYSROOT, 'lib', 'ld-linux-aarch64.so.1'), path.join(SYSROOT, 'lib', 'libstdc++.so.6')].filter((file) => !existsSync(file));
if (missing.length > 0) {
  const reason = `missing ${missing.join(', ')}: apt-get install qemu-user-static libc6-arm64-cross libstdc++6-arm64-cross`;
  if (process.env.CI) t.fail(`the arm64 executables must be tried in CI: ${reason}`);
  else t.plan(0, `skipping the arm64 executables: ${reason}`);
} else {
  await run();
}

async function run(): Promise<void> {
  const release = await ensureRelease();
  const hostExe = path.join(release, 'arm64', 'negotiator-host');
  const guestExe = path.join(release, 'arm64', 'negotiator-guest');
  const version = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-arm64-'));
  const children: Array<ReturnType<typeof arm64>> = [];
  t.teardown(async () => {
    for (const child of children) child.kill('SIGTERM');
    await Promise.allSettled(children);
    rmSync(work, { recursive: true, force: true });
  });
  // An arm64 executable under qemu-user; XDG_RUNTIME_DIR of the test's own for the built-ins.
  function arm64(file: string, args: string[]) {
    return execa(QEMU, ['-L', SYSROOT, file, ...args], {
      reject: false,
      all: true,
      stdin: 'ignore',
      cwd: work,
      timeout: 240_000,
      env: { NODE_OPTIONS: '', XDG_RUNTIME_DIR: work },
    });
  }

  t.test('the executables are arm64', async (t) => {
    for (const file of [hostExe, guestExe]) {
      const header = readFileSync(file).subarray(0, 20);
      t.equal(header.readUInt16LE(18), 0xb7, `${path.basename(file)}: ELF machine AArch64`);
    }
  });

  t.test('--version of both, with no warning', async (t) => {
    for (const file of [hostExe, guestExe]) {
      const shown = await arm64(file, ['--version']);
      t.same([shown.exitCode, shown.all], [0, version], `${path.basename(file)} --version`);
    }
  });

  t.test('the arm64 daemons serve each other, built-in commands included', async (t) => {
    const vm = await startLoopbackVm(path.join(work, 'vm1'));
    t.teardown(() => vm.close());
    const hostSocket = path.join(work, 'host.sock');
    const guestSocket = path.join(work, 'guest.sock');
    children.push(
      arm64(guestExe, ['--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', guestSocket]),
      arm64(hostExe, ['--daemon', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', hostSocket]),
    );
    let list = '';
    const deadline = Date.now() + 180_000;
    while (!/h2g:ready g2h:ready/.test(list) && Date.now() < deadline) {
      list = (await arm64(hostExe, ['--control-socket', hostSocket, '--list-guests'])).stdout;
      if (!/h2g:ready g2h:ready/.test(list)) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    t.match(list, /^vm1 +negotiator \S+ .*h2g:ready g2h:ready$/m);
    const uptime = await arm64(hostExe, ['--control-socket', hostSocket, '--execute', 'uptime', 'vm1']);
    t.equal(uptime.exitCode, 0, uptime.all);
    t.match(uptime.stdout, /^\d+$/, 'the arm64 guest daemon found its built-in commands');
    const hostname = await arm64(guestExe, ['--control-socket', guestSocket, '--execute', 'hostname']);
    t.same([hostname.exitCode, hostname.stdout], [0, os.hostname()], 'the arm64 host daemon found its built-in commands');
  });
}
