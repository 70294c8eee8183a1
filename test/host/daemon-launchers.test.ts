// The host daemon in this process owns its command launchers (common/commands/launcher-pool.ts): made with
// the size asked for, used by every guest's sessions, and ended by stop(), not left waiting in the process.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { createCommandRegistry } from '../../common/commands/registry.js';
import { startHostDaemon } from '../../host/daemon.js';
import { parseGuestSpecs } from '../../host/guest-specs.js';
import { startFakeGuest } from '../helpers/fake-guests.js';
import { isAlive, launcherTestDaemonOptions, launchersOf, waitUntil } from '../helpers/processes.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';

t.test("stop() ends the host daemon's waiting launchers", async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'negotiator-host-launchers-'));
  const registry = createCommandRegistry({ directories: [FIXTURE_COMMANDS], watch: false });
  // No launchers of its own: every launcher child of this process is the daemon's.
  const guest = await startFakeGuest(root, 'vm1', registry, { prespawn: 0 });
  t.teardown(async () => {
    await guest.stop();
    await registry.close();
    rmSync(root, { recursive: true, force: true });
  });
  const daemon = await startHostDaemon({
    discovery: { staticGuests: parseGuestSpecs([`vm1=${path.join(root, 'vm1')}`]), libvirt: false, rescanIntervalMs: 300_000 },
    ...launcherTestDaemonOptions(path.join(root, 'host.sock')),
  });
  t.teardown(() => daemon.stop('test over'));
  await waitUntil("the daemon's three launchers", () => launchersOf(process.pid).length === 3, 30_000);
  const launchers = launchersOf(process.pid);
  await daemon.stop('test');
  await waitUntil('the launchers to end with the daemon', () => launchers.every((pid) => !isAlive(pid)));
  t.same(launchersOf(process.pid), [], 'none left in the process');
});
