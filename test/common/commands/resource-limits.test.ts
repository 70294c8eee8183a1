import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { executeRemote } from '../../../common/execute/client.js';
import { parseResourceLimit, resolveCommandIdentity, resolveLimitsWrapper, resolveRunAs } from '../../../common/commands/resource-limits.js';
import { connectClient, startSocketAgent } from '../../helpers/socket-agent.js';

t.test('--rlimit values are parsed and checked', async (t) => {
  t.same(parseResourceLimit('nofile=1024'), { name: 'nofile', value: 1024 });
  t.same(parseResourceLimit('as=2G'), { name: 'as', value: 2 * 1024 ** 3 });
  t.throws(() => parseResourceLimit('files=3'), { name: 'ConfigError', message: /NAME one of nofile, nproc, as, cpu, fsize, core/ });
  t.throws(() => parseResourceLimit('nofile=-1'), /got `nofile=-1`/);
  t.same(await resolveLimitsWrapper([]), []);
  const wrapper = await resolveLimitsWrapper([{ name: 'nofile', value: 64 }]);
  t.match(wrapper, [/\/prlimit$/, '--nofile=64:64', '--']);
});

t.test('--run-as looks the user up, and refuses an unknown one', async (t) => {
  const dir = t.testdir({});
  const passwd = path.join(dir, 'passwd');
  writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/sh\nagent:x:990:991::/var/lib/agent:/usr/sbin/nologin\n');
  t.same(await resolveRunAs('agent', passwd), { uid: 990, gid: 991, home: '/var/lib/agent' });
  t.same(await resolveRunAs('990', passwd), { uid: 990, gid: 991, home: '/var/lib/agent' });
  await t.rejects(resolveRunAs('ghost', passwd), { name: 'ConfigError', message: /`--run-as ghost`: no such user/ });
});

t.test('commands run under the limits and as the user given', { skip: process.getuid?.() !== 0 ? 'needs root to switch users' : false }, async (t) => {
  const identity = await resolveCommandIdentity(['nofile=77'], 'nobody');
  const agent = await startSocketAgent(identity);
  const client = await connectClient(agent.socketPath);
  t.teardown(async () => {
    await client.close();
    await agent.close();
  });
  const out: Buffer[] = [];
  const result = await executeRemote(client, { command: 'show-identity', stdout: (c) => void out.push(c) });
  t.equal(result.exitCode, 0);
  t.equal(Buffer.concat(out).toString(), `nofile=77 uid=${identity.uid} home=${identity.home}\n`);
});
