// Which modules a node program loads: a loader hook (on the loader thread) reports each one on stderr.
import { execa } from 'execa';
import { pathToFileURL } from 'node:url';

const MARK = '@@loaded ';
const HOOKS = `import { writeSync } from 'node:fs';
export async function load(url, context, next) { writeSync(2, ${JSON.stringify(MARK)} + url + '\\n'); return next(url, context); }`;
const REGISTER = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOKS)}`)});`;

export interface TracedRun {
  exitCode: number | undefined;
  /** file: URLs of the modules loaded, sorted, the script itself left out. */
  files: string[];
  /** stderr without the hook's lines. */
  stderr: string;
}

// Run `node script args` to its end (stdin empty, no NODE_OPTIONS) and list the files it loaded as modules.
export async function traceLoadedModules(script: string, args: readonly string[]): Promise<TracedRun> {
  const result = await execa(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REGISTER)}`, script, ...args], {
    reject: false,
    stdin: 'ignore',
    timeout: 30_000,
    env: { NODE_OPTIONS: '' },
  });
  const lines = String(result.stderr).split('\n');
  const urls = lines.filter((line) => line.startsWith(MARK)).map((line) => line.slice(MARK.length));
  if (urls.length === 0) throw new Error(`no module was reported loading ${script}: exit ${result.exitCode}, ${result.stderr}`);
  const self = pathToFileURL(script).href;
  return {
    exitCode: result.exitCode,
    files: [...new Set(urls.filter((url) => url.startsWith('file:') && url !== self))].sort(),
    stderr: lines.filter((line) => !line.startsWith(MARK)).join('\n'),
  };
}
