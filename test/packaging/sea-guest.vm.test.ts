// The negotiator-guest single executable (x64) serves the host from inside the real TCG guest built
// without Node (NODE=none; its own image variant, LAB_IMAGE=nonode-sea, with the executable and the
// shared libraries it loads copied in by EXTRA_BINS, as a distribution without Node would have them):
// list, execute host -> guest (built-in commands from the embedded assets) and guest -> host (the guest
// executable's CLI, started inside the guest by a guest command, reaching a host built-in).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HOST_CLI, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';
import { ensureRelease } from '../helpers/release.js';
import { VM_DIR, bootGuest, vmSkipReason, type BootedGuest } from '../helpers/vm.js';

const IMAGE = 'nonode-sea';
const skip = vmSkipReason();
if (skip) {
  if (process.env.CI) t.fail(`the VM scenarios must run in CI but cannot: ${skip}`);
  else t.plan(0, `skipping the QEMU scenario: ${skip}`);
} else {
  await run();
}

async function run(): Promise<void> {
  const exe = path.join(await ensureRelease(), 'x64', 'negotiator-guest');
  const built = spawnSync(path.join(VM_DIR, 'build-initramfs.sh'), { encoding: 'utf8', timeout: 600_000, env: { ...process.env, NODE: 'none', LAB_IMAGE: IMAGE, EXTRA_BINS: exe } });
  if (built.status !== 0) throw new Error(`build-initramfs.sh (NODE=none) failed (${built.status}): ${built.stderr}`);
  // bootGuest hands its environment to boot-guest.sh, which boots the variant named here.
  process.env.LAB_IMAGE = IMAGE;
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-sea-vm-'));
  const sockDir = path.join(work, 'vm');
  const control = path.join(work, 'host.sock');
  const host = startCli(HOST_CLI, ['--daemon', '--no-libvirt', '--guest', `lab=${sockDir}`, '--control-socket', control, '-v']);
  let guest: BootedGuest | undefined;
  t.teardown(async () => {
    host.kill('SIGKILL');
    await host;
    await guest?.kill();
    rmSync(work, { recursive: true, force: true });
  });
  // One guest command (sh -c, under 1.4 KB): say whether a node exists, give the guest a command that
  // runs the guest CLI (for guest -> host), then run the daemon in the foreground.
  const command = [
    'if command -v node >/dev/null; then echo LAB-NODE-PRESENT; else echo LAB-NO-NODE; fi',
    'mkdir -p /run/negotiator /tmp/cmds',
    `printf '#!/bin/sh\\n# Run the guest CLI in this guest\\nexec ${exe} "$@"\\n' > /tmp/cmds/guest-cli`,
    'chmod 755 /tmp/cmds/guest-cli',
    `${exe} --daemon --commands-dir /tmp/cmds -v`,
  ].join('; ');
  guest = await bootGuest({ sockDir, command });
  // No assertion before the subtests: tap ends a root test that has asserted and gone idle, and its
  // teardown would kill the guest while the daemon is still starting (a minute under TCG).
  await guest.waitForConsole(/negotiator-guest \S+ ready: control socket/, 240_000);
  await waitForOutput(host, /guest lab.*connected to the guest agent: negotiator \S+ on/, 120_000);
  const hostCli = (args: string[]) => runCli(HOST_CLI, ['--control-socket', control, '--no-libvirt', ...args], { timeoutMs: 180_000 });

  t.test('the guest has no node', async (t) => {
    t.match(guest!.console(), /^LAB-NO-NODE$/m);
  });

  t.test('host -> guest: list and execute, built-ins included', async (t) => {
    const list = await hostCli(['--list-commands', 'lab']);
    t.equal(list.exitCode, 0, list.stderr);
    t.match(list.stdout, /^guest-cli +Run the guest CLI in this guest/m);
    t.match(list.stdout, /^uptime /m, 'the embedded built-in commands are offered');
    const uptime = await hostCli(['--execute', 'uptime', 'lab']);
    t.equal(uptime.exitCode, 0, uptime.stderr);
    t.match(uptime.stdout, /^\d+\n?$/);
    const missing = await hostCli(['--execute', 'no-such-command', 'lab']);
    t.equal(missing.exitCode, 127);
  });

  t.test('guest -> host: the executable\'s CLI inside the guest runs a host built-in', async (t) => {
    const hostname = await hostCli(['--execute', 'guest-cli --no-stdin --execute hostname', 'lab', '--timeout', '120']);
    t.same([hostname.exitCode, hostname.stdout.trim()], [0, os.hostname()], hostname.stderr);
  });
}
