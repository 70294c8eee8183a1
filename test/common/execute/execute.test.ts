// execute end to end: real UNIX socket, real child processes, the real registry, runner and service.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { CanceledError, ChannelClosedError } from '../../../common/wire/errors.js';
import { executeRemote } from '../../../common/execute/client.js';
import { ERROR_CODES, METHODS } from '../../../common/wire/protocol.js';
import { isAlive, waitUntil } from '../../helpers/processes.js';
import { connectClient, startSocketAgent } from '../../helpers/socket-agent.js';

async function readPid(file: string): Promise<number> {
  let text = '';
  await waitUntil(`pid file ${file}`, () => {
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      return false;
    }
    return text !== '';
  });
  return Number(text);
}

const agent = await startSocketAgent();
const client = await connectClient(agent.socketPath);
t.teardown(async () => {
  await client.close();
  await agent.close();
});

t.test('list commands with their first-comment descriptions; non-executables are not listed', async (t) => {
  const result = (await client.request(METHODS.listCommands, {})) as { commands: Array<{ name: string; description: string }> };
  const names = result.commands.map((c) => c.name);
  t.ok(names.includes('echo-args') && names.includes('emit-bytes'));
  t.notOk(names.includes('not-executable'));
  t.same(result.commands.find((c) => c.name === 'echo-args'), { name: 'echo-args', description: 'Print each argument on its own line' });
});

t.test('arguments pass as given, without a shell', async (t) => {
  const out: Buffer[] = [];
  const args = ['plain', 'two words', '$(rm -rf /)', '*', "quote'd", ''];
  const result = await executeRemote(client, { command: 'echo-args', args, stdout: (c) => void out.push(c) });
  t.equal(Buffer.concat(out).toString(), args.map((a) => `${a}\n`).join(''));
  t.match(result, { exitCode: 0, signal: null, timedOut: false, isCanceled: false, outputTruncated: false, stdoutBytes: Buffer.concat(out).length });
  t.type(result.durationMs, 'number');
});

t.test('exit code, stdout and stderr come back separately', async (t) => {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const result = await executeRemote(client, { command: 'exit-with', args: ['7'], stdout: (c) => void out.push(c), stderr: (c) => void err.push(c) });
  t.equal(result.exitCode, 7);
  t.equal(Buffer.concat(out).toString(), 'out:7\n');
  t.equal(Buffer.concat(err).toString(), 'err:7\n');
  const killed = await executeRemote(client, { command: 'kill-self' });
  t.match(killed, { exitCode: null, signal: 'SIGKILL' });
});

t.test('stdin is forwarded, binary-safe, and ends', async (t) => {
  const input = Buffer.concat([Buffer.from([0, 255, 10, 13, 128]), Buffer.alloc(600_000, 7)]);
  const out: Buffer[] = [];
  const result = await executeRemote(client, { command: 'cat-stdin', stdin: input, stdout: (c) => void out.push(c) });
  t.equal(result.exitCode, 0);
  t.ok(Buffer.concat(out).equals(input), 'what came back is what went in');
});

t.test('a clean environment with the caller described in NEGOTIATOR_* variables', async (t) => {
  process.env.NEGOTIATOR_TEST_SECRET = 'must-not-leak';
  t.teardown(() => void delete process.env.NEGOTIATOR_TEST_SECRET);
  const out: Buffer[] = [];
  await executeRemote(client, { command: 'show-env', stdout: (c) => void out.push(c) });
  const env = Object.fromEntries(Buffer.concat(out).toString().trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  t.notOk('NEGOTIATOR_TEST_SECRET' in env, 'nothing is inherited from the daemon');
  t.match(env, {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    NEGOTIATOR_SIDE: 'guest',
    NEGOTIATOR_PEER_SIDE: 'host',
    NEGOTIATOR_PEER_VERSION: '0.0.0-test',
    NEGOTIATOR_PEER_HOSTNAME: 'host-box',
    NEGOTIATOR_COMMAND: 'show-env',
    NEGOTIATOR_REQUEST_ID: /^\d+$/,
    NEGOTIATOR_TIMEOUT: '10',
  });
});

t.test('unknown and invalid command names get clear errors', async (t) => {
  await t.rejects(executeRemote(client, { command: 'no-such-command' }), {
    name: 'RpcError',
    code: ERROR_CODES.commandNotFound,
    message: /^command `no-such-command` not found on the guest; available: .*echo-args/,
  });
  for (const bad of ['../etc/passwd', 'a/b', '.hidden', 'x~']) {
    await t.rejects(executeRemote(client, { command: bad }), { code: ERROR_CODES.invalidCommandName }, bad);
  }
  await t.rejects(executeRemote(client, { command: 'not-executable' }), { code: ERROR_CODES.commandNotFound });
});

t.test('the deadline terminates the whole process group and says timedOut', async (t) => {
  const pidFile = path.join(agent.tmp, 'timeout.pid');
  const result = await executeRemote(client, { command: 'hang-with-child', args: [pidFile], timeoutMs: 300 });
  t.match(result, { timedOut: true, signal: 'SIGTERM', exitCode: null });
  const child = await readPid(pidFile);
  await waitUntil('the background child to die', () => !isAlive(child));
  t.pass('the grandchild was killed too');
});

t.test('cancel (AbortSignal) kills the command group and rejects the call', async (t) => {
  const pidFile = path.join(agent.tmp, 'cancel.pid');
  const controller = new AbortController();
  const call = executeRemote(client, { command: 'hang-with-child', args: [pidFile], timeoutMs: 0, signal: controller.signal });
  const child = await readPid(pidFile);
  controller.abort();
  await t.rejects(call, CanceledError);
  await waitUntil('the canceled command group to die', () => !isAlive(child));
  t.pass('canceled');
});

t.test('a child left holding stdout after the command exits does not hold the request', async (t) => {
  const pidFile = path.join(agent.tmp, 'leftover.pid');
  const result = await executeRemote(client, { command: 'leave-child', args: [pidFile], timeoutMs: 20_000 });
  t.equal(result.exitCode, 0);
  await waitUntil('the leftover child to be ended', () => !isAlive(Number(readFileSync(pidFile, 'utf8'))));
});

t.test('a closed connection kills the running command', async (t) => {
  const other = await connectClient(agent.socketPath);
  const pidFile = path.join(agent.tmp, 'closed.pid');
  const call = executeRemote(other, { command: 'hang-with-child', args: [pidFile], timeoutMs: 0 });
  const child = await readPid(pidFile);
  const rejected = t.rejects(call, ChannelClosedError);
  await other.close();
  await rejected;
  await waitUntil('the orphaned command group to die', () => !isAlive(child));
});

t.test('256 MiB of stdout streams intact with bounded memory', async (t) => {
  const size = 256 * 1024 * 1024;
  const hash = createHash('sha256');
  const err: Buffer[] = [];
  let received = 0;
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const result = await executeRemote(client, {
    command: 'emit-bytes',
    args: [String(size)],
    timeoutMs: 120_000,
    stdout: (chunk) => {
      hash.update(chunk);
      received += chunk.length;
      if ((received & 0xffffff) < chunk.length) rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    },
    stderr: (c) => void err.push(c),
  });
  t.equal(result.exitCode, 0);
  t.equal(received, size);
  t.equal(result.stdoutBytes, size);
  t.equal(hash.digest('hex'), Buffer.concat(err).toString().trim(), 'checksums match');
  t.ok(rssPeak - rssBefore < 96 * 1024 * 1024, `the caller's RSS grew by ${Math.round((rssPeak - rssBefore) / 1048576)} MiB for 256 MiB streamed`);
});

t.test('a slow consumer holds the producer back (flow control), and nothing is lost', async (t) => {
  const size = 24 * 1024 * 1024;
  let received = 0;
  const hash = createHash('sha256');
  const err: Buffer[] = [];
  const result = await executeRemote(client, {
    command: 'emit-bytes',
    args: [String(size)],
    timeoutMs: 60_000,
    window: 1024 * 1024,
    stdout: async (chunk) => {
      hash.update(chunk);
      received += chunk.length;
      await delay(1);
    },
    stderr: (c) => void err.push(c),
  });
  t.equal(received, size);
  t.equal(hash.digest('hex'), Buffer.concat(err).toString().trim());
  t.equal(result.exitCode, 0);
});

t.test('output still in flight when the command exits is delivered in full (regression: a chunk was dropped)', async (t) => {
  // Just over one window: the command writes it all and exits while the server still waits for credit.
  const size = 256 * 1024 + 1000;
  for (let run = 0; run < 3; run++) {
    let received = 0;
    let first = true;
    const hash = createHash('sha256');
    const err: Buffer[] = [];
    await executeRemote(client, {
      command: 'emit-bytes',
      args: [String(size)],
      window: 256 * 1024,
      stdout: async (chunk) => {
        hash.update(chunk);
        received += chunk.length;
        if (first) {
          first = false;
          await delay(300);
        }
      },
      stderr: (c) => void err.push(c),
    });
    t.equal(received, size, `run ${run}: every byte arrived`);
    t.equal(hash.digest('hex'), Buffer.concat(err).toString().trim(), `run ${run}: intact`);
  }
});

t.test('an output cap truncates visibly, never silently', async (t) => {
  const capped = await startSocketAgent({ maxOutputBytes: 100_000 });
  const peer = await connectClient(capped.socketPath);
  t.teardown(async () => {
    await peer.close();
    await capped.close();
  });
  let received = 0;
  const result = await executeRemote(peer, { command: 'emit-bytes', args: ['1000000'], stdout: (c) => void (received += c.length) });
  t.equal(received, 100_000);
  t.match(result, { exitCode: 0, outputTruncated: true, stdoutBytes: 100_000 });
});

t.test('1,000 concurrent executes over one connection, every answer matched to its request', async (t) => {
  const calls = Array.from({ length: 1000 }, async (_, i) => {
    const out: Buffer[] = [];
    const result = await executeRemote(client, { command: 'echo-args', args: [`request-${i}`], timeoutMs: 120_000, stdout: (c) => void out.push(c) });
    return { i, text: Buffer.concat(out).toString(), exitCode: result.exitCode };
  });
  const results = await Promise.all(calls);
  const wrong = results.filter((r) => r.text !== `request-${r.i}\n` || r.exitCode !== 0);
  t.equal(wrong.length, 0, `mismatched: ${JSON.stringify(wrong.slice(0, 3))}`);
  t.equal(results.length, 1000);
});
