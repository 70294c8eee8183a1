import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { watchCommandDirectory, type CommandChangeEvent } from '../../../common/commands/directory-watcher.js';

// Resolve when `events` holds an event matching `match`; reject after `ms`.
async function waitForEvent(events: CommandChangeEvent[], match: Partial<CommandChangeEvent>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  const matches = (event: CommandChangeEvent): boolean =>
    Object.entries(match).every(([key, value]) => event[key as keyof CommandChangeEvent] === value);
  while (!events.some(matches)) {
    if (Date.now() > deadline) throw new Error(`no event matching ${JSON.stringify(match)} within ${ms} ms: ${JSON.stringify(events)}`);
    await sleep(10);
  }
}

t.test('the initial scan is silent unless asked, and reports names only', async (t) => {
  const directory = t.testdir({
    one: '',
    '.hidden': '',
    'two.swp': '',
    sub: {},
    'link-to-sub': t.fixture('symlink', 'sub'),
    dangling: t.fixture('symlink', 'nowhere'),
    'link-to-one': t.fixture('symlink', 'one'),
  });
  for (const reportInitial of [false, true]) {
    const events: CommandChangeEvent[] = [];
    const problems: string[] = [];
    const watcher = watchCommandDirectory({
      directory,
      reportInitial,
      onChange: (event) => events.push(event),
      onDirectoryGone: () => problems.push('directory gone'),
      onError: (error) => problems.push(error.message),
    });
    t.teardown(() => watcher.close());
    await watcher.ready;
    t.same([...watcher.names].sort(), ['link-to-one', 'one'], 'junk names, directories and dangling links are not candidates');
    await watcher.reconcile();
    t.same([...watcher.names].sort(), ['link-to-one', 'one'], 'reconcile agrees with chokidar');
    t.same(
      events.map((event) => event.name).sort(),
      reportInitial ? ['link-to-one', 'one'] : [],
      `reportInitial: ${reportInitial}`,
    );
    await watcher.close();
    t.same(problems, []);
  }
});

t.test('reconcile catches a file before chokidar does, without a second add later', async (t) => {
  const directory = t.testdir();
  const events: CommandChangeEvent[] = [];
  const problems: string[] = [];
  const watcher = watchCommandDirectory({
    directory,
    reportInitial: false,
    onChange: (event) => events.push(event),
    onDirectoryGone: () => problems.push('directory gone'),
    onError: (error) => problems.push(error.message),
  });
  t.teardown(() => watcher.close());
  await watcher.ready;
  await watcher.reconcile();
  t.same(events, [], 'nothing to report in an unchanged directory');

  await writeFile(path.join(directory, 'early'), '');
  await watcher.reconcile();
  t.same(events, [{ type: 'add', name: 'early', directory }], 'reported by reconcile');
  // chokidar reports `early` too; a later file proves its events have been delivered.
  await writeFile(path.join(directory, 'sentinel'), '');
  await waitForEvent(events, { type: 'add', name: 'sentinel' });
  t.same(
    events.filter((event) => event.name === 'early'),
    [{ type: 'add', name: 'early', directory }],
    'still one add for early',
  );
  t.same([...watcher.names].sort(), ['early', 'sentinel']);
  await watcher.close();
  t.same(problems, []);
});

t.test('close is idempotent and silences the watcher', async (t) => {
  const directory = t.testdir();
  const events: CommandChangeEvent[] = [];
  const problems: string[] = [];
  const watcher = watchCommandDirectory({
    directory,
    reportInitial: true,
    onChange: (event) => events.push(event),
    onDirectoryGone: () => problems.push('directory gone'),
    onError: (error) => problems.push(error.message),
  });
  const closing = watcher.close();
  t.equal(watcher.close(), closing);
  await closing;
  await watcher.ready;
  await writeFile(path.join(directory, 'after'), '');
  await watcher.reconcile();
  t.same(events, [], 'no events after close');
  t.same(problems, []);
});
