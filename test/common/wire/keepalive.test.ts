// The keepalive (common/wire/keepalive.ts) on real peers over memory channels: a peer that stops
// answering fails the requests waiting on it within the peer timeout, whatever their own deadline; a slow
// but live one is never declared lost; an idle channel sends nothing.
import t, { type Test } from 'tap';
import { setTimeout as delay } from 'node:timers/promises';
import { ChannelClosedError, PeerLostError } from '../../../common/wire/errors.js';
import { METHODS } from '../../../common/wire/protocol.js';
import { createPeerPair } from '../../helpers/agents.js';

async function readyPair(t: Test, peerTimeoutMs: number) {
  const pair = createPeerPair({ peerTimeoutMs });
  t.teardown(() => Promise.all([pair.host.close(), pair.guest.close()]));
  pair.host.start();
  pair.guest.start();
  await Promise.all([pair.host.waitForReady(2000), pair.guest.waitForReady(2000)]);
  return pair;
}

function countPings(chunks: Buffer[]): number {
  return Buffer.concat(chunks).toString('utf8').split('\n').filter((line) => line.includes(`"method":"${METHODS.ping}"`)).length;
}

t.test('a peer that stops answering: its pending request fails within the peer timeout, not its own 60 s', async (t) => {
  const { host, guest, guestEnd, hostEnd } = await readyPair(t, 600);
  guest.handle('hang', () => new Promise(() => {}));
  const started = Date.now();
  const pending = host.request('hang', {}, { timeoutMs: 60_000 });
  await delay(50);
  guestEnd.pause(); // the guest agent freezes: it reads nothing, answers nothing
  const error = await pending.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  const took = Date.now() - started;
  t.type(error, PeerLostError, `failed with ${error?.name}: ${error?.message}`);
  t.type(error, ChannelClosedError, 'a lost peer is a kind of closed channel (exit 255, no cancel sent into the void)');
  t.match(error?.message, /host-peer: no answer from the guest agent for 0\.\d s \(\d keepalive ping\(s\) unanswered\): it died, hangs, or its machine reset; the request was abandoned/);
  t.ok(took >= 600 && took < 1500, `failed after ${took} ms (peer timeout 600 ms)`);
  t.ok(countPings(hostEnd.written) >= 1, 'pings were sent before giving up');
  t.notOk(host.isReady, 'the session is over: a new handshake is under way');
});

t.test('the lost peer comes back: a new handshake, and new requests are served', async (t) => {
  const { host, guest, guestEnd } = await readyPair(t, 300);
  guest.handle('hang', () => new Promise(() => {}));
  guest.handle('echo', (params) => params);
  const pending = host.request('hang', {}, { timeoutMs: 0 });
  await delay(20);
  guestEnd.pause();
  await t.rejects(pending, PeerLostError);
  guestEnd.resume();
  t.same(await host.request('echo', { n: 1 }, { timeoutMs: 2000 }), { n: 1 }, 'answered after the new handshake');
  t.ok(host.isReady);
});

t.test('a slow but live peer is never declared lost: pings are answered while its handler works', async (t) => {
  const { host, guest } = await readyPair(t, 300);
  guest.handle('slow', async () => {
    await delay(1500);
    return 'done';
  });
  t.equal(await host.request('slow', {}, { timeoutMs: 5000 }), 'done', 'a request five times longer than the peer timeout succeeds');
});

t.test('a peer whose event loop is blocked longer than the interval but shorter than the timeout is kept', async (t) => {
  const { host, guest } = await readyPair(t, 900);
  guest.handle('block', () => {
    const until = Date.now() + 500; // answers nothing for 500 ms: pings wait, the peer is not lost
    while (Date.now() < until);
    return 'unblocked';
  });
  t.equal(await host.request('block', {}, { timeoutMs: 5000 }), 'unblocked');
});

t.test('no pings while nothing is pending, and none with the keepalive off', async (t) => {
  const { host, hostEnd } = await readyPair(t, 150);
  await delay(600);
  t.equal(countPings(hostEnd.written), 0, 'an idle channel sends nothing');
  const off = await readyPair(t, 0);
  off.guest.handle('hang', () => new Promise(() => {}));
  const pending = off.host.request('hang', {}, { timeoutMs: 800 });
  off.guestEnd.pause();
  await t.rejects(pending, { name: 'TimeoutError' }, 'with peerTimeoutMs 0 only the request deadline applies');
  t.equal(countPings(off.hostEnd.written), 0);
});

t.test('peerTimeoutMs is validated with the other options', async (t) => {
  t.throws(() => createPeerPair({ peerTimeoutMs: -1 }), /Expected the `peerTimeoutMs` option to be a non-negative integer, got `-1`/);
});
