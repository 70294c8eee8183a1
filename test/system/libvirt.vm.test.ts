// Scenario 1 on a real libvirtd: a transient domain (../shared/vm/libvirt-guest.sh) runs the built guest
// daemon from the shared checkout; the host daemon finds it through libvirt alone (no --guest), commands
// run both ways; the domain is destroyed and started again and the daemon reconnects on its own.
import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { HOST_CLI, outputMark, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';
import { LIBVIRT_GUEST, REPO, buildGuestImage, shouldRunVmScenarios } from '../helpers/vm.js';

const DOMAIN = `negotiator-e2e-${process.pid}`;
const GUEST_COMMAND = 'sh test/fixtures/vm/run-guest-agent.sh -v';

if (shouldRunVmScenarios('the libvirt scenario')) await runScenario();

async function libvirt(...args: string[]): Promise<void> {
  const result = await execa(LIBVIRT_GUEST, args, { reject: false, timeout: 600_000, all: true });
  if (result.exitCode !== 0) throw new Error(`libvirt-guest.sh ${args.join(' ')} failed (${result.exitCode}): ${result.all}`);
}

async function runScenario(): Promise<void> {
  buildGuestImage();
  await libvirt('daemons-start');
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-libvirt-'));
  const control = path.join(work, 'host.sock');
  const host = startCli(HOST_CLI, [
    '--daemon',
    '--control-socket', control,
    '--commands-dir', path.join(REPO, 'examples', 'commands', 'host'),
    '--commands-dir', FIXTURE_COMMANDS,
    '-v',
  ]);
  t.teardown(async () => {
    await libvirt('stop', DOMAIN).catch(() => {});
    host.kill('SIGTERM');
    await host;
    rmSync(work, { recursive: true, force: true });
  });
  await waitForOutput(host, /negotiator-host \S+ ready/, 30_000);
  await libvirt('start', DOMAIN, REPO, GUEST_COMMAND);
  await waitForOutput(host, new RegExp(`guest ${DOMAIN}.*connected to the guest agent`), 180_000);
  t.comment(`scenario 1: libvirt domain ${DOMAIN} discovered and connected`);
  const hostCli = (args: string[], input?: string) =>
    runCli(HOST_CLI, ['--control-socket', control, ...args], { timeoutMs: 120_000, ...(input !== undefined ? { input } : {}) });

  t.test('the host daemon found the domain through libvirt, with its real socket paths', async (t) => {
    const guests = JSON.parse((await hostCli(['--list-guests', '--json'])).stdout) as Array<{ name: string; source: string; uuid: string; agent: { side: string } | null; channels: Record<string, { path: string }> }>;
    const entry = guests.find((g) => g.name === DOMAIN);
    t.ok(entry, `listed: ${JSON.stringify(guests)}`);
    t.equal(entry?.source, 'libvirt');
    t.match(entry?.uuid, /^[0-9a-f-]{36}$/);
    t.equal(entry?.agent?.side, 'guest');
    t.match(entry?.channels.hostToGuest?.path, /negotiator-host-to-guest\.0$/);
  });

  t.test('host -> guest: --list-commands and --execute with arguments and stdin; exit codes and stderr intact', async (t) => {
    t.match((await hostCli(['--list-commands', DOMAIN])).stdout, /^echo-args +Print each argument/m);
    const run = await hostCli(['--execute', `echo-args 'a b' c`, DOMAIN]);
    t.same([run.exitCode, run.stdout], [0, 'a b\nc\n']);
    t.equal((await hostCli(['--execute', 'cat-stdin', DOMAIN], 'via libvirt\n')).stdout, 'via libvirt\n');
    const failing = await hostCli(['--execute', 'exit-with 4', DOMAIN]);
    t.same([failing.exitCode, failing.stdout, failing.stderr], [4, 'out:4\n', 'err:4\n']);
  });

  t.test('guest -> host: negotiator-guest --execute reboot-notify reaches the host, NEGOTIATOR_GUEST names the domain', async (t) => {
    const env = await hostCli(['--execute', 'guest-cli --no-stdin --execute show-env', DOMAIN, '--timeout', '60']);
    t.equal(env.exitCode, 0, env.stderr);
    t.match(env.stdout, new RegExp(`^NEGOTIATOR_GUEST=${DOMAIN}$`, 'm'));
    t.match(env.stdout, /^NEGOTIATOR_GUEST_UUID=[0-9a-f-]{36}$/m);
    const notify = await hostCli(['--execute', 'guest-cli --no-stdin --execute reboot-notify', DOMAIN, '--timeout', '60']);
    t.equal(notify.exitCode, 0, notify.stderr);
    await waitForOutput(host, new RegExp(`guest ${DOMAIN} ran \`reboot-notify\``), 10_000);
  });

  t.test('the domain is destroyed and started again: the daemon notices both and reconnects on its own', async (t) => {
    const mark = outputMark(host);
    await libvirt('stop', DOMAIN);
    await waitForOutput(host, new RegExp(`guest ${DOMAIN}: closing its channels`), 30_000, mark);
    const gone = await hostCli(['--execute', 'echo-args x', DOMAIN]);
    t.equal(gone.exitCode, 255);
    t.match(gone.stderr, new RegExp(`unknown guest \`${DOMAIN}\``));
    const again = outputMark(host);
    await libvirt('start', DOMAIN, REPO, GUEST_COMMAND);
    await waitForOutput(host, new RegExp(`guest ${DOMAIN}.*connected to the guest agent`), 180_000, again);
    t.equal((await hostCli(['--execute', 'echo-args back-again', DOMAIN])).stdout, 'back-again\n');
  });
}
