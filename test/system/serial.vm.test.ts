// Scenario 6: a guest whose only agent channel is an isa-serial line (/dev/ttyS1 on a QEMU UNIX socket),
// one channel carrying both directions: the same list and execute round trips, both ways.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { HOST_CLI, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';
import { bootGuest, buildGuestImage, shouldRunVmScenarios, type BootedGuest } from '../helpers/vm.js';

if (shouldRunVmScenarios('the isa-serial scenario')) await runScenario();

async function runScenario(): Promise<void> {
  buildGuestImage();
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-serial-'));
  const sockDir = path.join(work, 'vm');
  const serialSocket = path.join(sockDir, 'serial.sock');
  const control = path.join(work, 'host.sock');
  let guest: BootedGuest | undefined;
  const host = startCli(HOST_CLI, ['--daemon', '--no-libvirt', '--guest', `ser=h2g=${serialSocket}`, '--control-socket', control, '--commands-dir', FIXTURE_COMMANDS, '-v']);
  t.teardown(async () => {
    host.kill('SIGKILL');
    await host;
    await guest?.kill();
    rmSync(work, { recursive: true, force: true });
  });
  guest = await bootGuest({
    sockDir,
    command: 'sh test/fixtures/vm/run-guest-agent.sh -v --host-to-guest serial:/dev/ttyS1 --guest-to-host none',
    // ttyS0 stays the console (a -device isa-serial would drop QEMU's default serial); ttyS1 is the
    // agent's line, its host end a UNIX socket QEMU listens on.
    qemuExtra: `-serial mon:stdio -serial unix:${serialSocket},server=on,wait=off`,
  });
  await guest.waitForConsole(/negotiator-guest \S+ ready: control socket \S+, channels serial \/dev\/ttyS1@38400/, 120_000);
  await waitForOutput(host, /guest ser.*(connected to|new session with) the guest agent/, 60_000);
  t.comment('scenario 6: agent on isa-serial connected');
  const hostCli = (args: string[], input?: string) =>
    runCli(HOST_CLI, ['--control-socket', control, '--no-libvirt', ...args], { timeoutMs: 120_000, ...(input !== undefined ? { input } : {}) });

  t.test('host -> guest over the serial line: list, args, stdin, exit code', async (t) => {
    t.match((await hostCli(['--list-commands', 'ser'])).stdout, /^echo-args +Print each argument/m);
    const run = await hostCli(['--execute', `echo-args 'over serial' 2`, 'ser']);
    t.same([run.exitCode, run.stdout], [0, 'over serial\n2\n']);
    t.equal((await hostCli(['--execute', 'cat-stdin', 'ser'], 'line in\n')).stdout, 'line in\n');
    const failing = await hostCli(['--execute', 'exit-with 6', 'ser']);
    t.same([failing.exitCode, failing.stdout, failing.stderr], [6, 'out:6\n', 'err:6\n']);
  });

  t.test('guest -> host over the same line', async (t) => {
    const env = await hostCli(['--execute', 'guest-cli --no-stdin --execute show-env', 'ser', '--timeout', '60']);
    t.equal(env.exitCode, 0, env.stderr);
    t.match(env.stdout, /^NEGOTIATOR_GUEST=ser$/m);
  });
}
