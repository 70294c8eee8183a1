import { accessSync, constants, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, symlink, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import t, { type Test } from 'tap';
import { parseOsRelease, readOsInfo } from '../../../common/wire/agent-info.js';
import { builtinCommandsDirectory } from '../../../common/commands/builtin.js';
import { createCommandRegistry } from '../../../common/commands/registry.js';

const EXPECTED = ['codename', 'disk-usage', 'distributor-id', 'hostname', 'ip-addresses', 'release', 'uptime'];
// The PATH commands get from the daemons (common/commands/runner.ts).
const COMMAND_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const directory = builtinCommandsDirectory();

// Run a built-in command the way the daemons do: no inherited environment, a fixed PATH, a stray argument.
async function run(name: string, env: Record<string, string> = {}, file = path.join(directory, name)) {
  return execa(file, ['--ignored-argument'], {
    env: { PATH: COMMAND_PATH, LANG: 'C.UTF-8', ...env },
    extendEnv: false,
    reject: false,
    timeout: 5000,
  });
}

function systemOsRelease(): Record<string, string> | undefined {
  for (const candidate of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      return parseOsRelease(readFileSync(candidate, 'utf8'));
    } catch {
      // try the next one
    }
  }
  return undefined;
}

t.test('the folder is found from the compiled module and holds the commands', async (t) => {
  t.ok(path.isAbsolute(directory));
  t.equal(directory, path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../../../builtin-commands'));
  t.equal(builtinCommandsDirectory(), directory, 'stable');
  t.same(readdirSync(directory).sort(), EXPECTED);
});

t.test('every command is an executable POSIX sh script with a description line', async (t) => {
  for (const name of EXPECTED) {
    const file = path.join(directory, name);
    t.ok((statSync(file).mode & 0o111) === 0o111, `${name} is executable by everyone`);
    t.doesNotThrow(() => accessSync(file, constants.X_OK));
    const [shebang, description] = readFileSync(file, 'utf8').split('\n');
    t.equal(shebang, '#!/bin/sh', `${name} shebang`);
    t.match(description, /^# \S.{10,}$/, `${name} second line is a description comment`);
    const syntax = await execa('sh', ['-n', file], { reject: false });
    t.equal(syntax.exitCode, 0, `${name} parses with sh -n: ${syntax.stderr}`);
  }
});

t.test('the registry lists them with their descriptions', async (t) => {
  const registry = createCommandRegistry({ directories: [directory], watch: false });
  t.teardown(() => registry.close());
  const listed = await registry.list();
  t.same(listed.map((command) => command.name), EXPECTED);
  for (const { name, description } of listed) {
    const second = readFileSync(path.join(directory, name), 'utf8').split('\n')[1] ?? '';
    t.equal(description, second.replace(/^# /, ''), `${name} description`);
  }
});

t.test('hostname and uptime', async (t) => {
  const hostname = await run('hostname');
  t.equal(hostname.exitCode, 0);
  t.equal(hostname.stdout, os.hostname());
  const uptime = await run('uptime');
  t.equal(uptime.exitCode, 0);
  t.match(uptime.stdout, /^\d+$/, 'whole seconds');
  t.ok(Math.abs(Number(uptime.stdout) - os.uptime()) <= 2, `${uptime.stdout} is about os.uptime() ${os.uptime()}`);
});

t.test('disk-usage prints df -P output', async (t) => {
  const result = await run('disk-usage');
  t.match(result.stdout, /^Filesystem\s+1024-blocks\s+Used\s+Available\s+Capacity\s+Mounted on\n/);
  t.match(result.stdout, /\s\/\n|\s\/$/m, 'the root file system is listed');
});

t.test('ip-addresses prints this machine’s non-loopback addresses', async (t) => {
  const result = await run('ip-addresses');
  t.equal(result.exitCode, 0, result.stderr);
  const printed = result.stdout.split('\n').filter((line) => line !== '');
  for (const address of printed) {
    t.ok(isIP(address), `${address} is an IP address`);
    t.notMatch(address, /^(127\.|::1$)/, `${address} is not loopback`);
  }
  const expected = Object.values(os.networkInterfaces())
    .flat()
    .filter((entry) => entry !== undefined && !entry.internal)
    .map((entry) => entry?.address.replace(/%.*$/, ''));
  t.same([...printed].sort(), [...new Set(expected)].sort(), 'the same addresses Node sees');
});

const hostnameProgram = COMMAND_PATH.split(':')
  .map((dir) => path.join(dir, 'hostname'))
  .find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

t.test('ip-addresses falls back to hostname -I when ip is missing', { skip: hostnameProgram === undefined && 'no hostname program here' }, async (t) => {
  if (hostnameProgram === undefined) throw new Error('unreachable: the test is skipped without a hostname program');
  const bin = t.testdir();
  // A PATH with only what the fallback needs: no `ip`.
  await symlink(hostnameProgram, path.join(bin, 'hostname'));
  const result = await run('ip-addresses', { PATH: bin });
  t.equal(result.exitCode, 0, result.stderr);
  const direct = await execa(hostnameProgram, ['-I']);
  t.same(result.stdout.split('\n'), direct.stdout.trim().split(/\s+/));
});

t.test('distributor-id, release and codename agree with os-release', async (t) => {
  const fields = systemOsRelease();
  const info = await readOsInfo();
  for (const [name, value] of [['distributor-id', info.distributor], ['release', info.release], ['codename', info.codename]] as const) {
    const result = await run(name);
    if (value === undefined) {
      t.comment(`${name}: not in os-release here (${fields ? 'field absent' : 'no file'}); got exit ${result.exitCode}`);
      continue;
    }
    t.equal(result.exitCode, 0, `${name}: ${result.stderr}`);
    t.equal(result.stdout, value, name);
  }
  const inherited = await run('distributor-id', { ID: 'from-the-environment' });
  t.not(inherited.stdout, 'from-the-environment', 'a value in the environment is never printed');
});

// The os-release logic of a script, run on a copy that reads a fixture instead of the system files.
async function runWithOsRelease(
  t: Test,
  name: string,
  osRelease: string | undefined,
  lsbRelease: string | undefined,
) {
  const root = t.testdir({ bin: {} });
  const original = readFileSync(path.join(directory, name), 'utf8');
  t.match(original, '/etc/os-release /usr/lib/os-release', 'the script reads the os-release files');
  const fixture = path.join(root, 'os-release');
  if (osRelease !== undefined) await writeFile(fixture, osRelease);
  const copy = path.join(root, name);
  await writeFile(copy, original.replace('/etc/os-release /usr/lib/os-release', `${fixture} ${path.join(root, 'none')}`));
  await chmod(copy, 0o755);
  if (lsbRelease !== undefined) {
    const fake = path.join(root, 'bin', 'lsb_release');
    await writeFile(fake, `#!/bin/sh\necho '${lsbRelease}'\n`);
    await chmod(fake, 0o755);
  }
  return run(name, { PATH: path.join(root, 'bin') }, copy);
}

t.test('os-release values are read with shell quoting', async (t) => {
  const result = await runWithOsRelease(t, 'release', 'ID=x\nVERSION_ID="12.3 \\"lts\\""\n', 'ignored');
  t.equal(result.exitCode, 0, result.stderr);
  t.equal(result.stdout, '12.3 "lts"');
});

t.test('lsb_release is the fallback when os-release lacks the field', async (t) => {
  const result = await runWithOsRelease(t, 'codename', 'ID=debian\nVERSION_ID=13\n', 'trixie');
  t.equal(result.exitCode, 0, result.stderr);
  t.equal(result.stdout, 'trixie');
  const noFile = await runWithOsRelease(t, 'distributor-id', undefined, 'Debian');
  t.equal(noFile.stdout, 'Debian', 'also when there is no os-release file');
});

t.test('neither source: a clear message and exit 1', async (t) => {
  const result = await runWithOsRelease(t, 'codename', 'ID=alpine\n', undefined);
  t.equal(result.exitCode, 1);
  t.equal(result.stdout, '');
  t.equal(
    result.stderr,
    'codename: found no VERSION_CODENAME in /etc/os-release or /usr/lib/os-release, and lsb_release is not installed or did not say; install lsb-release or add VERSION_CODENAME to /etc/os-release',
  );
  const notApplicable = await runWithOsRelease(t, 'release', 'ID=debian\n', 'n/a');
  t.equal(notApplicable.exitCode, 1, 'lsb_release saying n/a counts as nothing');
});
