// CLI -> daemon control socket -> agent: the relay over real UNIX sockets and real commands.
import t from 'tap';
import net from 'node:net';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { RpcError } from '../../../common/wire/errors.js';
import { executeRemote } from '../../../common/execute/client.js';
import { registerExecuteRelay } from '../../../common/execute/relay.js';
import { ERROR_CODES, METHODS } from '../../../common/wire/protocol.js';
import { RpcPeer } from '../../../common/wire/rpc-peer.js';
import { createStreamChannel } from '../../../common/wire/stream-channel.js';
import { testAgentInfo } from '../../helpers/agents.js';
import { connectRawPeer } from '../../../bench/raw-peer.js';
import { connectClient, startSocketAgent } from '../../helpers/socket-agent.js';

const agent = await startSocketAgent();
const upstream = await connectClient(agent.socketPath);
const controlPath = path.join(agent.tmp, 'control.sock');
const relayed: Array<Record<string, unknown>> = [];
const downstreamPeers: RpcPeer[] = [];
const control = net.createServer((socket) => {
  const peer = new RpcPeer(createStreamChannel(socket, 'cli'), { localInfo: testAgentInfo('host'), label: 'cli' });
  registerExecuteRelay(peer, {
    logger: agent.log,
    resolveUpstream: async (params) => {
      // A lookup that takes a while (as waiting for a guest's channel does): stdin sent meanwhile must wait.
      if (params.guest === 'slow') return new Promise((resolve) => setTimeout(() => resolve(upstream), 200));
      if (params.guest !== 'vm1') throw new RpcError(ERROR_CODES.invalidParams, `unknown guest ${String(params.guest)}; known: vm1`);
      return upstream;
    },
    onRelayed: (record) => relayed.push(record.params),
  });
  downstreamPeers.push(peer);
  peer.start();
});
await new Promise<void>((resolve) => control.listen(controlPath, resolve));
const cli = await connectClient(controlPath);
t.teardown(async () => {
  await cli.close();
  await Promise.all(downstreamPeers.map((p) => p.close()));
  await new Promise((resolve) => control.close(resolve));
  await upstream.close();
  await agent.close();
});

t.test('execute through the relay: args, stdin, stdout, stderr, exit code', async (t) => {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const result = await executeRemote(cli, { guest: 'vm1', command: 'exit-with', args: ['3'], stdout: (c) => void out.push(c), stderr: (c) => void err.push(c) });
  t.equal(result.exitCode, 3);
  t.equal(Buffer.concat(out).toString(), 'out:3\n');
  t.equal(Buffer.concat(err).toString(), 'err:3\n');
  const echoed: Buffer[] = [];
  const input = Buffer.alloc(2 * 1024 * 1024 + 17, 0xab);
  await executeRemote(cli, { guest: 'vm1', command: 'cat-stdin', stdin: input, stdout: (c) => void echoed.push(c) });
  t.ok(Buffer.concat(echoed).equals(input), '2 MiB of stdin went through and came back');
  t.match(relayed.at(-1), { guest: 'vm1', command: 'cat-stdin' });
});

t.test('stdin sent while the daemon still looks the guest up is not lost (regression)', async (t) => {
  const echoed: Buffer[] = [];
  const result = await executeRemote(cli, { guest: 'slow', command: 'cat-stdin', stdin: 'early bytes\n', stdout: (c) => void echoed.push(c) });
  t.equal(result.exitCode, 0);
  t.equal(Buffer.concat(echoed).toString(), 'early bytes\n');
});

t.test('16 MiB through two hops intact, with a small window', async (t) => {
  const hash = createHash('sha256');
  const err: Buffer[] = [];
  let size = 0;
  const result = await executeRemote(cli, {
    guest: 'vm1',
    command: 'emit-bytes',
    args: [String(16 * 1024 * 1024)],
    window: 256 * 1024,
    timeoutMs: 60_000,
    stdout: (c) => void (hash.update(c), (size += c.length)),
    stderr: (c) => void err.push(c),
  });
  t.equal(result.exitCode, 0);
  t.equal(size, 16 * 1024 * 1024);
  t.equal(hash.digest('hex'), Buffer.concat(err).toString().trim());
});

t.test('errors keep their codes across the relay', async (t) => {
  await t.rejects(executeRemote(cli, { guest: 'vm1', command: 'nope' }), { code: ERROR_CODES.commandNotFound, message: /not found on the guest; available:/ });
  await t.rejects(executeRemote(cli, { guest: 'vm9', command: 'echo-args' }), { code: ERROR_CODES.invalidParams, message: 'unknown guest vm9; known: vm1' });
  const list = (await cli.request(METHODS.listCommands, { guest: 'vm1' })) as { commands: Array<{ name: string }> };
  t.ok(list.commands.some((c) => c.name === 'echo-args'), 'commands.list is relayed');
});

t.test('canceling the CLI request cancels the command upstream', async (t) => {
  const controller = new AbortController();
  const call = executeRemote(cli, { guest: 'vm1', command: 'hang-with-child', args: [path.join(agent.tmp, 'relay.pid')], timeoutMs: 0, signal: controller.signal });
  const deadline = Date.now() + 5000;
  while (agent.services.reduce((n, s) => n + s.running, 0) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(agent.services.reduce((n, s) => n + s.running, 0), 1, 'the command runs on the agent');
  controller.abort();
  await t.rejects(call, { name: 'CanceledError' });
  while (agent.services.reduce((n, s) => n + s.running, 0) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(agent.services.reduce((n, s) => n + s.running, 0), 0, 'and stops there');
});

t.test('50 concurrent CLI requests share the one upstream channel', async (t) => {
  const results = await Promise.all(
    Array.from({ length: 50 }, async (_, i) => {
      const out: Buffer[] = [];
      await executeRemote(cli, { guest: 'vm1', command: 'echo-args', args: [`n${i}`], timeoutMs: 30_000, stdout: (c) => void out.push(c) });
      return Buffer.concat(out).toString() === `n${i}\n`;
    }),
  );
  t.equal(results.filter(Boolean).length, 50);
});

t.test('a client pushing stdin past the window is not buffered without bound: the request fails with flowControl', async (t) => {
  const raw = await connectRawPeer(controlPath, 'host');
  t.teardown(() => raw.close());
  const params = { guest: 'vm1', command: 'hang-with-child', args: ['/dev/null'], stdin: true, timeoutMs: 30_000, window: 256 * 1024 };
  raw.send(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'execute', params })}\n`);
  const line = `{"jsonrpc":"2.0","method":"execute.input","params":{"id":1,"data":"${Buffer.alloc(256 * 1024, 1).toString('base64')}"}}\n`;
  for (let i = 0; i < 80 && !raw.received.some((m) => m.id === 1); i++) {
    if (!raw.socket.write(line)) await new Promise((resolve) => raw.socket.once('drain', resolve));
  }
  t.match(await raw.waitFor((m) => m.id === 1, 10_000), { error: { code: ERROR_CODES.flowControl, message: /more than 524288 stdin bytes/ } });
});
