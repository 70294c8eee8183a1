import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { executeRemote } from '../../../common/execute/client.js';
import { parseResourceLimit, resolveCommandIdentity, resolveLimitsWrapper, resolveRunAs } from '../../../common/commands/resource-limits.js';
import { createIdentityLookup } from '../../../common/base/identity.js';
import { resolveGroup } from '../../../common/cli/options.js';
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

t.test('--run-as looks the user up in /etc/passwd when getent cannot answer, and refuses an unknown one', async (t) => {
  const dir = t.testdir({});
  const passwd = path.join(dir, 'passwd');
  writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/sh\nagent:x:990:991::/var/lib/agent:/usr/sbin/nologin\n');
  const files = createIdentityLookup({ getentPath: path.join(dir, 'no-getent'), passwdFile: passwd });
  t.same(resolveRunAs('agent', files), { uid: 990, gid: 991, home: '/var/lib/agent' });
  t.same(resolveRunAs('990', files), { uid: 990, gid: 991, home: '/var/lib/agent' });
  t.throws(() => resolveRunAs('ghost', files), { name: 'ConfigError', message: /`--run-as ghost`: no such user/ });
});

// Defect 5: a directory (LDAP/sssd) user is not in /etc/passwd; only getent knows it.
t.test('--run-as finds a user that only getent knows (LDAP, sssd), as --control-group does', async (t) => {
  const dir = t.testdir({});
  const passwd = path.join(dir, 'passwd');
  writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/sh\n');
  const getent = path.join(dir, 'getent');
  writeFileSync(getent, [
    '#!/bin/sh',
    'case "$1 $2" in',
    '  "passwd ldapuser"|"passwd 5001") echo "ldapuser:*:5001:5002:LDAP user:/home/ldapuser:/bin/sh" ;;',
    '  "group ldapgroup") echo "ldapgroup:*:5002:" ;;',
    '  *) exit 2 ;;',
    'esac',
    '',
  ].join('\n'), { mode: 0o755 });
  const identities = createIdentityLookup({ getentPath: getent, passwdFile: passwd, groupFile: path.join(dir, 'group') });
  t.same(resolveRunAs('ldapuser', identities), { uid: 5001, gid: 5002, home: '/home/ldapuser' });
  t.same(resolveRunAs('5001', identities), { uid: 5001, gid: 5002, home: '/home/ldapuser' });
  t.equal(resolveGroup('ldapgroup', identities), 5002, 'the same lookup serves --control-group');
  t.same(identities.user('root'), { name: 'root', uid: 0, gid: 0, home: '/root' }, 'getent says no: the file still answers');
  t.throws(() => resolveRunAs('ghost', identities), { name: 'ConfigError' });
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
