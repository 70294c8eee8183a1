// Peer loss (issue 14 item 3) with the built CLIs as real processes over a loopback "VM" (QEMU-like: the
// host's socket stays open when the guest agent dies, so nothing closes): a caller with a 60 s timeout
// learns within the peer timeout that the guest agent was SIGKILLed or hangs, and the name of the guest.
import t from 'tap';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { startLoopbackVm } from '../helpers/loopback-vm.js';
import { killRecordedGroups } from '../helpers/processes.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { GUEST_CLI, HOST_CLI, outputMark, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'negotiator-loss-'));
const hostControl = path.join(root, 'host.sock');
const vm = await startLoopbackVm(path.join(root, 'vm1'));
const PEER_TIMEOUT_S = 2;

const startGuest = () =>
  startCli(GUEST_CLI, [
    '--daemon',
    '--host-to-guest', vm.guestChannels.hostToGuest,
    '--guest-to-host', vm.guestChannels.guestToHost,
    '--control-socket', path.join(root, 'guest.sock'),
    '--commands-dir', FIXTURE_COMMANDS,
    '-v',
  ]);
const startHost = () =>
  startCli(HOST_CLI, ['--daemon', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', hostControl, '--commands-dir', FIXTURE_COMMANDS, '--peer-timeout', String(PEER_TIMEOUT_S), '-v']);

let guest = startGuest();
const host = startHost();
const pidFiles: string[] = [];
t.teardown(async () => {
  killRecordedGroups(pidFiles);
  for (const child of [host, guest]) child.kill('SIGKILL');
  await Promise.allSettled([host, guest]);
  await vm.close();
  rmSync(root, { recursive: true, force: true });
});
await waitForOutput(host, /guest vm1.*connected to the guest agent/, 20_000);

const hostCli = (args: string[]) => runCli(HOST_CLI, ['--control-socket', hostControl, '--no-libvirt', ...args], { timeoutMs: 90_000 });

// Start a guest command that sleeps, wait until it runs, then do `what` to the guest daemon.
async function callThenLose(name: string, what: () => void): Promise<{ exitCode: number | undefined; stderr: string; tookMs: number }> {
  const pidFile = path.join(root, `${name}.pid`);
  pidFiles.push(pidFile);
  const call = hostCli(['--execute', `hang-with-child ${pidFile}`, 'vm1', '--timeout', '60']);
  for (let i = 0; i < 400 && !existsSync(pidFile); i++) await delay(25);
  const lostAt = Date.now();
  what();
  const result = await call;
  return { ...result, tookMs: Date.now() - lostAt };
}

t.test('guest daemon SIGKILLed while a host CLI waits with a 60 s timeout: error within the peer timeout', async (t) => {
  const result = await callThenLose('killed', () => guest.kill('SIGKILL'));
  t.equal(result.exitCode, 255, result.stderr);
  t.match(result.stderr, /^negotiator-host: error: guest vm1 \(host-to-guest\): no answer from the guest agent for 2\.\d s \(\d keepalive ping\(s\) unanswered\): it died, hangs, or its machine reset; the request was abandoned$/m);
  t.ok(result.tookMs < (PEER_TIMEOUT_S + 1.5) * 1000, `the caller knew after ${result.tookMs} ms (peer timeout ${PEER_TIMEOUT_S} s), not 60 s`);
  await guest;
  const mark = outputMark(host);
  guest = startGuest();
  await waitForOutput(host, /guest vm1.*(new session with|connected to) the guest agent/, 20_000, mark);
  t.equal((await hostCli(['--execute', 'echo-args back', 'vm1'])).stdout, 'back\n', 'the new agent is served after a new handshake');
});

t.test('a hung guest daemon (SIGSTOP): error within the peer timeout; after SIGCONT it serves again', async (t) => {
  const result = await callThenLose('stopped', () => guest.kill('SIGSTOP'));
  t.equal(result.exitCode, 255, result.stderr);
  t.match(result.stderr, /guest vm1 \(host-to-guest\): no answer from the guest agent for 2\.\d s/);
  t.ok(result.tookMs < (PEER_TIMEOUT_S + 1.5) * 1000, `the caller knew after ${result.tookMs} ms`);
  guest.kill('SIGCONT');
  const again = await hostCli(['--execute', 'echo-args awake', 'vm1', '--timeout', '20']);
  t.same([again.exitCode, again.stdout], [0, 'awake\n'], again.stderr);
});

t.test('a live guest whose command is silent for 3x the peer timeout is not declared lost', async (t) => {
  const pidFile = path.join(root, 'silent.pid');
  pidFiles.push(pidFile);
  const run = await hostCli(['--execute', `hang-with-child ${pidFile}`, 'vm1', '--timeout', String(PEER_TIMEOUT_S * 3)]);
  t.equal(run.exitCode, 124, `ended by its own deadline, not by the keepalive: ${run.stderr}`);
});

t.test('a hung host daemon: a CLI waiting on it fails after its own --peer-timeout', async (t) => {
  const pidFile = path.join(root, 'frozen.pid');
  pidFiles.push(pidFile);
  const call = runCli(HOST_CLI, ['--control-socket', hostControl, '--no-libvirt', '--peer-timeout', '1', '--execute', `hang-with-child ${pidFile}`, 'vm1', '--timeout', '60'], { timeoutMs: 90_000 });
  for (let i = 0; i < 400 && !existsSync(pidFile); i++) await delay(25);
  const frozenAt = Date.now();
  host.kill('SIGSTOP');
  t.teardown(() => void host.kill('SIGCONT'));
  const result = await call;
  const took = Date.now() - frozenAt;
  host.kill('SIGCONT');
  t.equal(result.exitCode, 255, result.stderr);
  t.match(result.stderr, /the daemon \(.*host\.sock\): no answer from the host agent for 1\.\d s/);
  // The error comes after 1 s; closing the socket of a frozen daemon then waits its 2 s bound (stream-channel.ts).
  t.ok(took < 4500, `exited after ${took} ms`);
});

t.test('--wait: negotiator-guest through its daemon; without a daemon, the CLIs say what is missing at --timeout', async (t) => {
  const viaDaemon = await runCli(GUEST_CLI, ['--control-socket', path.join(root, 'guest.sock'), '--wait', '--timeout', '20']);
  t.equal(viaDaemon.exitCode, 0, viaDaemon.stderr);
  const nowhere = path.join(root, 'nowhere');
  const host = await runCli(HOST_CLI, ['--control-socket', path.join(root, 'none.sock'), '--no-libvirt', '--guest', `gone=${nowhere}`, '--wait', 'gone', '--timeout', '1.5']);
  t.equal(host.exitCode, 255);
  t.match(host.stderr, /^negotiator-host: error: guest gone is not ready after 1\.5 s: host-to-guest: .*nowhere\/negotiator-host-to-guest\.0.*; guest-to-host: /m);
  const guestSide = await runCli(GUEST_CLI, ['--control-socket', path.join(root, 'none.sock'), '--host-to-guest', `unix:${nowhere}/a`, '--guest-to-host', `unix:${nowhere}/b`, '--wait', '--timeout', '1']);
  t.equal(guestSide.exitCode, 255);
  t.match(guestSide.stderr, /^negotiator-guest: error: the host is not ready after 1 s: .*nowhere\/a.*; .*nowhere\/b/m);
});
