// What the host learns about a guest besides its agent's answers (host/guest-watch.ts), with a host daemon
// in this process, real guest daemons over loopback "VMs", a libvirt seam that replays events (a domain
// whose channel sockets are a loopback's) and a QMP server that speaks like QEMU's: a reset or a closed
// port fails the waiting caller at once; --wait and --events through the control socket.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHostDaemon } from '../../host/daemon.js';
import { formatEvent } from '../../host/wait-events.js';
import type { HostEvent } from '../../host/guest-watch.js';
import type { DomainSummary, Virsh, VirshStreamItem } from '../../host/virsh.js';
import { createRecordingLogger } from '../helpers/agents.js';
import { startLoopbackVm } from '../helpers/loopback-vm.js';
import { killRecordedGroups } from '../helpers/processes.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { GUEST_CLI, HOST_CLI, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const root = mkdtempSync(path.join(os.tmpdir(), 'negotiator-watch-'));
const fixtures = new URL('../../../test/fixtures/libvirt/', import.meta.url).pathname;

// libvirt: one running domain whose channel sockets are those of a loopback VM; events are replayed.
class ReplayVirsh implements Virsh {
  readonly uri = 'replay:///system';
  readonly #queue: VirshStreamItem[] = [];
  #wake: (() => void) | undefined;
  constructor(readonly domain: DomainSummary, readonly xml: string) {}
  emit(item: VirshStreamItem): void {
    this.#queue.push(item);
    this.#wake?.();
  }
  async listDomains(): Promise<DomainSummary[]> {
    return [this.domain];
  }
  async dumpXml(): Promise<string> {
    return this.xml;
  }
  async *followEvents({ signal }: { signal: AbortSignal }): AsyncGenerator<VirshStreamItem> {
    signal.addEventListener('abort', () => this.#wake?.());
    while (!signal.aborted) {
      const item = this.#queue.shift();
      if (item) yield item;
      else await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }
}

// QMP as QEMU speaks it: greeting, capabilities, qom-get of a port's name; `send` pushes an event.
async function startFakeQmp(socketPath: string) {
  const clients = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    clients.add(socket);
    socket.on('close', () => clients.delete(socket));
    socket.write(`${JSON.stringify({ QMP: { version: { qemu: { major: 9 } }, capabilities: [] } })}\n`);
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      for (let newline; (newline = buffer.indexOf('\n')) >= 0; buffer = buffer.slice(newline + 1)) {
        const command = JSON.parse(buffer.slice(0, newline)) as { execute: string; id?: unknown; arguments?: { path?: string } };
        const answer = command.execute === 'qom-get' ? (command.arguments?.path?.endsWith('port-h2g') ? 'negotiator-host-to-guest.0' : 'negotiator-guest-to-host.0') : {};
        socket.write(`${JSON.stringify({ return: answer, id: command.id })}\n`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    get clients() {
      return clients.size;
    },
    send: (event: string, data: Record<string, unknown>) => {
      for (const socket of clients) socket.write(`${JSON.stringify({ event, data, timestamp: { seconds: 0, microseconds: 0 } })}\n`);
    },
    close: () => new Promise<void>((resolve) => (server.close(() => resolve()), clients.forEach((s) => s.destroy()))),
  };
}

const lvm = await startLoopbackVm(path.join(root, 'lv'));
const qvm = await startLoopbackVm(path.join(root, 'qv'));
const qmp = await startFakeQmp(path.join(root, 'qmp.sock'));
const xml = readFileSync(`${fixtures}libvirt9-transient-running-connected.xml`, 'utf8').replaceAll('/var/lib/libvirt/qemu/channel/target/domain-4-ndisc-fix2/', `${lvm.dir}/`);
const virsh = new ReplayVirsh({ name: 'ndisc-fix2', id: 4, uuid: '243dfc23-214a-4a5c-8d08-c6876a4998de' }, xml);
const control = path.join(root, 'host.sock');
const log = createRecordingLogger();

const guestDaemon = (vm: typeof lvm, name: string) =>
  startCli(GUEST_CLI, ['--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', path.join(root, `${name}.sock`), '--commands-dir', FIXTURE_COMMANDS]);
const guests = [guestDaemon(lvm, 'lv-guest'), guestDaemon(qvm, 'qv-guest')];
const daemon = await startHostDaemon({
  discovery: { libvirt: { virsh }, staticGuests: [{ name: 'qv', hostToGuest: path.join(qvm.dir, 'negotiator-host-to-guest.0'), guestToHost: path.join(qvm.dir, 'negotiator-guest-to-host.0'), qmp: path.join(root, 'qmp.sock') }] },
  commandDirectories: [FIXTURE_COMMANDS],
  controlSocket: control,
  controlMode: 0o600,
  limits: {},
  requestTimeoutMs: 10_000,
  maxLineBytes: 1024 * 1024,
  graceMs: 1000,
  logger: log,
});
const pidFiles: string[] = [];
t.teardown(async () => {
  killRecordedGroups(pidFiles);
  await daemon.stop('test over');
  for (const guest of guests) guest.kill('SIGKILL');
  await Promise.allSettled(guests);
  await Promise.all([lvm.close(), qvm.close(), qmp.close()]);
  rmSync(root, { recursive: true, force: true });
});

const hostCli = (args: string[], timeoutMs = 60_000) => runCli(HOST_CLI, ['--control-socket', control, '--no-libvirt', ...args], { timeoutMs });

t.test('--wait GUEST returns 0 once both channels answered; an unknown guest fails at --timeout with the reason', async (t) => {
  const started = Date.now();
  const [libvirtGuest, qemuGuest] = await Promise.all([hostCli(['--wait', 'ndisc-fix2', '--timeout', '30']), hostCli(['--wait', 'qv', '--timeout', '30'])]);
  t.equal(libvirtGuest.exitCode, 0, libvirtGuest.stderr);
  t.equal(qemuGuest.exitCode, 0, qemuGuest.stderr);
  t.comment(`both guests ready after ${Date.now() - started} ms`);
  const missing = await hostCli(['--wait', 'nope', '--timeout', '1']);
  t.equal(missing.exitCode, 255);
  t.match(missing.stderr, /^negotiator-host: error: guest nope is not ready after 1 s: no guest of that name is up \(known: ndisc-fix2, qv\)$/m);
  const usage = await hostCli(['--wait']);
  t.equal(usage.exitCode, 2);
});

// Run `hang-with-child` in a guest with a 60 s timeout; resolve once it runs.
async function pendingCall(guest: string, name: string) {
  const pidFile = path.join(root, `${name}.pid`);
  pidFiles.push(pidFile);
  const call = hostCli(['--execute', `hang-with-child ${pidFile}`, guest, '--timeout', '60'], 90_000);
  for (let i = 0; i < 400 && !existsSync(pidFile); i++) await sleep(25);
  return { call }; // wrapped: an async function returning the promise itself would wait for it
}

t.test('libvirt reports a reboot: the waiting caller fails at once, and --events shows it', async (t) => {
  const events = startCli(HOST_CLI, ['--control-socket', control, '--events', '--json']);
  t.teardown(() => void events.kill('SIGINT'));
  await sleep(500);
  const { call } = await pendingCall('ndisc-fix2', 'reboot');
  const resetAt = Date.now();
  virsh.emit({ type: 'domain', domain: 'ndisc-fix2', event: 'reboot', detail: '' });
  const result = await call;
  const took = Date.now() - resetAt;
  t.equal(result.exitCode, 255, result.stderr);
  t.match(result.stderr, /guest ndisc-fix2 \(host-to-guest\): the guest was reset \(libvirt reported a reboot \(reset\) of the domain\); the request was abandoned/);
  t.ok(took < 2000, `the caller knew after ${took} ms`);
  const line = await waitForOutput(events, /\{[^\n]*"event":"reset"[^\n]*\}/);
  const event = JSON.parse(line) as HostEvent;
  t.match(event, { guest: 'ndisc-fix2', event: 'reset', detail: /libvirt reported a reboot/ });
  t.ok(Date.parse(event.time) > 0, 'with the time');
  await waitForOutput(events, /"guest":"ndisc-fix2","event":"agent-ready","channel":"host-to-guest"/, 20_000);
  t.equal((await hostCli(['--execute', 'echo-args again', 'ndisc-fix2'])).stdout, 'again\n', 'served again after the new handshake');
  events.kill('SIGINT');
  t.equal((await events).exitCode, 130, 'Ctrl-C ends --events with 130');
});

t.test('QMP: the guest closes its port, or QEMU resets it: the waiting caller fails at once', async (t) => {
  for (let i = 0; i < 100 && qmp.clients === 0; i++) await sleep(50);
  t.equal(qmp.clients, 1, 'the daemon holds the QMP socket');
  await sleep(200); // the capabilities exchange
  const { call: closing } = await pendingCall('qv', 'port');
  const closedAt = Date.now();
  qmp.send('VSERPORT_CHANGE', { id: 'port-h2g', open: false });
  const closed = await closing;
  t.equal(closed.exitCode, 255);
  t.match(closed.stderr, /guest qv \(host-to-guest\): the guest closed its port negotiator-host-to-guest\.0 \(QMP VSERPORT_CHANGE\): its agent stopped or died; the request was abandoned/);
  t.ok(Date.now() - closedAt < 2000, `after ${Date.now() - closedAt} ms`);
  t.equal((await hostCli(['--wait', 'qv', '--timeout', '20'])).exitCode, 0, 'ready again');
  const { call: resetting } = await pendingCall('qv', 'qmp-reset');
  const resetAt = Date.now();
  qmp.send('RESET', { guest: false, reason: 'host-qmp-system-reset' });
  const reset = await resetting;
  t.match(reset.stderr, /guest qv \(host-to-guest\): the guest was reset \(QMP RESET \(host-qmp-system-reset\)\)/);
  t.ok(Date.now() - resetAt < 2000, `after ${Date.now() - resetAt} ms`);
});

t.test('an event line without --json', async (t) => {
  t.equal(formatEvent({ time: '2026-12-04T21:00:00.000Z', guest: 'vm1', event: 'port-closed', channel: 'host-to-guest', detail: 'QMP  said\nso' }), '2026-12-04T21:00:00.000Z vm1 port-closed host-to-guest QMP said so');
});

t.test('--events without a daemon says what to start', async (t) => {
  const result = await runCli(HOST_CLI, ['--control-socket', path.join(root, 'none.sock'), '--events']);
  t.equal(result.exitCode, 255);
  t.match(result.stderr, /--events needs the host daemon, and none answers on .*none\.sock: start negotiator-host --daemon/);
});
