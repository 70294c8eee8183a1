// Issue 14, item 4: commands do not outlive a killed daemon. The guest daemon (a real process) runs
// commands for a fake host, is SIGKILLed, and is started again: the new daemon ends the process groups
// its predecessor recorded beside its control socket.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { METHODS } from '../../common/wire/protocol.js';
import { startFakeHost } from '../helpers/fake-host.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { GUEST_CLI, startCli, waitForOutput } from '../helpers/spawn-cli.js';

// Alive and not a zombie.
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

t.test('a SIGKILLed daemon\'s running commands are ended by the next daemon started on its control socket', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-leftover-'));
  const host = await startFakeHost(dir);
  const control = path.join(dir, 'guest.sock');
  const start = () =>
    startCli(GUEST_CLI, ['--daemon', '--host-to-guest', `unix:${host.h2gPath}`, '--guest-to-host', `unix:${host.g2hPath}`, '--control-socket', control, '--commands-dir', FIXTURE_COMMANDS, '-v']);
  let daemon = start();
  t.teardown(async () => {
    daemon.kill('SIGKILL');
    await daemon;
    await host.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await waitForOutput(daemon, /ready: control socket/);
  const peer = await host.peer('h2g', 20_000);
  const pidFiles = [1, 2, 3].map((n) => path.join(dir, `child-${n}.pid`));
  for (const file of pidFiles) void peer.request(METHODS.execute, { command: 'hang-with-child', args: [file], stdin: false, timeoutMs: 600_000, window: 1 << 20 }, { timeoutMs: 0 }).catch(() => {});
  for (let i = 0; i < 100 && !pidFiles.every((f) => existsSync(f) && readFileSync(f, 'utf8').trim() !== ''); i++) await delay(100);
  const children = pidFiles.map((f) => Number(readFileSync(f, 'utf8').trim()));
  await delay(300);
  daemon.kill('SIGKILL');
  await daemon;
  t.ok(children.every(isRunning), 'the commands outlived the SIGKILL (what the fix is for)');
  daemon = start();
  await waitForOutput(daemon, /ready: control socket/);
  const deadline = Date.now() + 10_000;
  while (children.some(isRunning) && Date.now() < deadline) await delay(100);
  t.same(children.filter(isRunning), [], 'none left within 10 s of the restart');
  await waitForOutput(daemon, /ended 3 command process group\(s\) left running by a previous daemon/);
  // With nothing running, no record stays beside the socket (a package purge can then remove /run/negotiator).
  for (let i = 0; i < 50 && existsSync(`${control}.commands`); i++) await delay(100);
  t.notOk(existsSync(`${control}.commands`), 'no record file while no command runs');
  daemon.kill('SIGTERM');
  await daemon;
  t.notOk(existsSync(`${control}.commands`), 'none after a clean stop');
});
