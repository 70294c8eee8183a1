// Forwarded streams on a real QEMU guest (TCG) over real virtio-serial: curl on the host reaches the
// guest's busybox httpd through a forward (a daemon's and a CLI's), the guest reaches a host HTTP server
// through its own --forward, and open streams end with `peerRestarted` when the guest agent stops (at
// once) and when the guest is reset (as soon as its new agent says hello).
import t from 'tap';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HOST_CLI, outputMark, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';
import { bootGuest, buildGuestImage, vmSkipReason, type BootedGuest } from '../helpers/vm.js';

const skip = vmSkipReason();
if (skip) {
  if (process.env.CI) t.fail(`the VM scenarios must run in CI but cannot: ${skip}`);
  else t.plan(0, `skipping the streams VM scenarios: ${skip}`);
} else {
  await runScenarios();
}

// Connect to the forward and send a request without its final blank line (httpd waits); `ended`
// resolves with the time the far side ended the connection.
function openIdleRequest(port: number): { ended: Promise<number>; socket: net.Socket } {
  const socket = net.connect({ port, host: '127.0.0.1' });
  const ended = new Promise<number>((resolve) => {
    const done = (): void => resolve(Date.now());
    socket.on('error', done);
    socket.on('close', done);
  });
  socket.write('GET /index.html HTTP/1.0\r\n');
  return { ended, socket };
}

async function runScenarios(): Promise<void> {
  buildGuestImage();
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-streams-vm-'));
  const sockDir = path.join(work, 'vm');
  const control = path.join(work, 'host.sock');
  const site = http.createServer((request, response) => response.end(`host page ${request.url}\n`));
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  const sitePort = (site.address() as net.AddressInfo).port;
  const host = startCli(HOST_CLI, [
    '--daemon', '--no-libvirt', '--guest', `lab=${sockDir}`, '--control-socket', control, '-v',
    '--service', `hostweb=tcp:127.0.0.1:${sitePort} guests=lab`,
    '--forward', '0:web@lab',
  ]);
  let guest: BootedGuest | undefined;
  t.teardown(async () => {
    host.kill('SIGKILL');
    await host;
    await guest?.kill();
    site.close();
    rmSync(work, { recursive: true, force: true });
  });
  const forwardPort = Number((await waitForOutput(host, /forwarding tcp:127\.0\.0\.1:\d+/)).split(':').at(-1));
  guest = await bootGuest({ sockDir, command: 'sh test/fixtures/vm/run-stream-guest.sh -v', qemuExtra: '-action reboot=reset' });
  await guest.waitForConsole(/negotiator-guest \S+ ready: control socket/, 120_000);
  await waitForOutput(host, /guest lab.*connected to the guest agent/, 60_000);
  const hostCli = (args: string[], timeoutMs = 180_000) => runCli(HOST_CLI, ['--control-socket', control, '--no-libvirt', ...args], { timeoutMs });

  t.test('curl on the host reaches the guest\'s httpd through the daemon\'s forward and a CLI forward', async (t) => {
    const page = await execa('curl', ['-sS', '--max-time', '60', `http://127.0.0.1:${forwardPort}/index.html`], { reject: false });
    t.equal(page.stdout, 'hello from the guest', page.stderr);
    const forward = startCli(HOST_CLI, ['--control-socket', control, '--no-libvirt', '--forward', '0:web', 'lab']);
    t.teardown(() => void forward.kill('SIGINT'));
    const port = Number((await waitForOutput(forward, /forwarding tcp:127\.0\.0\.1:\d+/, 30_000)).split(':').at(-1));
    const blob = await execa('curl', ['-sS', '--max-time', '120', `http://127.0.0.1:${port}/blob`], { reject: false, encoding: 'buffer' });
    const expected = createHash('sha256').update(Buffer.from('negotiator\n'.repeat(Math.ceil(4194304 / 11))).subarray(0, 4194304)).digest('hex');
    t.equal(createHash('sha256').update(blob.stdout).digest('hex'), expected, '4 MiB from the guest, byte-exact');
    t.match(guest!.console(), /the host opened service `web`/);
  });

  t.test('guest -> host: a --forward inside the guest reaches a host HTTP server (a service for this guest only)', async (t) => {
    const run = await hostCli(['--execute', 'fetch-through-forward 9000 hostweb /from-the-guest', 'lab', '--timeout', '120']);
    t.equal(run.exitCode, 0, run.stderr);
    t.equal(run.stdout, 'host page /from-the-guest\n');
    await waitForOutput(host, /guest lab opened service `hostweb`/, 10_000);
  });

  t.test('the guest agent stopping ends its open streams at once', async (t) => {
    const idle = openIdleRequest(forwardPort);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const mark = outputMark(host);
    const stop = await hostCli(['--execute', 'stop-agent-soon 1', 'lab']);
    t.equal(stop.exitCode, 0, stop.stderr);
    await waitForOutput(host, /the guest agent is stopping/, 30_000, mark);
    const said = Date.now();
    const after = (await idle.ended) - said;
    t.ok(after < 2000, `the forwarded connection ended ${after} ms after the host logged that the agent stops`);
    await waitForOutput(host, /new session with the guest agent/, 60_000, mark);
  });

  t.test('a guest reset ends open streams with peerRestarted when the new agent says hello', async (t) => {
    const idle = openIdleRequest(forwardPort);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const mark = outputMark(host);
    const resetAt = Date.now();
    await guest!.qmp('system_reset');
    await waitForOutput(host, /new session with the guest agent/, 120_000, mark);
    const helloAt = Date.now();
    const after = (await idle.ended) - helloAt;
    t.ok(after < 2000, `ended ${after} ms after the new session (${Date.now() - resetAt} ms after the reset)`);
    const page = await execa('curl', ['-sS', '--max-time', '60', `http://127.0.0.1:${forwardPort}/index.html`], { reject: false });
    t.equal(page.stdout, 'hello from the guest', 'the daemon\'s forward serves the rebooted guest');
  });
}
