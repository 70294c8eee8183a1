// The built negotiator-guest as real processes: the daemon on UNIX-socket channels (a fake host plays
// QEMU's sockets plus a host agent), and the CLI through the daemon's control socket or directly.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { executeRemote } from '../../common/execute/client.js';
import { METHODS } from '../../common/wire/protocol.js';
import { startFakeHost } from '../helpers/fake-host.js';
import { traceLoadedModules } from '../helpers/loaded-modules.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { GUEST_CLI, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-guest-'));
const host = await startFakeHost(dir);
const control = path.join(dir, 'guest.sock');
const daemon = startCli(GUEST_CLI, [
  '--daemon',
  '--host-to-guest', `unix:${host.h2gPath}`,
  '--guest-to-host', `unix:${host.g2hPath}`,
  '--control-socket', control,
  '--commands-dir', FIXTURE_COMMANDS,
  '-v',
]);
t.teardown(async () => {
  daemon.kill('SIGKILL');
  await daemon;
  await host.close();
  rmSync(dir, { recursive: true, force: true });
});
await waitForOutput(daemon, /negotiator-guest .* ready: control socket/);
const cli = (args: string[], input?: string) => runCli(GUEST_CLI, ['--control-socket', control, ...args], input !== undefined ? { input } : {});

t.test('the host lists and runs the guest\'s commands (user directory first, built-ins after)', async (t) => {
  const peer = await host.peer('h2g');
  const { commands } = (await peer.request(METHODS.listCommands, {})) as { commands: Array<{ name: string }> };
  const names = commands.map((c) => c.name);
  t.ok(names.includes('echo-args'), 'a user command');
  t.ok(names.includes('distributor-id'), 'a built-in command');
  const out: Buffer[] = [];
  const result = await executeRemote(peer, { command: 'echo-args', args: ['from host'], stdout: (c) => void out.push(c) });
  t.equal(result.exitCode, 0);
  t.equal(Buffer.concat(out).toString(), 'from host\n');
});

t.test('the guest CLI runs host commands through the daemon', async (t) => {
  const ok = await cli(['--execute', `echo-args one 'two words'`]);
  t.equal(ok.exitCode, 0);
  t.equal(ok.stdout, 'one\ntwo words\n');
  const failing = await cli(['--execute', 'exit-with 3']);
  t.equal(failing.exitCode, 3, 'the exit code is the remote command\'s');
  t.equal(failing.stdout, 'out:3\n');
  t.equal(failing.stderr, 'err:3\n');
  const piped = await cli(['--execute', 'cat-stdin'], 'through stdin\n');
  t.equal(piped.stdout, 'through stdin\n', 'stdin is forwarded');
  const env = await cli(['--execute', 'show-env']);
  t.match(env.stdout, /^NEGOTIATOR_GUEST=fake-guest$/m, 'the host command saw the guest name');
  t.match(env.stdout, /^NEGOTIATOR_PEER_SIDE=guest$/m);
});

t.test('errors: unknown command (127, lists what exists), --json, --list-commands', async (t) => {
  const missing = await cli(['--execute', 'no-such-thing']);
  t.equal(missing.exitCode, 127);
  t.match(missing.stderr, /^negotiator-guest: error: command `no-such-thing` not found on the host; available: .*echo-args/);
  const json = await cli(['--json', '--execute', 'exit-with 5']);
  t.equal(json.exitCode, 5);
  t.match(JSON.parse(json.stdout), { command: 'exit-with', args: ['5'], exitCode: 5, stdout: 'out:5\n', stderr: 'err:5\n', timedOut: false });
  const list = await cli(['--list-commands']);
  t.equal(list.exitCode, 0);
  t.match(list.stdout, /^echo-args +Print each argument on its own line$/m);
  const listJson = await cli(['--list-commands', '--json']);
  t.ok((JSON.parse(listJson.stdout) as Array<{ name: string }>).some((c) => c.name === 'cat-stdin'));
});

t.test('the CLI through the daemon does not load the port modules (only a CLI without a daemon opens a port)', async (t) => {
  const traced = await traceLoadedModules(GUEST_CLI, ['--control-socket', control, '--execute', 'echo-args traced']);
  t.equal(traced.exitCode, 0, traced.stderr);
  t.ok(traced.files.some((url) => url.endsWith('/dist/guest/run-guest.js')), 'the trace sees the CLI\'s modules');
  t.same(traced.files.filter((url) => /\/dist\/guest\/(open-channel|port-channel|port-read-wakeup|port-write-queue|pipe-handle|serial-tty|virtio-ports)\.js$/.test(url)), []);
});

t.test('20 concurrent guest CLIs are all answered', async (t) => {
  const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => cli(['--timeout', '60', '--execute', `echo-args cli-${i}`])));
  t.same(runs.map((r) => [r.exitCode, r.stdout]), Array.from({ length: 20 }, (_, i) => [0, `cli-${i}\n`]));
});

t.test('without the daemon, --character-device talks to the channel directly', async (t) => {
  // The fake host accepts a second connection on g2h (QEMU would not while the daemon holds the port).
  const direct = await runCli(GUEST_CLI, ['--character-device', `unix:${host.g2hPath}`, '--execute', 'echo-args direct']);
  t.equal(direct.exitCode, 0);
  t.equal(direct.stdout, 'direct\n');
  const nothing = await runCli(GUEST_CLI, ['--character-device', `unix:${path.join(dir, 'absent.sock')}`, '--execute', 'echo-args x']);
  t.equal(nothing.exitCode, 255);
  t.match(nothing.stderr, /cannot connect to .*absent\.sock: the socket does not exist/);
});

t.test('the host goes away and comes back: the daemon reconnects and serves again', async (t) => {
  host.disconnect();
  const again = await host.peer('h2g', 15_000);
  t.match(await again.request(METHODS.ping, {}), { time: Number });
  const run = await cli(['--execute', 'echo-args back']);
  t.equal(run.stdout, 'back\n');
});

t.test('SIGTERM: the daemon tells the host it is stopping and exits 0', async (t) => {
  const g2h = await host.peer('g2h');
  const stopping = new Promise<unknown>((resolve) => g2h.onNotification(METHODS.agentStopping, resolve));
  daemon.kill('SIGTERM');
  t.match(await stopping, { reason: 'negotiator-guest received SIGTERM' });
  const result = await daemon;
  t.equal(result.exitCode, 0);
  t.match(result.all, /stopped/);
});
