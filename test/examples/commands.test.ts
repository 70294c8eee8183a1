// The example commands (examples/commands/{host,guest}) as the daemons run them: executable POSIX sh
// with a description line, a clean environment holding only PATH, LANG, HOME and NEGOTIATOR_*, and, where
// busybox is installed, nothing but busybox's shell and applets.
import t from 'tap';
import { execa } from 'execa';
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseCommandDescription } from '../../common/commands/file.js';
import { EXAMPLE_COMMANDS } from '../../examples/demo/demo-daemons.js';

const COMMANDS = {
  host: readdirSync(EXAMPLE_COMMANDS.host).sort(),
  guest: readdirSync(EXAMPLE_COMMANDS.guest).sort(),
};
const BUSYBOX = ['/usr/bin/busybox', '/bin/busybox'].find((file) => {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
});
const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-example-commands-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

// The environment the daemons give a guest command called by the host (see common/commands/env.ts).
const CALLED_BY_HOST: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
  HOME: work,
  NEGOTIATOR_SIDE: 'guest',
  NEGOTIATOR_PEER_SIDE: 'host',
  NEGOTIATOR_COMMAND: 'who-is-calling',
  NEGOTIATOR_REQUEST_ID: '7',
  NEGOTIATOR_PEER_NAME: 'negotiator',
  NEGOTIATOR_PEER_VERSION: '0.1.0',
  NEGOTIATOR_PEER_HOSTNAME: 'kvm1',
  NEGOTIATOR_PEER_OS: 'Linux 6.1.0-27-amd64',
  NEGOTIATOR_CHANNEL: 'virtio-serial port negotiator-host-to-guest.0',
  NEGOTIATOR_TIMEOUT: '10',
};
const CALLED_BY_GUEST: Record<string, string> = {
  ...CALLED_BY_HOST,
  NEGOTIATOR_SIDE: 'host',
  NEGOTIATOR_PEER_SIDE: 'guest',
  NEGOTIATOR_PEER_HOSTNAME: 'web1',
  NEGOTIATOR_GUEST: 'vm1',
  NEGOTIATOR_GUEST_UUID: '4dea22b3-1d52-d8f3-2516-782e98ab3fa0',
};

// Run an example command with exactly `env` (nothing inherited), as the daemons do. Through `env -i`:
// tap's process tracker adds NODE_OPTIONS and its own variables to every process this test spawns.
function run(side: 'host' | 'guest', name: string, args: string[], env: Record<string, string>, shell?: string) {
  const file = path.join(EXAMPLE_COMMANDS[side], name);
  const argv = shell ? [shell, 'sh', file, ...args] : [file, ...args];
  const assignments = Object.entries(env).map(([key, value]) => `${key}=${value}`);
  return execa('/usr/bin/env', ['-i', ...assignments, ...argv], { reject: false, stdin: 'ignore', cwd: '/', timeout: 10_000 });
}

t.test('each example is an executable sh script whose first comment line is its description', async (t) => {
  t.same(COMMANDS, { host: ['reboot-notify', 'who-is-calling'], guest: ['kernel', 'load', 'memory', 'who-is-calling'] });
  for (const side of ['host', 'guest'] as const) {
    for (const name of COMMANDS[side]) {
      const file = path.join(EXAMPLE_COMMANDS[side], name);
      const text = readFileSync(file, 'utf8');
      t.equal(statSync(file).mode & 0o755, 0o755, `${side}/${name} is mode 755`);
      t.ok(text.startsWith('#!/bin/sh\n# '), `${side}/${name}: #!/bin/sh, then the description`);
      t.match(parseCommandDescription(Buffer.from(text), true), /^[A-Z].{10,100}$/, `${side}/${name} has a one-line description`);
      const syntax = await execa('sh', ['-n', file], { reject: false });
      t.equal(syntax.exitCode, 0, `${side}/${name} parses with sh -n: ${syntax.stderr}`);
    }
  }
  t.equal(readFileSync(path.join(EXAMPLE_COMMANDS.host, 'who-is-calling'), 'utf8'), readFileSync(path.join(EXAMPLE_COMMANDS.guest, 'who-is-calling'), 'utf8'), 'who-is-calling is the same on both sides');
});

t.test('guest facts: memory, load, kernel print their values; arguments are refused with 2', async (t) => {
  const memory = await run('guest', 'memory', [], CALLED_BY_HOST);
  t.equal(memory.exitCode, 0, memory.stderr);
  t.match(memory.stdout, /^total [1-9]\d* MiB\navailable \d+ MiB\nswap \d+ MiB, \d+ MiB free$/);
  const load = await run('guest', 'load', [], CALLED_BY_HOST);
  t.equal(load.exitCode, 0, load.stderr);
  t.match(load.stdout, /^load \d+\.\d\d \d+\.\d\d \d+\.\d\d \(1, 5, 15 min\)\ncpus [1-9]\d*\ntasks \d+\/\d+ \(running\/total\)$/);
  const kernel = await run('guest', 'kernel', [], CALLED_BY_HOST);
  t.equal(kernel.stdout, `${os.type()} ${os.release()} ${os.machine()}`);
  for (const name of ['memory', 'load', 'kernel', 'who-is-calling']) {
    const refused = await run('guest', name, ['extra'], CALLED_BY_HOST);
    t.same([refused.exitCode, refused.stdout, refused.stderr], [2, '', `${name}: takes no arguments, got 1`], `${name} refuses arguments`);
  }
});

t.test('who-is-calling prints exactly the NEGOTIATOR_* variables it got, sorted, and names the others', async (t) => {
  const guest = await run('guest', 'who-is-calling', [], CALLED_BY_HOST);
  const expected = Object.entries(CALLED_BY_HOST).filter(([k]) => k.startsWith('NEGOTIATOR_')).map(([k, v]) => `${k}=${v}`).sort();
  t.equal(guest.stdout, [...expected, 'other variables: HOME LANG PATH'].join('\n'));
  const host = await run('host', 'who-is-calling', [], { ...CALLED_BY_GUEST, EXTRA: 'x' });
  t.match(host.stdout, /^NEGOTIATOR_GUEST=vm1$/m);
  t.match(host.stdout, /^NEGOTIATOR_GUEST_UUID=4dea22b3-1d52-d8f3-2516-782e98ab3fa0$/m);
  t.match(host.stdout, /^other variables: EXTRA HOME LANG PATH$/m, 'a variable that should not be there would show');
});

t.test('reboot-notify: the guest named by NEGOTIATOR_GUEST, its claim and its sanitized reason; stderr without syslog', async (t) => {
  // No logger on PATH: the line goes to stderr, whatever this machine has.
  const bin = path.join(work, 'bin-without-logger');
  linkSystemPrograms(bin, ['tr', 'cut', 'uname']);
  const env = { ...CALLED_BY_GUEST, PATH: bin };
  const reason = `kernel\nupdate\u0007 ${'x'.repeat(300)}`;
  const result = await run('host', 'reboot-notify', [reason], env);
  t.equal(result.exitCode, 0, result.stderr);
  t.equal(result.stdout, `host ${os.hostname()} acknowledges: guest vm1 may reboot; logged to stderr (no syslog socket here)`);
  t.equal(result.stderr, `negotiator: guest vm1 (calls itself web1) is about to reboot: ${`kernel update  ${'x'.repeat(300)}`.slice(0, 200)}`);
  const bare = await run('host', 'reboot-notify', [], { PATH: bin });
  t.equal(bare.stderr, 'negotiator: guest unknown guest is about to reboot', 'without the daemon\'s variables it still runs');
});

const hasSyslogSocket = statSync('/dev/log', { throwIfNoEntry: false })?.isSocket() === true;
t.test('reboot-notify logs with logger -t negotiator when a syslog socket exists', { skip: hasSyslogSocket ? false : '/dev/log is not a socket on this machine' }, async (t) => {
  const bin = path.join(work, 'bin-with-fake-logger');
  linkSystemPrograms(bin, ['tr', 'cut', 'uname']);
  const record = path.join(work, 'logger-args');
  writeFileSync(path.join(bin, 'logger'), `#!/bin/sh\nprintf '%s\\n' "$@" > '${record}'\n`);
  chmodSync(path.join(bin, 'logger'), 0o755);
  const result = await run('host', 'reboot-notify', ['now'], { ...CALLED_BY_GUEST, PATH: bin });
  t.equal(result.stderr, '');
  t.match(result.stdout, /logged to syslog \(journalctl -t negotiator\)$/);
  t.equal(readFileSync(record, 'utf8'), '-t\nnegotiator\nguest vm1 (calls itself web1) is about to reboot: now\n');
});

t.test('busybox: every example runs with busybox sh and only busybox applets on PATH', { skip: BUSYBOX ? false : 'busybox is not installed (apt-get install busybox-static)' }, async (t) => {
  if (!BUSYBOX) return;
  const bin = path.join(work, 'busybox-bin');
  const applets = (await execa(BUSYBOX, ['--list'])).stdout.split('\n').filter((a) => a !== '' && a !== 'logger');
  linkAll(bin, applets.map((applet) => [applet, BUSYBOX]));
  for (const side of ['host', 'guest'] as const) {
    for (const name of COMMANDS[side]) {
      const env = { ...(side === 'host' ? CALLED_BY_GUEST : CALLED_BY_HOST), PATH: bin };
      const result = await run(side, name, name === 'reboot-notify' ? ['kernel', 'update'] : [], env, BUSYBOX);
      t.equal(result.exitCode, 0, `${side}/${name} under busybox: ${result.stderr}`);
      t.not(result.stdout, '', `${side}/${name} printed something`);
    }
  }
  const who = await run('guest', 'who-is-calling', [], { ...CALLED_BY_HOST, PATH: bin }, BUSYBOX);
  t.match(who.stdout, /^other variables: HOME LANG PATH$/m, 'the variables busybox sh sets itself are not reported');
});

// Make `dir` hold only links named `programs` to the system's programs of that name (to take `logger` away).
function linkSystemPrograms(dir: string, programs: string[]): void {
  linkAll(
    dir,
    programs.map((program) => {
      const found = ['/usr/bin', '/bin'].map((d) => path.join(d, program)).find((f) => statSync(f, { throwIfNoEntry: false }));
      if (!found) throw new Error(`no ${program} in /usr/bin or /bin`);
      return [program, found];
    }),
  );
}

// Make `dir` hold exactly the given [name, target] symlinks.
function linkAll(dir: string, links: Array<[string, string]>): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [name, target] of links) symlinkSync(target, path.join(dir, name));
}
