// Discovery against the real libvirtd: starts a transient domain with ../shared/vm/libvirt-guest.sh,
// expects guest-up with the socket paths libvirt chose, guest-down when it is destroyed, and guest-up
// with the new paths when it starts again. The domain is destroyed in teardown whatever happens.
// `virsh create` is slow here (libvirtd probes QEMU's capabilities on each start under TCG, ~80 s), so
// the deadlines on discovery count from the moment the start or stop command returns.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import t from 'tap';
import { createLogger } from '../../common/base/logger.js';
import { createGuestDiscovery } from '../../host/guest-discovery.js';
import type { DiscoveredGuest, GuestEventName } from '../../host/guest-model.js';
import type { GuestTable } from '../../host/guest-table.js';
import { vmScenarioSkip } from '../helpers/vm.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const LIBVIRT_GUEST = path.resolve(REPO, '..', 'shared', 'vm', 'libvirt-guest.sh');
const NAME = `ndisc-it-${process.pid}`;
const DISCOVERY_DEADLINE_MS = 5000;

function findSkipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root: libvirt-guest.sh installs and starts libvirtd';
  if (!existsSync(LIBVIRT_GUEST)) return `${LIBVIRT_GUEST} is missing`;
  const started = spawnSync(LIBVIRT_GUEST, ['daemons-start'], { encoding: 'utf8', timeout: 300_000 });
  if (started.status !== 0) {
    const said = `${started.stderr ?? ''}${started.stdout ?? ''}`.trim().split('\n').slice(-3).join(' | ');
    return `libvirt could not be installed or started (libvirt-guest.sh daemons-start: ${started.error?.message ?? `exit ${started.status}`}: ${said})`;
  }
  return false;
}

// The next `event` about NAME; rejects `deadlineMs` after `armed` resolves (the command that causes it returned).
function nextEvent(table: GuestTable, event: GuestEventName, armed: Promise<unknown>, deadlineMs: number): Promise<{ guest: DiscoveredGuest; at: number }> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const listener = (guest: DiscoveredGuest): void => {
      if (guest.name !== NAME) return;
      table.off(event, listener);
      clearTimeout(timer);
      resolve({ guest, at: Date.now() });
    };
    table.on(event, listener);
    armed.then(
      () => {
        timer = setTimeout(() => {
          table.off(event, listener);
          reject(new Error(`no ${event} for ${NAME} within ${deadlineMs} ms after the command returned`));
        }, deadlineMs);
      },
      (error: unknown) => {
        table.off(event, listener);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}

// Run libvirt-guest.sh; resolves with the time it returned.
async function libvirtGuest(...args: string[]): Promise<number> {
  await execa(LIBVIRT_GUEST, args, { timeout: 200_000, stdin: 'ignore' });
  return Date.now();
}

// The channel socket paths as `virsh dumpxml` prints them (read with a regular expression, not our parser).
async function pathsFromVirsh(): Promise<{ hostToGuest?: string; guestToHost?: string }> {
  const { stdout } = await execa('virsh', ['-c', 'qemu:///system', 'dumpxml', NAME], { timeout: 20_000, env: { LC_ALL: 'C' } });
  const find = (channel: string): string | undefined => new RegExp(`path='([^']*)'/>\\s*<target type='virtio' name='${channel.replace(/\./g, '\\.')}'`).exec(stdout)?.[1];
  return { hostToGuest: find('negotiator-host-to-guest.0'), guestToHost: find('negotiator-guest-to-host.0') };
}

const isSocket = (socketPath: string | undefined): boolean => socketPath !== undefined && statSync(socketPath, { throwIfNoEntry: false })?.isSocket() === true;

const skip = vmScenarioSkip('the libvirt discovery scenario', findSkipReason());
if (!skip) t.setTimeout(480_000);

t.test('discovery follows a real libvirt domain through start, stop and restart', { skip }, async (t) => {
  t.teardown(() => libvirtGuest('stop', NAME).then(() => undefined, () => undefined));
  const lines: string[] = [];
  // When libvirt's own lifecycle events reached discovery: the latency worth reporting runs from there.
  const eventSeen = new Map<string, number>();
  const write = (line: string): void => {
    lines.push(line.trimEnd());
    const kind = new RegExp(`domain ${NAME}: lifecycle (started|stopped)`).exec(line)?.[1];
    if (kind) eventSeen.set(kind, Date.now());
  };
  const discovery = createGuestDiscovery({ libvirt: { uri: 'qemu:///system' }, logger: createLogger({ level: 'debug', format: 'plain', write }) });
  t.teardown(() => discovery.close());
  t.teardown(() => {
    if (t.passing()) return;
    t.comment(`discovery log:\n${lines.join('\n')}`);
  });
  await discovery.ready;
  const table = discovery.guests;
  t.equal(table.get(NAME), undefined, 'not there before it starts');

  const startedAt = Date.now();
  const started = libvirtGuest('start', NAME, REPO);
  const up = await nextEvent(table, 'guest-up', started, DISCOVERY_DEADLINE_MS);
  const startReturned = await started;
  t.comment(`start: virsh create took ${startReturned - startedAt} ms; guest-up came ${up.at - startReturned} ms after it returned, ${up.at - (eventSeen.get('started') ?? NaN)} ms after libvirt's Started event`);
  const expected = await pathsFromVirsh();
  t.match(up.guest, { name: NAME, source: 'libvirt', id: Number, uuid: /^[0-9a-f-]{36}$/ });
  t.same([up.guest.channels.hostToGuest?.path, up.guest.channels.guestToHost?.path], [expected.hostToGuest, expected.guestToHost], 'the paths libvirt chose');
  t.ok(isSocket(up.guest.channels.hostToGuest?.path) && isSocket(up.guest.channels.guestToHost?.path), 'both are sockets');
  t.match(up.guest.channels.hostToGuest, { state: /^(connected|disconnected)$/ });
  t.comment(`socket paths: ${up.guest.channels.hostToGuest?.path} ${up.guest.channels.guestToHost?.path}`);

  const stopped = libvirtGuest('stop', NAME);
  const down = await nextEvent(table, 'guest-down', stopped, DISCOVERY_DEADLINE_MS);
  const stopReturned = await stopped;
  t.comment(`stop: guest-down came ${down.at - stopReturned} ms after virsh destroy returned, ${down.at - (eventSeen.get('stopped') ?? NaN)} ms after libvirt's Stopped event`);
  t.same(down.guest, up.guest, 'guest-down carries the guest that went down');
  t.equal(table.get(NAME), undefined);

  const restarted = libvirtGuest('start', NAME, REPO);
  const upAgain = await nextEvent(table, 'guest-up', restarted, DISCOVERY_DEADLINE_MS);
  t.comment(`restart: guest-up came ${upAgain.at - (await restarted)} ms after virsh create returned, ${upAgain.at - (eventSeen.get('started') ?? NaN)} ms after libvirt's Started event`);
  const expectedAgain = await pathsFromVirsh();
  t.same([upAgain.guest.channels.hostToGuest?.path, upAgain.guest.channels.guestToHost?.path], [expectedAgain.hostToGuest, expectedAgain.guestToHost]);
  t.not(upAgain.guest.id, up.guest.id, 'a new domain id');
  t.not(upAgain.guest.channels.hostToGuest?.path, up.guest.channels.hostToGuest?.path, 'so new socket paths');
  t.ok(isSocket(upAgain.guest.channels.hostToGuest?.path), 'which exist');
  t.same(table.get(NAME), upAgain.guest);
  // libvirtd itself may stall while another `virsh create` re-probes QEMU (seen when tests overlap):
  // discovery rightly warns and retries then. Anything else is worth a look.
  t.same(lines.filter((line) => / (WARN|ERROR) /.test(line) && !/did not finish within \d+ ms: libvirtd .* is stuck or overloaded/.test(line)), [], 'nothing worth a warning');
});
