// The commands npm installs, bin/negotiator-host and bin/negotiator-guest: POSIX sh launchers (dash,
// busybox) that find the package through npm's relative symlink, other links or a relative path, run
// dist/SIDE/cli.js with the `node` on PATH, pass every argument through intact and node's exit code back,
// and keep NODE_EXTRA_CA_CERTS (only that) from node. package.json installs them and npm packs them.
import t from 'tap';
import { execa } from 'execa';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../examples/demo/demo-daemons.js';
import { LAUNCHERS } from '../helpers/spawn-cli.js';

const SIDES = ['host', 'guest'] as const;
type Side = (typeof SIDES)[number];
const ARGS = ['--execute', 'a b', '', "it's", '"double"', '$HOME', '*', 'back\\slash', 'two\nlines', ' ', '--', '-e'];
// dash is /bin/sh on Debian; busybox sh is the small guests' shell.
const SHELLS = [['dash'], ['busybox', 'sh']] as const;

const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-launchers-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

// Stands in for node: prints its arguments, then NODE_EXTRA_CA_CERTS and KEEP as it sees them, NUL-separated,
// and exits with FAKE_NODE_EXIT.
const fakeNodeDir = path.join(work, 'fake-node');
mkdirSync(fakeNodeDir);
writeFileSync(
  path.join(fakeNodeDir, 'node'),
  `#!/bin/sh
printf '%s\\0' "$@"
printf 'NODE_EXTRA_CA_CERTS=%s\\0KEEP=%s\\0MALLOC_MMAP_THRESHOLD_=%s\\0' "\${NODE_EXTRA_CA_CERTS-(unset)}" "\${KEEP-(unset)}" "\${MALLOC_MMAP_THRESHOLD_-(unset)}"
exit "\${FAKE_NODE_EXIT:-0}"
`,
);
chmodSync(path.join(fakeNodeDir, 'node'), 0o755);

// What `npm install -g` makes under a prefix: lib/node_modules/kvm-negotiator (here a link to this
// checkout, as `npm install -g .` makes it) and bin/negotiator-SIDE -> ../lib/node_modules/kvm-negotiator/bin/negotiator-SIDE.
const prefix = path.join(work, 'prefix');
mkdirSync(path.join(prefix, 'lib', 'node_modules'), { recursive: true });
symlinkSync(PACKAGE_ROOT, path.join(prefix, 'lib', 'node_modules', 'kvm-negotiator'));
mkdirSync(path.join(prefix, 'bin'));
// A link to npm's link, from another folder.
mkdirSync(path.join(work, 'elsewhere'));
for (const side of SIDES) {
  symlinkSync(`../lib/node_modules/kvm-negotiator/bin/negotiator-${side}`, path.join(prefix, 'bin', `negotiator-${side}`));
  symlinkSync(`../prefix/bin/negotiator-${side}`, path.join(work, 'elsewhere', `n-${side}`));
}

/** One way of starting a launcher: the file to run (as given, maybe relative) and the directory to run it in. */
interface Invocation {
  how: string;
  file: (side: Side) => string;
  cwd: string;
}

const INVOCATIONS: Invocation[] = [
  { how: 'through npm\'s relative symlink, by absolute path', file: (side) => path.join(prefix, 'bin', `negotiator-${side}`), cwd: work },
  { how: 'through npm\'s relative symlink, by a relative path', file: (side) => `prefix/bin/negotiator-${side}`, cwd: work },
  { how: 'through a link to npm\'s link', file: (side) => `elsewhere/n-${side}`, cwd: work },
  { how: 'by a relative path to the file itself', file: (side) => `bin/negotiator-${side}`, cwd: PACKAGE_ROOT },
  { how: 'by its bare name, in its folder', file: (side) => `negotiator-${side}`, cwd: path.join(PACKAGE_ROOT, 'bin') },
];

interface FakeRun {
  exitCode: number | undefined;
  argv: string[];
  env: Record<string, string>;
}

// Run a launcher with the fake node first on PATH, as `shell FILE ARGS` or (no shell) as a program.
async function runWithFakeNode(shell: readonly string[], file: string, cwd: string, args: readonly string[], exitCode = 0): Promise<FakeRun> {
  // Without a shell the file is the program: the kernel runs /bin/sh with it as $0, relative or not.
  const [command, ...shellArgs] = shell.length > 0 ? [...shell, file] : [file];
  const result = await execa(command!, [...shellArgs, ...args], {
    cwd,
    reject: false,
    stdin: 'ignore',
    encoding: 'utf8',
    extendEnv: false,
    env: { PATH: `${fakeNodeDir}:${process.env.PATH ?? '/usr/bin:/bin'}`, NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt', KEEP: 'kept', FAKE_NODE_EXIT: String(exitCode) },
  });
  if (result.stderr !== '') throw new Error(`${file}: ${result.stderr}`);
  const fields = String(result.stdout).split('\0').slice(0, -1);
  const env = Object.fromEntries(fields.slice(-3).map((field) => [field.slice(0, field.indexOf('=')), field.slice(field.indexOf('=') + 1)]));
  return { exitCode: result.exitCode, argv: fields.slice(0, -3), env };
}

const cliOf = (side: Side): string => realpathSync(path.join(PACKAGE_ROOT, 'dist', side, 'cli.js'));

// The file a path names, links resolved; a missing one as it is, for the failure message.
function realFile(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

for (const shell of [[], ...SHELLS] as const) {
  const installed = shell.length === 0 || (await execa('sh', ['-c', `command -v ${shell[0]}`], { reject: false })).exitCode === 0;
  t.test(`with ${shell.length > 0 ? shell.join(' ') : 'its #!/bin/sh'}`, { skip: installed ? false : `${shell[0]} is not installed here` }, async (t) => {
    for (const side of SIDES) {
      for (const invocation of INVOCATIONS) {
        // Without a shell the bare name would be looked up on PATH, which is another case (below).
        if (shell.length === 0 && !invocation.file(side).includes('/')) continue;
        const run = await runWithFakeNode(shell, invocation.file(side), invocation.cwd, ARGS);
        t.equal(run.exitCode, 0, `${side}, ${invocation.how}: exit code`);
        t.equal(realFile(path.resolve(invocation.cwd, run.argv[0] ?? '')), cliOf(side), `${side}, ${invocation.how}: runs dist/${side}/cli.js`);
        t.same(run.argv.slice(1), ARGS, `${side}, ${invocation.how}: the arguments, intact`);
        t.same(run.env, { NODE_EXTRA_CA_CERTS: '(unset)', KEEP: 'kept', MALLOC_MMAP_THRESHOLD_: '(unset)' }, `${side}, ${invocation.how}: node sees no NODE_EXTRA_CA_CERTS, the rest of the environment as it was`);
      }
    }
  });
}

t.test('a daemon gets V8\'s young generation capped (--max-semi-space-size=1); other runs keep the defaults', async (t) => {
  for (const side of SIDES) {
    const daemon = await runWithFakeNode([], `bin/negotiator-${side}`, PACKAGE_ROOT, ['-v', '--daemon', '--service', 'a b']);
    t.equal(daemon.argv[0], '--max-semi-space-size=1', `${side}: the flag, before the script`);
    t.equal(realFile(path.resolve(PACKAGE_ROOT, daemon.argv[1] ?? '')), cliOf(side));
    t.same(daemon.argv.slice(2), ['-v', '--daemon', '--service', 'a b'], `${side}: the arguments, intact`);
    t.equal(daemon.env.MALLOC_MMAP_THRESHOLD_, '65536', `${side}: glibc's mmap threshold fixed, so freed buffers go back to the system`);
    const client = await runWithFakeNode([], `bin/negotiator-${side}`, PACKAGE_ROOT, ['--list-commands', 'vm1']);
    t.equal(realFile(path.resolve(PACKAGE_ROOT, client.argv[0] ?? '')), cliOf(side), `${side}: a CLI run starts the script with node's defaults`);
    t.equal(client.env.MALLOC_MMAP_THRESHOLD_, '(unset)', `${side}: and glibc's`);
  }
});

t.test('found on PATH by name, as a shell runs the installed command; node\'s exit code comes back', async (t) => {
  for (const side of SIDES) {
    const result = await execa(`negotiator-${side}`, ['x y'], {
      cwd: work,
      reject: false,
      stdin: 'ignore',
      extendEnv: false,
      env: { PATH: `${path.join(prefix, 'bin')}:${fakeNodeDir}:/usr/bin:/bin`, FAKE_NODE_EXIT: '7' },
    });
    t.equal(result.exitCode, 7, side);
    const [cli = '', ...args] = String(result.stdout).split('\0').slice(0, 2);
    // Through npm's link to the package folder, not around it.
    t.same([path.normalize(cli), ...args], [path.join(prefix, 'lib', 'node_modules', 'kvm-negotiator', 'dist', side, 'cli.js'), 'x y'], side);
  }
});

t.test('the real programs through npm\'s link: --version, and a usage error exits 2', async (t) => {
  const version = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  // This node first on PATH: the launcher runs whichever `node` PATH finds.
  const env = { PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? '/usr/bin:/bin'}`, NODE_EXTRA_CA_CERTS: '/nonexistent/ca.pem' };
  for (const side of SIDES) {
    const command = path.join(prefix, 'bin', `negotiator-${side}`);
    const shown = await execa(command, ['--version'], { reject: false, stdin: 'ignore', extendEnv: false, env });
    // node warns on stderr about a NODE_EXTRA_CA_CERTS file it cannot read: no warning, so it never saw it.
    t.same([shown.exitCode, shown.stdout, shown.stderr], [0, version, ''], `negotiator-${side} --version`);
    const usage = await execa(command, ['--no-such-option'], { reject: false, stdin: 'ignore', extendEnv: false, env });
    t.equal(usage.exitCode, 2, `negotiator-${side} --no-such-option: exit 2`);
    t.match(usage.stderr, /unknown option '--no-such-option'/);
  }
});

t.test('package.json installs the launchers, and npm packs them executable with what they start', async (t) => {
  const manifest = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; files: string[] };
  t.same(manifest.bin, { 'negotiator-host': 'bin/negotiator-host', 'negotiator-guest': 'bin/negotiator-guest' });
  t.ok(manifest.files.includes('bin/'), '`files` has bin/');
  for (const side of SIDES) {
    t.equal(LAUNCHERS[side], path.join(PACKAGE_ROOT, manifest.bin[`negotiator-${side}`]!), `test helper LAUNCHERS.${side} is package.json's`);
    t.equal(statSync(LAUNCHERS[side]).mode & 0o111, 0o111, `bin/negotiator-${side} is executable`);
    t.equal(readFileSync(LAUNCHERS[side], 'utf8').split('\n')[0], '#!/bin/sh');
  }
  const packed = await execa('npm', ['pack', '--dry-run', '--json'], { cwd: PACKAGE_ROOT, reject: false, stdin: 'ignore' });
  t.equal(packed.exitCode, 0, `npm pack --dry-run --json${packed.exitCode === 0 ? '' : `: ${String(packed.stderr)}`}`);
  const files = new Map((JSON.parse(String(packed.stdout)) as Array<{ files: Array<{ path: string; mode: number }> }>)[0]!.files.map((f) => [f.path, f.mode]));
  for (const target of Object.values(manifest.bin)) t.equal((files.get(target) ?? 0) & 0o111, 0o111, `${target} is packed, executable`);
  for (const side of SIDES) t.ok(files.has(`dist/${side}/cli.js`), `dist/${side}/cli.js is packed`);
});
