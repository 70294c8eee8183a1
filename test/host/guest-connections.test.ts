// GuestConnections over a guest table fed by hand (a fake discovery) and real UNIX sockets; the sessions
// are stand-ins whose stop() the test finishes when it likes, to hold a close open.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { silentLogger } from '../../common/base/logger.js';
import type { AgentSession } from '../../common/daemon/agent-session.js';
import type { RpcPeer } from '../../common/wire/rpc-peer.js';
import { GuestConnections } from '../../host/guest-connections.js';
import type { DiscoveredGuest } from '../../host/guest-model.js';
import { GuestTable } from '../../host/guest-table.js';

// A listening UNIX socket at `file` that keeps what connects.
async function listen(t: Test, file: string): Promise<{ accepted: Socket[] }> {
  mkdirSync(path.dirname(file), { recursive: true });
  const accepted: Socket[] = [];
  const server: Server = createServer((socket) => void accepted.push(socket));
  await new Promise<void>((resolve) => server.listen(file, resolve));
  t.teardown(() => {
    for (const socket of accepted) socket.destroy();
    server.close();
  });
  return { accepted };
}

// Two listening socket paths for one guest's host-to-guest channel, before and after it moves.
async function twoSockets(t: Test): Promise<{ oldPath: string; newPath: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'guest-connections-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const oldPath = path.join(dir, 'old', 'h2g');
  const newPath = path.join(dir, 'new', 'h2g');
  await listen(t, oldPath);
  await listen(t, newPath);
  return { oldPath, newPath };
}

const guestAt = (file: string): DiscoveredGuest => ({ name: 'vm', source: 'static', channels: { hostToGuest: { path: file } } });

t.test('a guest that changes channels and then goes down while its old channels close stays down (defect 3)', async (t) => {
  const { oldPath, newPath } = await twoSockets(t);
  const opened: string[] = [];
  let finishStop: () => void = () => {};
  const stopHeld = new Promise<void>((resolve) => (finishStop = resolve));
  const table = new GuestTable();
  const connections = new GuestConnections({
    guests: table,
    logger: silentLogger,
    graceMs: 100,
    connectTimeoutMs: 2000,
    startSession: (_guest, _role, channel): AgentSession => {
      opened.push(channel.description);
      return { peer: {} as RpcPeer, service: undefined, stop: () => stopHeld.then(() => channel.close()) };
    },
  });
  t.teardown(() => connections.close('test over'));

  table.set(guestAt(oldPath));
  while (opened.length === 0) await sleep(10); // bounded by tap's timeout
  table.set(guestAt(newPath)); // guest-changed: its old channels start closing (held open by the session)
  table.delete('static', 'vm'); // guest-down while they close
  finishStop();
  await sleep(300);
  t.equal(connections.get('vm'), undefined, 'the gone guest is not reopened');
  t.same(connections.status(), [], '--list-guests does not show it');
  t.same(opened.filter((description) => description.includes(newPath)), [], 'nothing connected to its new channels');
});

t.test('a guest whose channels move is reopened on the new ones', async (t) => {
  const { oldPath, newPath } = await twoSockets(t);
  const opened: string[] = [];
  const table = new GuestTable();
  const connections = new GuestConnections({
    guests: table,
    logger: silentLogger,
    graceMs: 100,
    startSession: (_guest, _role, channel): AgentSession => {
      opened.push(channel.description);
      return { peer: {} as RpcPeer, service: undefined, stop: async () => channel.close() };
    },
  });
  t.teardown(() => connections.close('test over'));
  table.set(guestAt(oldPath));
  while (opened.length === 0) await sleep(10);
  table.set(guestAt(newPath));
  while (opened.length === 1) await sleep(10);
  t.match(opened, [new RegExp(oldPath), new RegExp(newPath)]);
  t.equal(connections.get('vm')?.guest.channels.hostToGuest?.path, newPath);
});
