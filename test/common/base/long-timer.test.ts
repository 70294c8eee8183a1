// Issue 14, item 6: deadlines past node's 2^31-1 ms timer limit are kept, never fired early.
import t from 'tap';
import { setLongTimeout, MAX_TIMER_MS } from '../../../common/base/long-timer.js';
import { startSocketAgent } from '../../helpers/socket-agent.js';
import { GUEST_CLI, runCli } from '../../helpers/spawn-cli.js';

t.test('a delay over 2^31-1 ms does not fire early and warns nothing', async (t) => {
  const warnings: string[] = [];
  const onWarning = (warning: Error): void => void warnings.push(warning.name);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  let fired = false;
  const timer = setLongTimeout(() => (fired = true), MAX_TIMER_MS + 5000);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.notOk(fired, 'still waiting');
  timer.clear();
  t.same(warnings, [], 'no TimeoutOverflowWarning');
  let shortFired = false;
  setLongTimeout(() => (shortFired = true), 10);
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.ok(shortFired, 'a short delay fires as usual');
});

t.test('--timeout 2500000 runs the command (caller and server deadlines both long); absurd values are usage errors', async (t) => {
  const agent = await startSocketAgent({ maxTimeoutMs: 0 });
  t.teardown(() => agent.close());
  const run = await runCli(GUEST_CLI, ['-c', `unix:${agent.socketPath}`, '--no-stdin', '--timeout', '2500000', '--execute', 'echo-args long'], { timeoutMs: 20_000 });
  t.equal(run.exitCode, 0, run.stderr);
  t.equal(run.stdout, 'long\n');
  t.notMatch(run.stderr, /TimeoutOverflowWarning/);
  const huge = await runCli(GUEST_CLI, ['-c', `unix:${agent.socketPath}`, '--timeout', '1e300', '--execute', 'echo-args x'], { timeoutMs: 20_000 });
  t.equal(huge.exitCode, 2, 'a value no timer can hold is a usage error');
  t.match(huge.stderr, /at most \d+ seconds/);
});
