// One host daemon, hundreds of simulated guests appearing and disappearing (--guest specs watched on
// disk, as plain QEMU guests are): every guest gets connected, dropped when it goes, reconnected when
// it comes back, and requests reach the right one.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createCommandRegistry } from '../../common/commands/registry.js';
import { startFakeGuest, type FakeGuest } from '../helpers/fake-guests.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { HOST_CLI, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const COUNT = 200;
const root = mkdtempSync(path.join(os.tmpdir(), 'negotiator-fleet-'));
const registry = createCommandRegistry({ directories: [FIXTURE_COMMANDS], watch: false });
const names = Array.from({ length: COUNT }, (_, i) => `g${String(i).padStart(3, '0')}`);
const guests = new Map<string, FakeGuest>();
for (const name of names) guests.set(name, await startFakeGuest(root, name, registry));
const control = path.join(root, 'host.sock');
const host = startCli(HOST_CLI, ['--daemon', '--no-libvirt', ...names.flatMap((n) => ['--guest', `${n}=${path.join(root, n)}`]), '--control-socket', control, '--rescan', '300', '--commands-dir', FIXTURE_COMMANDS]);
t.teardown(async () => {
  host.kill('SIGKILL');
  await host;
  for (const guest of guests.values()) await guest.stop();
  await registry.close();
  rmSync(root, { recursive: true, force: true });
});
await waitForOutput(host, /ready: control socket/, 30_000);

interface Listed {
  name: string;
  agent: { os: { hostname: string } } | null;
}
const listGuests = async (): Promise<Listed[]> => JSON.parse((await runCli(HOST_CLI, ['--control-socket', control, '--no-libvirt', '--list-guests', '--json'])).stdout) as Listed[];
async function waitForList(what: string, check: (guests: Listed[]) => boolean, timeoutMs = 60_000): Promise<Listed[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const listed = await listGuests();
    if (check(listed)) return listed;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ${listed.length} listed, ${listed.filter((g) => g.agent).length} with an agent`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

t.test(`all ${COUNT} guests get connected, each to its own agent`, async (t) => {
  const listed = await waitForList(`${COUNT} connected guests`, (l) => l.length === COUNT && l.every((g) => g.agent !== null));
  t.ok(listed.every((g) => g.agent?.os.hostname === g.name), 'each connection reached the right guest');
});

t.test('requests to many guests at once each reach the right guest', async (t) => {
  const picks = names.filter((_, i) => i % 10 === 0);
  const runs = await Promise.all(picks.map((name) => runCli(HOST_CLI, ['--control-socket', control, '--timeout', '60', '--execute', `echo-args to-${name}`, name])));
  t.same(runs.map((r) => r.stdout), picks.map((name) => `to-${name}\n`));
});

t.test('half the guests go away and are dropped; they come back and are reconnected', async (t) => {
  const leaving = names.filter((_, i) => i % 2 === 1);
  for (const name of leaving) {
    await guests.get(name)!.stop();
    guests.delete(name);
  }
  await waitForList('the departed guests to be dropped', (l) => l.length === COUNT / 2);
  const returning = Date.now();
  for (const name of leaving) guests.set(name, await startFakeGuest(root, name, registry));
  // Their directories are created anew: noticed by watching, not by the (300 s) rescan.
  const back = await waitForList('every guest back with an agent', (l) => l.length === COUNT && l.every((g) => g.agent !== null), 20_000);
  t.comment(`${leaving.length} guests whose socket directories reappeared were all usable ${Date.now() - returning} ms after the first came back`);
  t.equal(back.length, COUNT);
  const run = await runCli(HOST_CLI, ['--control-socket', control, '--execute', 'echo-args returned', leaving[0]!]);
  t.equal(run.stdout, 'returned\n');
});
