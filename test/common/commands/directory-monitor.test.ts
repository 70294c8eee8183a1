// The directory monitor's waits are bounded (issue 11, defect 9): chokidar never reports `ready` when its
// first readdir fails with an error other than ENOENT, EPERM, EACCES or ELOOP (a directory replaced by a
// file between two calls: ENOTDIR; out of fds: EMFILE). A watcher that never gets ready stands in for it.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import type * as Monitor from '../../../common/commands/directory-monitor.js';
import type * as Watcher from '../../../common/commands/directory-watcher.js';
import { createRecordingLogger } from '../../helpers/agents.js';
import { waitUntil } from '../../helpers/processes.js';

// An absolute URL: tap resolves a relative one against the source map's .ts file, not this .js file.
const watcherModule = new URL('../../../common/commands/directory-watcher.js', import.meta.url).href;

t.test('a watcher whose first scan never ends holds neither ready, names nor close', async (t) => {
  const directory = t.testdir({});
  writeFileSync(path.join(directory, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
  const real = await import(watcherModule) as typeof Watcher;
  let closes = 0;
  const neverReady = (options: Watcher.CommandDirectoryWatcherOptions): Watcher.CommandDirectoryWatcher => ({
    directory: options.directory,
    names: new Set(),
    ready: new Promise<void>(() => {}),
    reconcile: () => Promise.resolve(),
    close: () => ((closes += 1), Promise.resolve()),
  });
  const { createCommandDirectoryMonitor } = await t.mockImport<typeof Monitor>(new URL('../../../common/commands/directory-monitor.js', import.meta.url).href, {
    [watcherModule]: { ...real, watchCommandDirectory: neverReady },
  });
  const logger = createRecordingLogger();
  const monitor = createCommandDirectoryMonitor({ directories: [directory], logger, watch: true, checkIntervalMs: 60_000, watcherReadyTimeoutMs: 200, onChange: () => {} });
  const bounded = <T>(what: string, promise: Promise<T>): Promise<T> =>
    Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} did not settle within 5 s`)), 5000))]);

  await bounded('ready', monitor.ready);
  t.match(await logger.waitFor(/first scan did not finish/), `watching command directory ${directory}: the first scan did not finish; reading it directly until the next check`);
  t.equal(closes, 1, 'the stuck watcher was closed');
  t.same(await bounded('readNames', monitor.readNames()), [['tool']], 'names are read directly meanwhile');
  await bounded('close', monitor.close());
});

// The monitor with node:fs/promises counted (and statfs answering `fsType` when given): what it touches.
async function countingMonitor(t: Test, fsType?: number) {
  const real = await import('node:fs/promises');
  const calls = { stat: 0, readdir: 0 };
  const { createCommandDirectoryMonitor } = await t.mockImport<typeof Monitor>(new URL('../../../common/commands/directory-monitor.js', import.meta.url).href, {
    'node:fs/promises': {
      ...real,
      stat: (...args: Parameters<typeof real.stat>) => ((calls.stat += 1), real.stat(...args)),
      readdir: (...args: Parameters<typeof real.readdir>) => ((calls.readdir += 1), real.readdir(...args)),
      statfs: async (...args: Parameters<typeof real.statfs>) => ({ ...(await real.statfs(...args)), ...(fsType === undefined ? {} : { type: fsType }) }),
    },
  });
  return { createCommandDirectoryMonitor, calls };
}


t.test('idle: watched directories are not checked on a timer (issue 14: idle cost)', async (t) => {
  const directory = t.testdir({});
  const { createCommandDirectoryMonitor, calls } = await countingMonitor(t);
  const events: string[] = [];
  const monitor = createCommandDirectoryMonitor({ directories: [directory], logger: createRecordingLogger(), watch: true, checkIntervalMs: 20, onChange: (event) => events.push(`${event.type} ${event.name}`) });
  t.teardown(() => monitor.close());
  await monitor.ready;
  const before = { ...calls };
  await new Promise((resolve) => setTimeout(resolve, 400));
  t.same(calls, before, 'no stat or readdir in 400 ms, with a 20 ms check interval');
  writeFileSync(path.join(directory, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
  await waitUntil('the watcher to report the new file', () => events.includes('add tool'));
  t.same(await monitor.readNames(), [['tool']]);
});

t.test('a missing directory is picked up through a watch on its parent, not a timer', async (t) => {
  const root = t.testdir({});
  const late = path.join(root, 'not', 'yet');
  const { createCommandDirectoryMonitor, calls } = await countingMonitor(t);
  const logger = createRecordingLogger();
  const events: string[] = [];
  const monitor = createCommandDirectoryMonitor({ directories: [late], logger, watch: true, checkIntervalMs: 3_600_000, onChange: (event) => events.push(`${event.type} ${event.name}`) });
  t.teardown(() => monitor.close());
  await monitor.ready;
  t.match(await logger.waitFor(/waiting for command directory/), `through a watch on ${root}`);
  const before = calls.stat;
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(calls.stat, before, 'nothing is looked at while nothing changes');
  mkdirSync(late, { recursive: true });
  writeFileSync(path.join(late, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
  await waitUntil('the directory to be watched and its file reported', () => events.includes('add tool'));
  t.match(logger.lines.join('\n'), `command directory appeared: ${late}`);
  t.same(await monitor.readNames(), [['tool']]);
});

t.test('a directory on a network file system (9p here, by statfs) is read at each use, never watched', async (t) => {
  const directory = t.testdir({});
  const { createCommandDirectoryMonitor, calls } = await countingMonitor(t, 0x01021997);
  const logger = createRecordingLogger();
  const monitor = createCommandDirectoryMonitor({ directories: [directory], logger, watch: true, checkIntervalMs: 20, onChange: () => {} });
  t.teardown(() => monitor.close());
  await monitor.ready;
  t.match(await logger.waitFor(/is on 9p/), 'it is read at each use instead of watched');
  const before = calls.readdir;
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(calls.readdir, before, 'no timer reads it');
  writeFileSync(path.join(directory, 'tool'), '#!/bin/sh\n', { mode: 0o755 });
  t.same(await monitor.readNames(), [['tool']], 'a file added is seen at the next use');
  t.equal(calls.readdir, before + 1);
});

t.test('a watched directory replaced behind the watcher\'s back is seen at the next use', async (t) => {
  const root = t.testdir({ commands: { old: '#!/bin/sh\n' } });
  const directory = path.join(root, 'commands');
  const { createCommandDirectoryMonitor } = await countingMonitor(t);
  const monitor = createCommandDirectoryMonitor({ directories: [directory], logger: createRecordingLogger(), watch: true, checkIntervalMs: 3_600_000, onChange: () => {} });
  t.teardown(() => monitor.close());
  await monitor.ready;
  t.same(await monitor.readNames(), [['old']]);
  const fresh = path.join(root, 'fresh');
  mkdirSync(fresh);
  writeFileSync(path.join(fresh, 'new'), '#!/bin/sh\n', { mode: 0o755 });
  renameSync(directory, path.join(root, 'gone'));
  renameSync(fresh, directory);
  t.same(await monitor.readNames(), [['new']], 'the replacement is read, whatever the watcher saw');
});
