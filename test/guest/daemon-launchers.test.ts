// The guest daemon in this process owns its command launchers (common/commands/launcher-pool.ts): the
// size asked for, used by every connection, and ended by stop(), not left waiting in the process.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { executeRemote } from '../../common/execute/client.js';
import { startGuestDaemon } from '../../guest/daemon.js';
import { startFakeHost } from '../helpers/fake-host.js';
import { isAlive, launcherTestDaemonOptions, launchersOf, waitUntil } from '../helpers/processes.js';

t.test('stop() ends the daemon\'s waiting launchers', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-guest-launchers-'));
  // No launchers of its own: every launcher child of this process is the daemon's.
  const host = await startFakeHost(dir, { prespawn: 0 });
  t.teardown(async () => {
    await host.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const daemon = await startGuestDaemon({
    hostToGuest: { kind: 'unix', path: host.h2gPath },
    guestToHost: { kind: 'unix', path: host.g2hPath },
    ...launcherTestDaemonOptions(path.join(dir, 'guest.sock')),
  });
  t.teardown(() => daemon.stop('test over'));

  const peer = await host.peer('h2g');
  const out: Buffer[] = [];
  const result = await executeRemote(peer, { command: 'echo-args', args: ['through the daemon'], stdout: (chunk) => void out.push(chunk) });
  t.equal(result.exitCode, 0);
  t.equal(Buffer.concat(out).toString(), 'through the daemon\n');
  await waitUntil('the daemon\'s three launchers', () => launchersOf(process.pid).length === 3);
  const launchers = launchersOf(process.pid);

  await daemon.stop('test');
  await waitUntil('the launchers to end with the daemon', () => launchers.every((pid) => !isAlive(pid)));
  t.same(launchersOf(process.pid), [], 'none left in the process');
});
