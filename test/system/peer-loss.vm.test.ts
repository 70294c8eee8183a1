// Peer loss and readiness on a real QEMU guest (../shared/vm/boot-guest.sh, TCG), no libvirt: the host
// daemon watches the guest through a QMP monitor of its own (`--guest lab=DIR,qmp=PATH`). In order:
// `--wait` right after boot; a loaded guest is not declared lost while a silent command runs (and the
// keepalive's ping round trips under that load); a hung guest agent (SIGSTOP) and a SIGKILLed one that
// does not come back fail a caller with a 60 s timeout within 15 s; QMP system_reset fails it at once.
import t from 'tap';
import path from 'node:path';
import os from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { HOST_CLI, outputMark, outputSince, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';
import { REPO, bootGuest, buildGuestImage, vmSkipReason, type BootedGuest } from '../helpers/vm.js';

const skip = vmSkipReason();
if (skip) {
  if (process.env.CI) t.fail(`the VM scenarios must run in CI but cannot: ${skip}`);
  else t.plan(0, `skipping the peer-loss VM scenarios: ${skip}`);
} else {
  await runScenarios();
}

async function runScenarios(): Promise<void> {
  buildGuestImage();
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-loss-vm-'));
  const sockDir = path.join(work, 'vm');
  const control = path.join(work, 'host.sock');
  const daemonQmp = path.join(sockDir, 'qmp-daemon.sock');
  let guest: BootedGuest | undefined;
  // Debug level (-v -v): the keepalive logs each ping's round trip.
  const host = startCli(HOST_CLI, ['--daemon', '--no-libvirt', '--guest', `lab=${sockDir},qmp=${daemonQmp}`, '--control-socket', control, '--commands-dir', path.join(REPO, 'examples', 'commands', 'host'), '--commands-dir', FIXTURE_COMMANDS, '-v', '-v']);
  t.teardown(async () => {
    host.kill('SIGKILL');
    await host;
    await guest?.kill();
    rmSync(work, { recursive: true, force: true });
  });
  await waitForOutput(host, /ready: control socket/, 30_000);
  const hostCli = (args: string[], timeoutMs = 200_000) => runCli(HOST_CLI, ['--control-socket', control, '--no-libvirt', ...args], { timeoutMs });

  // -action reboot=reset: a reset reboots (boot-guest.sh passes -no-reboot); a second QMP monitor for the daemon.
  const booted = Date.now();
  guest = await bootGuest({ sockDir, command: 'sh test/fixtures/vm/run-guest-agent.sh -v', qemuExtra: `-action reboot=reset -qmp unix:${daemonQmp},server=on,wait=off` });

  t.test('--wait right after boot: 0 as soon as the guest agent answered on both channels', async (t) => {
    const wait = await hostCli(['--wait', 'lab', '--timeout', '180']);
    t.equal(wait.exitCode, 0, wait.stderr);
    t.comment(`--wait returned ${((Date.now() - booted) / 1000).toFixed(1)} s after QEMU started (TCG)`);
    const run = await hostCli(['--execute', 'echo-args ready', 'lab']);
    t.same([run.exitCode, run.stdout], [0, 'ready\n'], 'the guest is served at once after --wait');
  });

  t.test('a loaded TCG guest running a silent 25 s command is not declared lost; ping round trips under load', async (t) => {
    const mark = outputMark(host);
    t.equal((await hostCli(['--execute', 'burn-cpu 3 40', 'lab'])).exitCode, 0);
    const run = await hostCli(['--execute', 'sleep-for 25', 'lab', '--timeout', '60']);
    t.equal(run.exitCode, 0, `the silent command finished: ${run.stderr}`);
    const rtts = [...outputSince(host, mark).matchAll(/guest lab \(host-to-guest\) answered a ping in (\d+) ms/g)].map((m) => Number(m[1]));
    t.ok(rtts.length >= 3, `${rtts.length} keepalive pings answered during the command`);
    t.comment(`keepalive ping round trips with 3 busy loops in the 1-vCPU TCG guest: ${rtts.join(', ')} ms (max ${Math.max(...rtts)} ms; peer timeout 15 000 ms)`);
  });

  const loseWhileWaiting = async (setup: string[], delayS: number) => {
    t.equal((await hostCli(['--execute', setup.join(' '), 'lab'])).exitCode, 0, `${setup[0]} scheduled`);
    const started = Date.now();
    const call = await hostCli(['--execute', 'sleep-for 100', 'lab', '--timeout', '60']);
    return { ...call, afterLossMs: Date.now() - started - delayS * 1000 };
  };

  t.test('the guest agent hangs (SIGSTOP): a caller with a 60 s timeout fails within 15 s', async (t) => {
    const result = await loseWhileWaiting(['freeze-agent-soon', '3', '40'], 3);
    t.equal(result.exitCode, 255, result.stderr);
    t.match(result.stderr, /guest lab \(host-to-guest\): no answer from the guest agent for 1\d\.\d s \(\d keepalive ping\(s\) unanswered\)/);
    // The silence the daemon measured (from the agent's last byte, at or before the freeze) is the bound
    // it keeps; the figure below also holds the freeze's own start-up in the guest and the CLI's exit.
    t.ok(Number(/for (\d+\.\d) s/.exec(result.stderr)?.[1]) <= 15.1, 'declared lost after 15 s of silence');
    t.ok(result.afterLossMs <= 16_500, `the caller knew ${(result.afterLossMs / 1000).toFixed(1)} s after the freeze was due`);
    t.comment(`hung agent: caller's error ${(result.afterLossMs / 1000).toFixed(1)} s after SIGSTOP`);
    const back = await hostCli(['--wait', 'lab', '--timeout', '120']);
    t.equal(back.exitCode, 0, `served again after SIGCONT: ${back.stderr}`);
  });

  t.test('the guest agent is SIGKILLed and not restarted: a caller with a 60 s timeout fails within 15 s', async (t) => {
    const result = await loseWhileWaiting(['kill-agent-held', '3', '30'], 3);
    t.equal(result.exitCode, 255, result.stderr);
    t.match(result.stderr, /guest lab \(host-to-guest\): (the guest closed its port negotiator-host-to-guest\.0 \(QMP VSERPORT_CHANGE\)|no answer from the guest agent)/);
    t.ok(result.afterLossMs <= 15_000, `the caller knew ${(result.afterLossMs / 1000).toFixed(1)} s after the kill`);
    t.comment(`killed agent: caller's error ${(result.afterLossMs / 1000).toFixed(1)} s after SIGKILL: ${result.stderr.trim()}`);
    const back = await hostCli(['--wait', 'lab', '--timeout', '150']);
    t.equal(back.exitCode, 0, `the agent came back after the hold: ${back.stderr}`);
  });

  t.test('QMP system_reset while a caller waits: its error comes at once', async (t) => {
    const call = hostCli(['--execute', 'mark-and-sleep reset 100', 'lab', '--timeout', '60']);
    // Reset only once the command runs in the guest (a CLI can take seconds to start on a loaded host).
    for (let i = 0; i < 60 && !(await hostCli(['--execute', 'list-markers', 'lab'])).stdout.includes('marker-reset'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const resetAt = Date.now();
    await guest!.qmp('system_reset');
    const result = await call;
    const took = Date.now() - resetAt;
    t.equal(result.exitCode, 255, result.stderr);
    // QEMU resets the ports before it reports RESET: whichever event the daemon reads first ends the session.
    t.match(result.stderr, /guest lab \(host-to-guest\): (the guest was reset \(QMP RESET|the guest closed its port negotiator-host-to-guest\.0 \(QMP VSERPORT_CHANGE\))/);
    t.ok(took < 3000, `the caller knew ${took} ms after the reset`);
    t.comment(`system_reset: caller's error ${took} ms after the QMP command`);
    const started = Date.now();
    const back = await hostCli(['--wait', 'lab', '--timeout', '180']);
    t.equal(back.exitCode, 0, back.stderr);
    t.comment(`--wait after the reset returned in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
}
