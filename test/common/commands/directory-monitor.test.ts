// The directory monitor's waits are bounded (issue 11, defect 9): chokidar never reports `ready` when its
// first readdir fails with an error other than ENOENT, EPERM, EACCES or ELOOP (a directory replaced by a
// file between two calls: ENOTDIR; out of fds: EMFILE). A watcher that never gets ready stands in for it.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type * as Monitor from '../../../common/commands/directory-monitor.js';
import type * as Watcher from '../../../common/commands/directory-watcher.js';
import { createRecordingLogger } from '../../helpers/agents.js';

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
