#!/usr/bin/env node
// Runs the compiled tap suite (dist/test) and ends with one line "N passed, N failed[, N skipped]",
// so that a run which executed nothing is visible. Exit code: tap's, or 1 when no summary was seen.
// Usage: node test/run-tests.mjs [tap args or test files...]
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const tapBin = path.join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs');
const files = process.argv.slice(2);
const args = [
  tapBin,
  '--disable-coverage',
  '--allow-empty-coverage',
  '--reporter=tap',
  '--timeout=120',
  ...(files.length > 0 ? files : findTests(path.join(root, 'dist', 'test'))),
];

// Every compiled *.test.js below dir (helpers and fixtures are not test files).
function findTests(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.test.js'))
    .map((entry) => path.relative(root, path.join(entry.parentPath ?? entry.path, entry.name)))
    .sort();
}
const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
let summary;
let pending = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  pending += chunk.toString('utf8');
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines) {
    const m = /^# \{ (.*) \}$/.exec(line);
    if (m) summary = Object.fromEntries(m[1].split(', ').map((kv) => kv.split(': ')).map(([k, v]) => [k, Number(v)]));
  }
});
const forward = (signal) => child.kill(signal);
process.on('SIGINT', forward);
process.on('SIGTERM', forward);
child.on('close', (code, signal) => {
  if (!summary) {
    console.log('tap printed no summary: the suite did not run to completion');
    console.log('0 passed, 1 failed');
    process.exit(code || 1);
  }
  const passed = summary.pass ?? 0;
  const failed = (summary.fail ?? 0) + (code !== 0 && !summary.fail ? 1 : 0);
  const skipped = (summary.skip ?? 0) + (summary.todo ?? 0);
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exit(code ?? (signal ? 1 : 0));
});
