import { execFileSync } from 'node:child_process';
import { chmod, mkdir, readFile, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import {
  createCommandRegistry,
  type CommandChangeEvent,
  type CommandRegistry,
  type CommandRegistryOptions,
} from '../../../common/commands/registry.js';
import { ConfigError, RpcError } from '../../../common/wire/errors.js';
import type { Logger, LogLevel } from '../../../common/base/logger.js';

const WAIT_MS = 5000;

interface LogEntry {
  level: LogLevel;
  message: string;
}

function createCapturingLogger(): { logger: Logger; entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const logger: Logger = {
    level: 'debug',
    error: (message) => void entries.push({ level: 'error', message }),
    warn: (message) => void entries.push({ level: 'warn', message }),
    info: (message) => void entries.push({ level: 'info', message }),
    debug: (message) => void entries.push({ level: 'debug', message }),
    child: () => logger,
  };
  return { logger, entries };
}

// Write a script atomically (hidden temp name, chmod, rename) so the watcher sees one `add`.
async function writeScript(directory: string, name: string, body: string | Buffer, mode = 0o755): Promise<string> {
  const target = path.join(directory, name);
  const temporary = path.join(directory, `.${name}.${process.pid}.partial`);
  await writeFile(temporary, body);
  await chmod(temporary, mode);
  await rename(temporary, target);
  return target;
}

function script(description: string, code = 'echo ok'): string {
  return `#!/bin/sh\n# ${description}\n${code}\n`;
}

function createRegistry(t: Test, options: CommandRegistryOptions): CommandRegistry {
  const registry = createCommandRegistry({ directoryCheckIntervalMs: 50, ...options });
  t.teardown(() => registry.close());
  return registry;
}

// Resolve with the first matching change event; reject when none comes within `ms`. Subscribe before acting.
function waitForChange(registry: CommandRegistry, match: Partial<CommandChangeEvent>, ms = WAIT_MS): Promise<CommandChangeEvent> {
  const controller = new AbortController();
  let unsubscribe = (): void => {};
  const event = new Promise<CommandChangeEvent>((resolve) => {
    unsubscribe = registry.onChange((candidate) => {
      const entries = Object.entries(match) as Array<[keyof CommandChangeEvent, string]>;
      if (entries.every(([key, value]) => candidate[key] === value)) resolve(candidate);
    });
  });
  const timeout = sleep(ms, undefined, { signal: controller.signal }).then(
    () => Promise.reject(new Error(`no change event matching ${JSON.stringify(match)} within ${ms} ms`)),
    () => new Promise<never>(() => {}),
  );
  return Promise.race([event, timeout]).finally(() => {
    controller.abort();
    unsubscribe();
  });
}

// Call `read` until `accept` holds; reject with the last value after `ms`.
async function pollUntil<T>(read: () => Promise<T>, accept: (value: T) => boolean, what: string, ms = WAIT_MS): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}; last: ${JSON.stringify(value)}`);
    await sleep(20);
  }
}

const names = async (registry: CommandRegistry): Promise<string[]> => (await registry.list()).map((command) => command.name);

t.test('options are checked before any I/O', async (t) => {
  t.throws(() => createCommandRegistry({ directories: [] }), {
    name: 'ConfigError',
    message:
      'Expected the `directories` option to be a non-empty array of absolute paths, got `[]`. ' +
      'List the user command directories first and the built-in one last.',
  });
  t.throws(() => createCommandRegistry({ directories: ['relative/dir'] }), {
    message: 'Expected `directories[0]` to be an absolute path, got `relative/dir`. Pass absolute paths (for example resolve them with path.resolve()).',
  });
  t.throws(() => createCommandRegistry({ directories: '/usr/lib' } as unknown as CommandRegistryOptions), ConfigError);
  t.throws(() => createCommandRegistry({ directories: ['/a', 7] } as unknown as CommandRegistryOptions), { message: /`directories\[1\]`.*got `7`/ });
  t.throws(() => createCommandRegistry({ directories: ['/a'], watch: 'yes' } as unknown as CommandRegistryOptions), { message: /`watch` option/ });
  t.throws(() => createCommandRegistry({ directories: ['/a'], directoryCheckIntervalMs: 0 }), { message: /`directoryCheckIntervalMs`/ });
  t.throws(() => createCommandRegistry({ directories: ['/a'], logger: {} as Logger }), { message: /`logger` option/ });
  const registry = createCommandRegistry({ directories: ['/a/', '/b', '/a'], watch: false });
  t.same(registry.options.directories, ['/a', '/b'], 'normalized, duplicates dropped, order kept');
  t.ok(Object.isFrozen(registry.options) && Object.isFrozen(registry.options.directories), 'resolved options are frozen');
  t.equal(registry.options.watch, false);
  t.equal(registry.options.directoryCheckIntervalMs, 5000, 'the default its comment states');
  await registry.close();
});

for (const watch of [true, false]) {
  t.test(`precedence: the first directory wins (watch: ${watch})`, async (t) => {
    const root = t.testdir({ user: {}, builtin: {} });
    const user = path.join(root, 'user');
    const builtin = path.join(root, 'builtin');
    await writeScript(user, 'foo', script('user foo'));
    await writeScript(user, 'baz', script('user baz'));
    await writeScript(builtin, 'foo', script('builtin foo'));
    await writeScript(builtin, 'bar', script('builtin bar'));
    const registry = createRegistry(t, { directories: [user, builtin], watch });
    await registry.ready;
    t.same(await registry.list(), [
      { name: 'bar', description: 'builtin bar' },
      { name: 'baz', description: 'user baz' },
      { name: 'foo', description: 'user foo' },
    ]);
    t.same(await registry.resolve('foo'), { name: 'foo', path: path.join(user, 'foo'), directory: user, description: 'user foo', launchable: true });
    t.equal((await registry.resolve('bar'))?.directory, builtin);
    t.equal(await registry.resolve('missing'), undefined);
    await t.rejects(registry.resolve('../builtin/foo'), RpcError);
    // A file that is not executable is not a command: the next directory's file of that name is used.
    await chmod(path.join(user, 'foo'), 0o644);
    t.equal((await registry.resolve('foo'))?.directory, builtin);
    t.same(
      (await registry.list()).find((command) => command.name === 'foo'),
      { name: 'foo', description: 'builtin foo' },
    );
  });

  t.test(`non-executable, non-regular and badly named files are skipped (watch: ${watch})`, async (t) => {
    const root = t.testdir({ commands: {}, elsewhere: {} });
    const directory = path.join(root, 'commands');
    const target = await writeScript(path.join(root, 'elsewhere'), 'target', script('via a link'));
    await writeScript(directory, 'exec-ok', script('fine'));
    await writeScript(directory, 'plain', script('no x bit'), 0o644);
    await mkdir(path.join(directory, 'subdir'), { mode: 0o755 });
    await symlink(target, path.join(directory, 'link-ok'));
    await symlink(path.join(root, 'nowhere'), path.join(directory, 'dangling'));
    await symlink(path.join(root, 'elsewhere'), path.join(directory, 'link-to-dir'));
    execFileSync('mkfifo', ['-m', '755', path.join(directory, 'fifo')]);
    for (const junk of ['.hidden', 'old~', 'edit.swp', 'x.dpkg-old', 'y.rpmnew', 'z.bak']) {
      await writeScript(directory, junk, script('junk'));
    }
    const registry = createRegistry(t, { directories: [directory], watch });
    await registry.ready;
    t.same(await names(registry), ['exec-ok', 'link-ok']);
    t.same(await registry.resolve('link-ok'), {
      name: 'link-ok',
      path: path.join(directory, 'link-ok'),
      directory,
      description: 'via a link',
      launchable: true,
    });
    for (const name of ['plain', 'subdir', 'dangling', 'link-to-dir', 'fifo']) {
      t.equal(await registry.resolve(name), undefined, `${name} does not resolve`);
    }
  });
}

t.test('descriptions', async (t) => {
  const directory = t.testdir();
  const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), Buffer.from('# not a comment\n')]);
  const cases: Array<[string, string | Buffer, string]> = [
    ['with-shebang', '#!/bin/sh\n# Say hello\necho hi\n', 'Say hello'],
    ['no-shebang', '# Plain comment\necho\n', 'Plain comment'],
    ['spaced', '#!/usr/bin/env python3\n\n##   Spaced out  \nprint(1)\n', 'Spaced out'],
    ['empty-comment-first', '#!/bin/sh\n#\n# Second comment line\n', 'Second comment line'],
    ['code-first', '#!/bin/sh\necho hi\n# later\n', ''],
    ['crlf', '#!/bin/sh\r\n# Windows line\r\n', 'Windows line'],
    ['no-newline', '# Ends without newline', 'Ends without newline'],
    ['elf', elf, ''],
    ['nul', Buffer.from('# looks like text\n\0\0\0'), ''],
    ['cut-first-line', `#!/bin/sh\n# ${'x'.repeat(5000)}\n`, ''],
    ['late-comment', `#!/bin/sh\n${'\n'.repeat(5000)}# too late\n`, ''],
    ['empty', '', ''],
  ];
  for (const [name, body] of cases) await writeScript(directory, name, body);
  const registry = createRegistry(t, { directories: [directory], watch: false });
  const listed = new Map((await registry.list()).map((command) => [command.name, command.description]));
  for (const [name, , expected] of cases) t.equal(listed.get(name), expected, name);
  t.equal((await registry.resolve('with-shebang'))?.description, 'Say hello', 'resolve reads descriptions too');
});

t.test('descriptions are cached by path, mtime and size', async (t) => {
  const directory = t.testdir();
  const file = await writeScript(directory, 'cached', script('first text'));
  // A whole-second mtime survives utimes() exactly (a Date would lose the sub-millisecond part).
  const time = Math.floor(Date.now() / 1000) - 60;
  await utimes(file, time, time);
  const registry = createRegistry(t, { directories: [directory], watch: false });
  t.same(await registry.list(), [{ name: 'cached', description: 'first text' }]);
  // Same size, same mtime: the cache answers (the file is not read again).
  await writeFile(file, script('other text'));
  await utimes(file, time, time);
  t.same(await registry.list(), [{ name: 'cached', description: 'first text' }], 'served from the cache');
  // A different size invalidates the entry.
  await writeFile(file, script('a longer new text'));
  t.same(await registry.list(), [{ name: 'cached', description: 'a longer new text' }], 're-read after an edit');
});

t.test('resolve says whether execve would start the file with no shell (for the launchers), read with the description', async (t) => {
  const directory = t.testdir();
  await writeFile(path.join(directory, 'elf'), await readFile('/bin/true'), { mode: 0o755 });
  await writeScript(directory, 'script', script('a script'));
  await writeScript(directory, 'env-script', '#!/usr/bin/env sh\necho\n');
  await writeScript(directory, 'no-shebang', '# no #! line: execve says ENOEXEC\necho\n');
  await writeScript(directory, 'bad-interpreter', '#!/nonexistent/sh\necho\n');
  await writeScript(directory, 'relative-interpreter', '#!sh\necho\n');
  const registry = createRegistry(t, { directories: [directory], watch: false });
  const launchable = async (name: string): Promise<boolean | undefined> => (await registry.resolve(name))?.launchable;
  t.same(
    Object.fromEntries(await Promise.all(['elf', 'script', 'env-script', 'no-shebang', 'bad-interpreter', 'relative-interpreter'].map(async (name) => [name, await launchable(name)]))),
    { elf: true, script: true, 'env-script': true, 'no-shebang': false, 'bad-interpreter': false, 'relative-interpreter': false },
  );
  // The interpreter is looked at on every resolve: it may be installed after the file was first read.
  const interpreter = path.join(directory, 'interpreter');
  await writeScript(directory, 'late-interpreter', `#!${interpreter}\necho\n`);
  t.equal(await launchable('late-interpreter'), false, 'its interpreter is missing');
  await writeFile(interpreter, await readFile('/bin/true'), { mode: 0o755 });
  t.equal(await launchable('late-interpreter'), true, 'its interpreter appeared');
});

t.test('live add, edit, chmod -x / +x and remove are seen without restart', async (t) => {
  const directory = t.testdir();
  const { logger, entries } = createCapturingLogger();
  const registry = createRegistry(t, { directories: [directory], logger });
  await registry.ready;
  t.same(await registry.list(), []);
  const events: CommandChangeEvent[] = [];
  registry.onChange((event) => events.push(event));

  const added = waitForChange(registry, { type: 'add', name: 'live' });
  await writeScript(directory, 'live', script('first version'));
  t.same(await added, { type: 'add', name: 'live', directory });
  t.same(await registry.list(), [{ name: 'live', description: 'first version' }]);
  t.ok(entries.some((entry) => entry.level === 'info' && entry.message === `command added: live (${directory})`), 'logged at info');

  // Edit first: chokidar drops a `change` that comes within 50 ms of another one (a chmod may be one).
  const changed = waitForChange(registry, { type: 'change', name: 'live' });
  await writeFile(path.join(directory, 'live'), script('second, longer version'));
  await changed;
  await pollUntil(
    () => registry.list(),
    (list) => list[0]?.description === 'second, longer version',
    'the edited description',
  );

  await chmod(path.join(directory, 'live'), 0o644);
  await pollUntil(() => names(registry), (list) => !list.includes('live'), 'chmod -x to hide the command');
  t.equal(await registry.resolve('live'), undefined, 'not resolvable without x bit');
  await chmod(path.join(directory, 'live'), 0o755);
  await pollUntil(() => names(registry), (list) => list.includes('live'), 'chmod +x to show the command');

  const removed = waitForChange(registry, { type: 'remove', name: 'live' });
  await unlink(path.join(directory, 'live'));
  t.same(await removed, { type: 'remove', name: 'live', directory });
  t.same(await registry.list(), []);
  t.ok(entries.some((entry) => entry.message === `command removed: live (${directory})`), 'removal logged');
  // A chmod may or may not show up as `change`; adds and removes are reported exactly once.
  t.same(
    events.filter((event) => event.type !== 'change').map((event) => event.type),
    ['add', 'remove'],
    'no duplicate add/remove (the periodic re-read agrees with the watcher)',
  );
});

t.test('a missing directory is logged once and picked up when it appears', async (t) => {
  const root = t.testdir({ builtin: {} });
  const late = path.join(root, 'not', 'yet');
  const builtin = path.join(root, 'builtin');
  await writeScript(builtin, 'shared', script('builtin shared'));
  const { logger, entries } = createCapturingLogger();
  const registry = createRegistry(t, { directories: [late, builtin], logger });
  await registry.ready;
  const warnings = (): LogEntry[] => entries.filter((entry) => entry.level === 'warn' && entry.message.includes(late));
  t.equal(warnings().length, 1, 'one warning');
  t.equal(
    warnings()[0]?.message,
    `Command directory \`${late}\` does not exist: its commands are unavailable until you create it (\`mkdir -p ${late}\`). It will be picked up when it appears.`,
  );
  // Let several directory checks (every 50 ms) pass: the warning must not repeat.
  await sleep(300);
  t.equal(warnings().length, 1, 'still one warning after several checks');
  t.same(await names(registry), ['shared']);

  const appeared = waitForChange(registry, { type: 'add', name: 'shared', directory: late });
  await mkdir(late, { recursive: true });
  await writeScript(late, 'shared', script('user shared'));
  await appeared;
  t.same(await registry.list(), [{ name: 'shared', description: 'user shared' }], 'the late directory takes precedence');
  t.equal((await registry.resolve('shared'))?.directory, late);

  const added = waitForChange(registry, { type: 'add', name: 'more', directory: late });
  await writeScript(late, 'more', script('more'));
  await added;
  t.same(await names(registry), ['more', 'shared'], 'files added after it appeared are seen');

  const gone = waitForChange(registry, { type: 'remove', name: 'more', directory: late });
  await rm(late, { recursive: true });
  await gone;
  t.same(await registry.list(), [{ name: 'shared', description: 'builtin shared' }]);
  await pollUntil(async () => warnings().length, (count) => count === 2, 'a warning that the directory is gone');

  const back = waitForChange(registry, { type: 'add', name: 'again', directory: late });
  await mkdir(late, { recursive: true });
  await writeScript(late, 'again', script('again'));
  await back;
  t.same(await names(registry), ['again', 'shared'], 'a recreated directory is watched again');
});

t.test('without watch, every call reads the directories', async (t) => {
  const root = t.testdir({ present: {} });
  const present = path.join(root, 'present');
  const missing = path.join(root, 'missing');
  const { logger, entries } = createCapturingLogger();
  const registry = createRegistry(t, { directories: [missing, present], watch: false, logger });
  t.same(await registry.list(), []);
  await writeScript(present, 'now', script('now'));
  t.same(await names(registry), ['now'], 'seen on the next call, no watcher involved');
  await registry.list();
  const warnings = entries.filter((entry) => entry.level === 'warn');
  t.equal(warnings.length, 1, 'the missing directory is logged once');
  t.match(warnings[0]?.message, `Command directory \`${missing}\` does not exist`);
  t.notMatch(warnings[0]?.message, 'picked up', 'no promise of a watcher that does not exist');
});

t.test('close is idempotent; the registry still answers afterwards', async (t) => {
  const directory = t.testdir();
  await writeScript(directory, 'one', script('one'));
  const registry = createCommandRegistry({ directories: [directory] });
  const first = registry.close();
  t.equal(registry.close(), first, 'the same promise');
  await first;
  await registry.ready;
  await registry.close();
  t.same(await names(registry), ['one'], 'list after close reads the directory');
  await writeScript(directory, 'two', script('two'));
  t.same(await names(registry), ['one', 'two']);
  t.equal((await registry.resolve('two'))?.name, 'two');
});

t.test('a throwing listener is logged and does not stop the others', async (t) => {
  const directory = t.testdir();
  const { logger, entries } = createCapturingLogger();
  const registry = createRegistry(t, { directories: [directory], logger });
  await registry.ready;
  registry.onChange(() => {
    throw new Error('listener bug');
  });
  const seen = waitForChange(registry, { type: 'add', name: 'x' });
  await writeScript(directory, 'x', script('x'));
  await seen;
  t.ok(entries.some((entry) => entry.level === 'error' && entry.message.includes('listener bug')));
});

t.test('unsubscribed listeners are not called', async (t) => {
  const directory = t.testdir();
  const registry = createRegistry(t, { directories: [directory] });
  await registry.ready;
  const calls: string[] = [];
  const unsubscribe = registry.onChange((event) => calls.push(event.name));
  unsubscribe();
  const seen = waitForChange(registry, { type: 'add', name: 'y' });
  await writeScript(directory, 'y', script('y'));
  await seen;
  t.same(calls, []);
});
