// The module groups bench:cli times (bench/startup-profile.ts HOST_CLI_IMPORTS) say what negotiator-host
// really loads: the `static` groups are exactly its static imports, and what the other groups add is not
// loaded by `--execute` (here without a daemon, to a --guest guest: it tries the daemon first). So
// chokidar and execa stay off the CLI's path, and the table stays true when the imports move.
import t from 'tap';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { HOST_CLI_IMPORTS, type ImportGroup } from '../../bench/startup-profile.js';
import { traceLoadedModules } from '../helpers/loaded-modules.js';
import { DIST, HOST_CLI } from '../helpers/spawn-cli.js';

const IMPORT_STEPS = path.join(DIST, 'bench', 'import-steps.js');
const loadedFiles = async (script: string, args: readonly string[]): Promise<string[]> => (await traceLoadedModules(script, args)).files;

// What importing these groups in order loads (as bench/import-steps.ts imports them).
const importGroups = (groups: readonly ImportGroup[]): Promise<string[]> => loadedFiles(IMPORT_STEPS, groups.map((group) => group.specs.join(' ')));

const staticGroups = HOST_CLI_IMPORTS.filter((group) => group.loaded === 'static');
const cliStatic = await loadedFiles(HOST_CLI, ['--version']);

t.test('the static groups load exactly the modules of negotiator-host --version (its static imports)', async (t) => {
  t.ok(cliStatic.some((url) => url.endsWith('/dist/host/run-host.js')), 'the trace sees the CLI\'s modules');
  t.same(await importGroups(staticGroups), cliStatic);
});

t.test('--execute without a daemon, to a --guest guest, loads nothing more; the other groups\' modules stay out', async (t) => {
  const work = path.join(DIST, 'no-such-dir-negotiator');
  const executed = await loadedFiles(HOST_CLI, ['--control-socket', path.join(work, 'host.sock'), '--no-libvirt', '--guest', `vm1=${work}`, '--execute', 'true', 'vm1']);
  t.same(executed, cliStatic);
  const others = HOST_CLI_IMPORTS.filter((group) => group.loaded !== 'static');
  t.same(others.map((group) => group.specs[0]), [pathToFileURL(path.join(DIST, 'host', 'locate-guest.js')).href, 'chokidar', 'execa'], 'the groups checked');
  for (const group of others) {
    const added = (await importGroups([...staticGroups, group])).filter((url) => !cliStatic.includes(url));
    t.ok(added.length > 0, `${group.label}: adds modules`);
    t.same(added.filter((url) => executed.includes(url)), [], `${group.label}: none loaded by --execute`);
  }
});
