// A stand-in for QEMU's two virtio-serial chardevs, without a VM (used by `npm run demo` and the tests):
// host-side sockets named like QEMU's (`DIR/negotiator-host-to-guest.0`, `DIR/negotiator-guest-to-host.0`,
// server=on, so `negotiator-host --guest NAME=DIR` finds them) bridged to guest-side sockets
// (`DIR/guest/<name>`) that a guest daemon opens with `unix:` channels.
// What QEMU does that matters here, and this does too: one host client at a time (a second waits until
// the first leaves); while no guest holds the port, the host socket is not read (the kernel buffers it);
// bytes the guest writes while no host client is connected are dropped.
import { mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { CHANNEL_NAMES } from '../../common/wire/protocol.js';

/** A running loopback; `close()` stops it and removes its directory. */
export interface LoopbackVm {
  /** The directory holding the host-side sockets (give it to `--guest NAME=DIR`). */
  dir: string;
  /** `unix:` channel specs for the guest daemon. */
  guestChannels: { hostToGuest: string; guestToHost: string };
  /** Cut the guest side (as a guest reboot closes the ports). */
  dropGuest(): void;
  close(): Promise<void>;
}

interface Bridge {
  host: net.Socket | undefined;
  guest: net.Socket | undefined;
  waitingHosts: net.Socket[];
  servers: net.Server[];
}

// Create `dir` and listen on both channels' sockets there; resolves once all four sockets listen.
export async function startLoopbackVm(dir: string): Promise<LoopbackVm> {
  mkdirSync(path.join(dir, 'guest'), { recursive: true });
  const bridges: Bridge[] = [];
  const open = async (name: string): Promise<string> => {
    const bridge: Bridge = { host: undefined, guest: undefined, waitingHosts: [], servers: [] };
    bridges.push(bridge);
    const connectHost = (socket: net.Socket): void => {
      bridge.host = socket;
      if (!bridge.guest) socket.pause();
      socket.on('data', (chunk) => bridge.guest?.write(chunk));
      socket.on('error', () => {});
      socket.on('close', () => {
        bridge.host = undefined;
        const next = bridge.waitingHosts.shift();
        if (next) connectHost(next);
      });
    };
    const hostServer = net.createServer((socket) => {
      if (bridge.host) {
        bridge.waitingHosts.push(socket);
        socket.pause();
        socket.on('close', () => (bridge.waitingHosts = bridge.waitingHosts.filter((s) => s !== socket)));
      } else connectHost(socket);
    });
    const guestPath = path.join(dir, 'guest', name);
    const guestServer = net.createServer((socket) => {
      bridge.guest?.destroy();
      bridge.guest = socket;
      bridge.host?.resume();
      socket.on('data', (chunk) => bridge.host?.write(chunk));
      socket.on('error', () => {});
      socket.on('close', () => {
        if (bridge.guest !== socket) return;
        bridge.guest = undefined;
        bridge.host?.pause();
      });
    });
    bridge.servers.push(hostServer, guestServer);
    await Promise.all([listen(hostServer, path.join(dir, name)), listen(guestServer, guestPath)]);
    return guestPath;
  };
  let closing: Promise<void> | undefined;
  let hostToGuest: string;
  let guestToHost: string;
  try {
    hostToGuest = await open(CHANNEL_NAMES.hostToGuest);
    guestToHost = await open(CHANNEL_NAMES.guestToHost);
  } catch (error) {
    for (const bridge of bridges) for (const server of bridge.servers) server.close();
    throw error;
  }
  return {
    dir,
    guestChannels: { hostToGuest: `unix:${hostToGuest}`, guestToHost: `unix:${guestToHost}` },
    dropGuest() {
      for (const bridge of bridges) bridge.guest?.destroy();
    },
    close() {
      closing ??= (async () => {
        for (const bridge of bridges) {
          for (const socket of [bridge.host, bridge.guest, ...bridge.waitingHosts]) socket?.destroy();
          await Promise.all(bridge.servers.map((server) => new Promise((resolve) => server.close(resolve))));
        }
        rmSync(dir, { recursive: true, force: true });
      })();
      return closing;
    },
  };
}

// Listen on a UNIX socket path; rejects (for instance a path over the 107-byte limit) instead of hanging.
function listen(server: net.Server, socketPath: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new Error(`cannot listen on \`${socketPath}\`: ${error.message}`, { cause: error })));
    server.listen(socketPath, () => resolve());
  });
}
