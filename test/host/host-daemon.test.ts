// The built negotiator-host and negotiator-guest as real processes over loopback "VMs" (QEMU-like
// chardev sockets): both directions, several guests, restarts on either side, a misbehaving guest.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CHANNEL_NAMES } from '../../common/wire/protocol.js';
import { startLoopbackVm, type LoopbackVm } from '../helpers/loopback-vm.js';
import { statOf } from '../helpers/processes.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { GUEST_CLI, HOST_CLI, outputMark, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'negotiator-host-'));
const hostControl = path.join(root, 'host.sock');
const vms: Record<string, LoopbackVm> = {};
for (const name of ['vm1', 'vm2']) vms[name] = await startLoopbackVm(path.join(root, name));

const startGuest = (name: string) =>
  startCli(GUEST_CLI, [
    '--daemon',
    '--host-to-guest', vms[name]!.guestChannels.hostToGuest,
    '--guest-to-host', vms[name]!.guestChannels.guestToHost,
    '--control-socket', path.join(root, `${name}-guest.sock`),
    '--commands-dir', FIXTURE_COMMANDS,
    '-v',
  ]);
const hostArgs = ['--no-libvirt', '--guest', `vm1=${vms.vm1!.dir}`, '--guest', `vm2=${vms.vm2!.dir}`, '--control-socket', hostControl];
const startHost = () => startCli(HOST_CLI, ['--daemon', ...hostArgs, '--commands-dir', FIXTURE_COMMANDS, '--rescan', '1', '-v']);

const guests = { vm1: startGuest('vm1'), vm2: startGuest('vm2') };
let host = startHost();
t.teardown(async () => {
  for (const child of [host, guests.vm1, guests.vm2]) child.kill('SIGKILL');
  await Promise.allSettled([host, guests.vm1, guests.vm2]);
  for (const vm of Object.values(vms)) await vm.close();
  rmSync(root, { recursive: true, force: true });
});
await waitForOutput(host, /ready: control socket/);
await waitForOutput(host, /guest vm1.*connected to the guest agent/, 20_000);
await waitForOutput(host, /guest vm2.*connected to the guest agent/, 20_000);

const hostCli = (args: string[], input?: string) => runCli(HOST_CLI, ['--control-socket', hostControl, '--no-libvirt', ...args], input !== undefined ? { input } : {});
const guestCli = (name: string, args: string[]) => runCli(GUEST_CLI, ['--control-socket', path.join(root, `${name}-guest.sock`), ...args]);

t.test('--list-guests shows both guests with their agents', async (t) => {
  const table = await hostCli(['--list-guests']);
  t.equal(table.exitCode, 0);
  t.match(table.stdout, /^NAME +AGENT +CHANNELS$/m);
  t.match(table.stdout, /^vm1 +negotiator \S+ .*h2g:ready g2h:ready$/m);
  t.match(table.stdout, /^vm2 +negotiator /m);
  const json = JSON.parse((await hostCli(['--list-guests', '--json'])).stdout) as Array<{ name: string; agent: { side: string } }>;
  t.same(json.map((g) => [g.name, g.agent.side]), [['vm1', 'guest'], ['vm2', 'guest']]);
});

t.test('host -> guest: list, execute with args and stdin, exit codes and stderr intact', async (t) => {
  const list = await hostCli(['--list-commands', 'vm1']);
  t.match(list.stdout, /^echo-args +Print each argument on its own line$/m);
  const run = await hostCli(['--execute', `echo-args 'a b' c`, 'vm2']);
  t.same([run.exitCode, run.stdout], [0, 'a b\nc\n']);
  const piped = await hostCli(['--execute', 'cat-stdin', 'vm1'], 'to the guest\n');
  t.equal(piped.stdout, 'to the guest\n');
  const failed = await hostCli(['--execute', 'exit-with 42', 'vm1']);
  t.same([failed.exitCode, failed.stdout, failed.stderr], [42, 'out:42\n', 'err:42\n']);
  const unknown = await hostCli(['--execute', 'uptime', 'vm9']);
  t.equal(unknown.exitCode, 255);
  t.match(unknown.stderr, /unknown guest `vm9`; known guests: vm1, vm2/);
});

t.test('guest -> host: the host command learns which guest asked', async (t) => {
  const env = await guestCli('vm2', ['--execute', 'show-env']);
  t.equal(env.exitCode, 0);
  t.match(env.stdout, /^NEGOTIATOR_GUEST=vm2$/m);
  t.match(env.stdout, /^NEGOTIATOR_SIDE=host$/m);
  await waitForOutput(host, /guest vm2 ran `show-env` \(0 args\): exit 0 in \d+ ms/);
});

t.test('20 host CLIs and 20 guest CLIs at once, all answered', async (t) => {
  const runs = await Promise.all([
    // Generous deadlines: 40 Node processes start at once on a small machine; this checks answers, not speed.
    ...Array.from({ length: 20 }, (_, i) => hostCli(['--timeout', '60', '--execute', `echo-args h${i}`, i % 2 ? 'vm1' : 'vm2'])),
    ...Array.from({ length: 20 }, (_, i) => guestCli(i % 2 ? 'vm1' : 'vm2', ['--timeout', '60', '--execute', `echo-args g${i}`])),
  ]);
  const expected = [...Array.from({ length: 20 }, (_, i) => `h${i}\n`), ...Array.from({ length: 20 }, (_, i) => `g${i}\n`)];
  t.same(runs.map((r) => r.stdout), expected, runs.map((r) => r.stderr).join(''));
  t.ok(runs.every((r) => r.exitCode === 0));
});

t.test('a guest spewing garbage does not disturb the other guest', async (t) => {
  // Take vm2's guest side away from its daemon and write junk and an endless line into it.
  guests.vm2.kill('SIGKILL');
  await guests.vm2;
  const junk = net.connect(path.join(vms.vm2!.dir, 'guest', CHANNEL_NAMES.hostToGuest));
  await new Promise((resolve) => junk.once('connect', resolve));
  junk.write('garbage\n{"jsonrpc":"2.0","id":1,"method":"boom"}\n' + 'x'.repeat(3 * 1024 * 1024));
  const run = await hostCli(['--execute', 'echo-args still-fine', 'vm1']);
  t.equal(run.stdout, 'still-fine\n');
  junk.destroy();
  const mark = outputMark(host);
  guests.vm2 = startGuest('vm2');
  await waitForOutput(host, /guest vm2.*(new session with|connected to) the guest agent/, 20_000, mark);
  const back = await hostCli(['--execute', 'echo-args vm2-back', 'vm2']);
  t.equal(back.stdout, 'vm2-back\n', 'the restarted guest agent is reached with a fresh handshake');
});

t.test('host daemon killed with SIGKILL and restarted: the guests stay up and a fresh handshake follows', async (t) => {
  host.kill('SIGKILL');
  await host;
  host = startHost();
  await waitForOutput(host, /guest vm1.*connected to the guest agent/, 20_000);
  const run = await hostCli(['--execute', 'echo-args after-restart', 'vm1']);
  t.equal(run.stdout, 'after-restart\n');
  const fromGuest = await guestCli('vm1', ['--execute', 'echo-args guest-after']);
  t.equal(fromGuest.stdout, 'guest-after\n');
});

t.test('guest daemon killed mid-execute: the host caller gets a clear error within its timeout', async (t) => {
  const started = Date.now();
  const call = hostCli(['--execute', `hang-with-child ${path.join(root, 'mid.pid')}`, 'vm1', '--timeout', '5']);
  // The command is running in the guest once its pid file appears.
  const { existsSync } = await import('node:fs');
  for (let i = 0; i < 200 && !existsSync(path.join(root, 'mid.pid')); i++) await new Promise((resolve) => setTimeout(resolve, 25));
  guests.vm1.kill('SIGKILL');
  // A SIGKILLed daemon cannot end its commands (under systemd its control group does): end this one's
  // process group here, rather than leave it sleeping for 1000 s.
  t.teardown(() => {
    try {
      const sleeper = Number(readFileSync(path.join(root, 'mid.pid'), 'utf8'));
      process.kill(-statOf(sleeper).pgrp, 'SIGKILL');
    } catch {
      // Already gone.
    }
  });
  const result = await call;
  t.equal(result.exitCode, 255, `stderr: ${result.stderr}`);
  t.match(result.stderr, /^negotiator-host: error: request `execute` to guest vm1 \(host-to-guest\) timed out after 7000 ms: the peer did not answer in time/);
  t.ok(Date.now() - started < 15_000, 'no hang past the deadline (the 5 s timeout, then the 2 s grace of the daemon)');
  const mark = outputMark(host);
  guests.vm1 = startGuest('vm1');
  await waitForOutput(host, /guest vm1.*(new session with|connected to) the guest agent/, 20_000, mark);
  t.equal((await hostCli(['--execute', 'echo-args ok', 'vm1'])).stdout, 'ok\n');
});

t.test('a guest that goes away is dropped; the daemon stops cleanly on SIGTERM', async (t) => {
  await vms.vm2!.close();
  await waitForOutput(host, /guest vm2: closing its channels/, 10_000);
  const list = JSON.parse((await hostCli(['--list-guests', '--json'])).stdout) as Array<{ name: string }>;
  t.same(list.map((g) => g.name), ['vm1']);
  host.kill('SIGTERM');
  const result = await host;
  t.equal(result.exitCode, 0);
});
