// `--timeout 0` means "no deadline for the command", never "wait for ever for an agent that is not there":
// with a channel nobody answers on, the CLI exits 255 with the usual handshake message.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CHANNEL_NAMES } from '../../common/wire/protocol.js';
import { HOST_CLI, runCli } from '../helpers/spawn-cli.js';

t.test('negotiator-host --timeout 0 against a silent guest channel exits 255 naming the handshake', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-silent-'));
  const sockets: net.Socket[] = [];
  const servers = [CHANNEL_NAMES.hostToGuest, CHANNEL_NAMES.guestToHost].map((name) => {
    const server = net.createServer((socket) => void sockets.push(socket));
    server.listen(path.join(dir, name));
    return server;
  });
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    for (const server of servers) server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const run = await runCli(HOST_CLI, ['--no-libvirt', '--guest', `vm1=${dir}`, '--control-socket', path.join(dir, 'no-daemon.sock'), '--timeout', '0', '--execute', 'true', 'vm1'], { timeoutMs: 60_000 });
  t.equal(run.exitCode, 255, run.stderr);
  t.match(run.stderr, /no answer to the handshake from .* within 10000 ms: is the negotiator agent running on the other side\?/);
});
