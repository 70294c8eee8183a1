// The daemons' shared serving options: parsed by commander as both CLIs add them, resolved into the
// command service's limits, and --prespawn reaching the service (launchers kept ready, or none).
import t from 'tap';
import { Command } from 'commander';
import { addServingOptions, servingOptionsOf } from '../../../common/cli/options.js';
import { executeRemote } from '../../../common/execute/client.js';
import { resolveServingConfig } from '../../../common/daemon/serving-config.js';
import { launchersOf, waitUntil } from '../../helpers/processes.js';
import { connectClient, startSocketAgent } from '../../helpers/socket-agent.js';

function parse(args: string[]): ReturnType<typeof servingOptionsOf> {
  const program = addServingOptions(new Command('test').exitOverride().configureOutput({ writeErr: () => {} }), 'channel', 'the peer');
  program.parse(args, { from: 'user' });
  return servingOptionsOf(program.opts());
}

t.test('defaults and explicit values reach the command service limits', async (t) => {
  const defaults = await resolveServingConfig({ ...parse([]), builtinCommands: false });
  t.match(defaults.limits, { maxConcurrent: 8, maxQueued: 1024, maxTimeoutMs: 3_600_000, killGraceMs: 5000, prespawn: 2 });
  const given = await resolveServingConfig(parse(['--prespawn', '0', '--max-concurrent', '3', '--kill-grace', '1.5']));
  t.match(given.limits, { prespawn: 0, maxConcurrent: 3, killGraceMs: 1500 });
  t.throws(() => parse(['--prespawn', '-1']), /non-negative integer/);
  t.throws(() => parse(['--prespawn', 'two']), /non-negative integer/);
});

// One process-wide pool per uid/gid/cwd: --prespawn 0 must keep this process free of launchers, so it
// runs before anything here starts a pool.
t.test('--prespawn 0 forks for every command; the default keeps launchers ready', async (t) => {
  const direct = await startSocketAgent({ prespawn: 0 });
  const directClient = await connectClient(direct.socketPath);
  const out: Buffer[] = [];
  await executeRemote(directClient, { command: 'echo-args', args: ['direct'], stdout: (c) => void out.push(c) });
  t.equal(Buffer.concat(out).toString(), 'direct\n');
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.same(launchersOf(process.pid), [], 'no launcher was started');
  await directClient.close();
  await direct.close();

  const pooled = await startSocketAgent();
  t.teardown(() => pooled.close());
  const client = await connectClient(pooled.socketPath);
  t.teardown(() => client.close());
  await waitUntil('two launchers ready (the service warms the pool when a connection starts)', () => launchersOf(process.pid).length === 2);
  const before = launchersOf(process.pid);
  const pooledOut: Buffer[] = [];
  await executeRemote(client, { command: 'echo-args', args: ['pooled'], stdout: (c) => void pooledOut.push(c) });
  t.equal(Buffer.concat(pooledOut).toString(), 'pooled\n');
  t.equal(launchersOf(process.pid).filter((pid) => before.includes(pid)).length, 1, 'one of the ready launchers ran the command');
  await waitUntil('the used launcher replaced', () => launchersOf(process.pid).length === 2);
});
