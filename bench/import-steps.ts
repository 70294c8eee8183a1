// Child of the start-up profile (bench/startup-profile.ts): imports groups of modules in order in this
// fresh process and prints, as one JSON line, how long each group took (what it added to what the earlier
// groups had loaded) and, with --count, how many ES modules it loaded. Imports nothing itself at the top
// but node built-ins, so every group pays its own way.
// Usage: node dist/bench/import-steps.js [--count] 'SPEC[ SPEC...]' ['SPEC[ SPEC...]' ...] (a group's specifiers space-separated)
import { register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';

// Counting ES module loads through a loader hook (it runs on the loader thread and posts each URL here).
const HOOKS = `let port;
export function initialize(data) { port = data.port; }
export async function load(url, context, next) { port.postMessage(url); return next(url, context); }`;

async function main(argv: string[]): Promise<void> {
  const count = argv[0] === '--count';
  const groups = (count ? argv.slice(1) : argv).map((group) => group.split(' ').filter(Boolean));
  const loaded = new Set<string>();
  if (count) {
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (url: string) => loaded.add(url));
    port1.unref();
    register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, { data: { port: port2 }, transferList: [port2] });
  }
  const result: Array<{ ms: number; modules?: number }> = [];
  for (const group of groups) {
    const before = loaded.size;
    const start = performance.now();
    for (const spec of group) await import(spec);
    const ms = performance.now() - start;
    if (count) await new Promise((resolve) => setTimeout(resolve, 50));
    result.push(count ? { ms, modules: loaded.size - before } : { ms });
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

await main(process.argv.slice(2));
