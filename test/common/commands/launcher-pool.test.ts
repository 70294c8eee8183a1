// Pre-forked launchers (common/commands/launcher-pool.ts) against the direct spawn: the same command must see the
// same argv, environment, stdin, process group and give the same outcome either way; what a launcher
// cannot carry goes the direct way; waiting launchers neither keep a process alive nor outlive it.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand, type RunCommandOptions } from '../../../common/commands/runner.js';
import { ERROR_CODES } from '../../../common/wire/protocol.js';
import { LauncherPool, sharedLauncherPool } from '../../../common/commands/launcher-pool.js';
import { canExecDirectly, inspectCommandFile, isExecutableFile, readCommandFileHead } from '../../../common/commands/file.js';
import { isAlive, launchersOf, waitUntil } from '../../helpers/processes.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-launcher-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function script(name: string, text: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  chmodSync(file, 0o755);
  return file;
}

// Everything a command can observe of how it was started, pids left out. The environment is the one it
// was started with (/proc/PID/environ: the reporting shell adds PWD to its own), less what tap's
// processinfo plugin injects into every child it sees spawned.
const REPORT = script(
  'report',
  `#!/bin/sh
printf 'argc=%s\\n' "$#"
for a in "$@"; do printf 'arg=[%s]\\n' "$a"; done
tr '\\0' '\\n' < /proc/$$/environ | grep -v -e '^NODE_OPTIONS=' -e '^_TAPJS_' | LC_ALL=C sort
pgrp=$(cut -d' ' -f5 /proc/$$/stat)
[ "$pgrp" = "$$" ] && echo "own process group" || echo "process group $pgrp, pid $$"
printf 'cwd=%s\\n' "$(pwd)"
printf 'stdin=%s\\n' "$(readlink /proc/$$/fd/0 | sed 's/:\\[[0-9]*\\]$//')"
printf 'input=[%s]\\n' "$(cat)"
exit 3
`,
);
const SELF_TERM = script('self-term', '#!/bin/sh\nkill -TERM $$\n');
const NO_SHEBANG = script('no-shebang', 'echo run by /bin/sh\n');
const BAD_INTERPRETER = script('bad-interpreter', '#!/nonexistent/interpreter\necho never\n');

const ENV = {
  PATH: '/usr/bin:/bin',
  LANG: 'C.UTF-8',
  HOME: '/',
  NEGOTIATOR_SPACES: '  leading and trailing  ',
  NEGOTIATOR_SHELLISH: '$(touch /tmp/negotiator-pwned) `x` $HOME * ; | & \\ \' "',
  NEGOTIATOR_EMPTY: '',
  NEGOTIATOR_UTF8: 'é ✓',
};
const ARGS = ['plain', 'two words', '', '  padded  ', '$(touch /tmp/negotiator-pwned)', '*', "quote'd \"both\"", 'back\\slash\\n', '-e', '--', 'é ✓'];

interface Run {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  signal: string | null;
  pid: number | undefined;
}

// What the command registry's resolve says of a file: would execve start it with no shell's help.
async function launchableOf(file: string): Promise<boolean> {
  const inspected = await inspectCommandFile(path.dirname(file), path.basename(file));
  return isExecutableFile(inspected) && canExecDirectly((await readCommandFileHead(file)).format);
}

async function run(file: string, extra: Partial<RunCommandOptions> & { input?: string } = {}): Promise<Run> {
  const { input, ...options } = extra;
  const child = runCommand({
    file,
    launchable: await launchableOf(file),
    args: ARGS,
    env: ENV,
    stdin: input !== undefined,
    timeoutMs: 20_000,
    killGraceMs: 1000,
    exitDrainMs: 1000,
    signal: new AbortController().signal,
    ...options,
  });
  if (input !== undefined) child.stdin!.end(input);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const outcome = await child.outcome;
  return { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), exitCode: outcome.exitCode, signal: outcome.signal, pid: child.pid };
}

// A pool with a launcher ready.
async function readyPool(t: Test, size = 1): Promise<LauncherPool> {
  const pool = new LauncherPool({ size, cwd: '/' });
  t.teardown(() => pool.close());
  pool.warm();
  await waitUntil('a ready launcher', () => pool.stats().ready === size);
  return pool;
}


t.test('through a launcher, a command sees exactly what the direct spawn gives it', async (t) => {
  const direct = await run(REPORT, { input: 'line 1\nline 2' });
  const pool = await readyPool(t);
  const launched = await run(REPORT, { input: 'line 1\nline 2', launchers: pool });
  t.equal(pool.stats().launched, 1, 'the launcher was used');
  t.equal(launched.stdout, direct.stdout);
  t.match(direct.stdout, /^argc=11\narg=\[plain\]\narg=\[two words\]\narg=\[\]\narg=\[  padded  \]\n/);
  t.match(direct.stdout, /\nNEGOTIATOR_SHELLISH=\$\(touch \/tmp\/negotiator-pwned\) `x` \$HOME \* ; \| & \\ ' "\n/);
  t.match(direct.stdout, /\nown process group\ncwd=\/\nstdin=socket\ninput=\[line 1\nline 2\]\n$/);
  t.notMatch(launched.stdout, /PWD=|SHLVL=|OLDPWD=/, 'nothing the launcher shell adds on its own');
  t.same([launched.exitCode, launched.signal, launched.stderr], [3, null, '']);
  t.same([direct.exitCode, direct.signal, direct.stderr], [3, null, '']);
});

t.test('without stdin the command reads /dev/null either way', async (t) => {
  const pool = await readyPool(t);
  const launched = await run(REPORT, { launchers: pool });
  const direct = await run(REPORT);
  t.equal(pool.stats().launched, 1);
  t.match(launched.stdout, /\nstdin=\/dev\/null\ninput=\[\]\n$/);
  t.equal(launched.stdout, direct.stdout);
});

t.test('a signal death and a prlimit-style wrapper come out the same', async (t) => {
  const pool = await readyPool(t);
  const launched = await run(SELF_TERM, { launchers: pool });
  t.same([launched.exitCode, launched.signal], [null, 'SIGTERM']);
  await waitUntil('a ready launcher', () => pool.stats().ready === 1);
  const wrapped = await run(REPORT, { launchers: pool, wrapper: ['/usr/bin/env', '--'] });
  t.equal(pool.stats().launched, 2);
  t.equal(wrapped.stdout, (await run(REPORT, { wrapper: ['/usr/bin/env', '--'] })).stdout);
});

t.test('the deadline ends the launched command\'s whole group', async (t) => {
  const pool = await readyPool(t);
  const pidFile = path.join(dir, 'grandchild.pid');
  const file = script('sleeper', `#!/bin/sh\nsleep 60 &\necho $! > ${pidFile}\nwait\n`);
  const child = runCommand({ file, launchable: true, args: [], env: ENV, stdin: false, timeoutMs: 300, killGraceMs: 1000, exitDrainMs: 1000, signal: new AbortController().signal, launchers: pool });
  child.stdout.resume();
  child.stderr.resume();
  const outcome = await child.outcome;
  t.equal(pool.stats().launched, 1);
  t.match(outcome, { timedOut: true, signal: 'SIGTERM' });
  const grandchild = Number(readFileSync(pidFile, 'utf8'));
  await waitUntil('the grandchild to end', () => !isAlive(grandchild));
});

t.test('what a launcher cannot carry is spawned directly, with the direct way\'s errors', async (t) => {
  const pool = await readyPool(t);
  const multiline = await run(REPORT, { launchers: pool, args: ['one\ntwo'] });
  t.match(multiline.stdout, /^argc=1\narg=\[one\ntwo\]\n/);
  // libuv's execvp hands a file without a #! line to /bin/sh (ENOEXEC); it stays on that path.
  t.equal((await run(NO_SHEBANG, { launchers: pool })).stdout, 'run by /bin/sh\n');
  await t.rejects(run(BAD_INTERPRETER, { launchers: pool }), { code: ERROR_CODES.spawnFailed, message: /interpreter.*ENOENT/ });
  await t.rejects(run(path.join(dir, 'missing'), { launchers: pool }), { code: ERROR_CODES.spawnFailed, message: /ENOENT/ });
  const ifs = await run(REPORT, { launchers: pool, env: { ...ENV, IFS: 'x' } });
  t.match(ifs.stdout, /\nIFS=x\n/, 'a name the launcher uses itself');
  t.same(pool.stats(), { launched: 0, direct: 5, ready: 1 }, 'the launcher is still waiting');
});



const POOL_MODULE = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'common', 'commands', 'launcher-pool.js');

t.test('waiting launchers do not keep a process alive, and do not outlive it', async (t) => {
  for (const ending of ['returns', 'SIGKILL'] as const) {
    const code = `
      const { LauncherPool } = await import(${JSON.stringify(POOL_MODULE)});
      const pool = new LauncherPool({ size: 2, cwd: '/' });
      pool.warm();
      const wait = () => new Promise((r) => setTimeout(r, 10));
      while (pool.stats().ready < 2) await wait();
      console.log('ready');
      // Until the test has listed the launchers: then nothing but them could keep this process alive.
      ${ending === 'SIGKILL' ? 'setInterval(() => {}, 1000);' : "await new Promise((resolve) => process.stdin.once('data', resolve)); process.stdin.destroy();"}`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const launchers = launchersOf(child.pid!);
    t.equal(launchers.length, 2, `${ending}: two launchers waiting`);
    if (ending === 'SIGKILL') child.kill('SIGKILL');
    else child.stdin.end('listed\n');
    const exit = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    t.equal(exit, ending === 'SIGKILL' ? null : 0, `${ending}: the process ended`);
    await waitUntil(`${ending}: the launchers to exit`, () => launchers.every((pid) => !isAlive(pid)));
  }
});

t.test('close() ends the waiting launchers and launches nothing more', async (t) => {
  const pool = await readyPool(t, 2);
  const launchers = launchersOf(process.pid);
  t.ok(launchers.length >= 2, 'the two are children of this process');
  pool.close();
  t.equal(pool.launch([REPORT], ENV, false, true), undefined);
  t.same(pool.stats(), { launched: 0, direct: 1, ready: 0 });
  await waitUntil('the launchers to exit', () => launchers.every((pid) => !isAlive(pid)));
});

t.test('a launch touches no file: it runs on the event loop, the caller says what execve would start', async (t) => {
  // Every synchronous file call fails here: a pool that still checked files itself would go direct.
  const refuse = (): never => {
    throw new Error('a synchronous file call on the event loop');
  };
  const fs = await import('node:fs');
  const { LauncherPool: Pool } = await t.mockImport<typeof import('../../../common/commands/launcher-pool.js')>(new URL('../../../common/commands/launcher-pool.js', import.meta.url).href, {
    'node:fs': { ...fs, accessSync: refuse, openSync: refuse, readSync: refuse, statSync: refuse, closeSync: refuse },
  });
  const pool = new Pool({ size: 1, cwd: '/' });
  t.teardown(() => pool.close());
  pool.warm();
  await waitUntil('a ready launcher', () => pool.stats().ready === 1);
  const launched = await run(REPORT, { launchers: pool });
  t.match(launched.stdout, /^argc=11\n/);
  t.match(pool.stats(), { launched: 1, direct: 0 }, 'started by the launcher');
  t.equal(pool.launch([REPORT], ENV, false, false), undefined, 'what execve would not start goes direct');
});

t.test('the shared pool of a size is that size', async (t) => {
  const small = sharedLauncherPool({ size: 1, cwd: '/' });
  const large = sharedLauncherPool({ size: 3, cwd: '/' });
  t.teardown(() => (small.close(), large.close()));
  t.not(large, small, 'another pool for another size');
  t.equal(sharedLauncherPool({ size: 3, cwd: '/' }), large, 'the same pool for the same size');
  large.warm();
  await waitUntil('three ready launchers', () => large.stats().ready === 3);
});
