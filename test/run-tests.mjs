#!/usr/bin/env node
// Runs the compiled tap suite (dist/test) and ends with one line "N passed, N failed[, N skipped]",
// so that a run which executed nothing is visible. Exit code: non-zero when anything failed or when a
// phase printed no summary.
// Phases: the fast suite (tap's default parallelism), then the real-VM scenarios (*.vm.test.js, *.libvirt.test.js), one at
// a time: two TCG guests on a 2-core machine would starve each other. Before that phase, the VM prerequisites
// are installed (prepareVm). Under CI (CI=true) or with NEGOTIATOR_SECOND_NODE=1, the fast suite runs a
// second time on the pinned Node LTS of packaging/node-runtime.ts (fetched from the npm registry once, then
// cached), first on PATH, so the test files' own `process.execPath` and `node` are that Node too: the two
// lines `engines` claims.
// Usage: node test/run-tests.mjs [test files...]   (given files run in one phase)
//        NEGOTIATOR_SKIP_VM=1 npm test                (no VM scenarios)
//        NEGOTIATOR_SECOND_NODE=0 npm test            (not the second Node, even under CI)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const tapBin = path.join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs');

// Every compiled *.test.js below dir (helpers and fixtures are not test files).
function findTests(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith('.test.js'))
    .map((entry) => path.relative(root, path.join(entry.parentPath ?? entry.path, entry.name)))
    .sort();
}

// Tests that boot guests or drive libvirt: run alone, after the fast suite.
function isVmTest(file) {
  return /\.(vm|libvirt)\.test\.js$/.test(file);
}

// The VM scenarios need QEMU and the guest image: ../shared/vm/build-initramfs.sh apt-installs QEMU (and
// busybox, socat...) and builds the image, about 1 s when all is there. Run before the phase, so that no
// scenario file finds QEMU missing on a fresh machine. When it fails, the scenario files say why they cannot
// run, and fail under CI (test/helpers/vm.ts vmScenarioSkip).
function prepareVm() {
  const script = path.resolve(root, '..', 'shared', 'vm', 'build-initramfs.sh');
  if (process.getuid?.() !== 0 || !existsSync(script)) return;
  console.log(`# preparing the VM scenarios: ${script}`);
  const result = spawnSync(script, { cwd: root, stdio: ['ignore', 2, 2], timeout: 900_000 });
  if (result.status !== 0) console.log(`# ${script} failed (${result.error?.message ?? `exit ${result.status ?? result.signal}`})`);
}

// Run tap on files with `node` (default: this one); resolve with its exit code and its summary object (or undefined).
function runTap(files, extraArgs, node = process.execPath) {
  return new Promise((resolve) => {
    const args = [tapBin, '--disable-coverage', '--allow-empty-coverage', '--reporter=tap', '--timeout=1800', ...extraArgs, ...files];
    const env = node === process.execPath ? process.env : { ...process.env, PATH: `${path.dirname(node)}${path.delimiter}${process.env.PATH ?? ''}` };
    const child = spawn(node, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] });
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
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve({ code: code ?? (signal ? 1 : 0), summary });
    });
  });
}

const given = process.argv.slice(2);
const phases = [];
if (given.length > 0) {
  phases.push({ name: 'given files', files: given, args: [], prepare: given.some(isVmTest) ? prepareVm : undefined });
} else {
  const all = findTests(path.join(root, 'dist', 'test'));
  const fast = all.filter((f) => !isVmTest(f));
  phases.push({ name: 'suite', files: fast, args: [] });
  const second = process.env.NEGOTIATOR_SECOND_NODE ?? (process.env.CI === 'true' ? '1' : '0');
  // Not test/packaging/: what it checks (the executables, the packages) does not depend on the Node that runs the test.
  const onPinned = fast.filter((f) => !f.startsWith(path.join('dist', 'test', 'packaging') + path.sep));
  if (second !== '0' && second !== '') phases.push({ name: 'suite on the pinned Node LTS', files: onPinned, args: [], pinnedNode: true });
  const vm = all.filter(isVmTest);
  if (process.env.NEGOTIATOR_SKIP_VM) console.log(`# NEGOTIATOR_SKIP_VM is set: not running the ${vm.length} VM scenario files`);
  else if (vm.length > 0) phases.push({ name: 'VM scenarios', files: vm, args: ['--jobs=1'], prepare: prepareVm });
}
const total = { pass: 0, fail: 0, skip: 0 };
let failedPhase = false;
for (const phase of phases) {
  let node = process.execPath;
  if (phase.pinnedNode) {
    try {
      const { pinnedNode, PINNED_NODE } = await import(path.join(root, 'dist', 'packaging', 'node-runtime.js'));
      node = await pinnedNode(process.arch);
      phase.name = `${phase.name} ${PINNED_NODE.version}`;
    } catch (error) {
      console.log(`# phase ${phase.name}: could not get that Node: ${error.message}`);
      failedPhase = true;
      total.fail += 1;
      continue;
    }
  }
  console.log(`# phase: ${phase.name} (${phase.files.length} files)`);
  phase.prepare?.();
  const { code, summary } = await runTap(phase.files, phase.args, node);
  if (!summary) {
    console.log(`# phase ${phase.name}: tap printed no summary: it did not run to completion`);
    failedPhase = true;
    total.fail += 1;
    continue;
  }
  total.pass += summary.pass ?? 0;
  total.fail += (summary.fail ?? 0) + (code !== 0 && !summary.fail ? 1 : 0);
  total.skip += (summary.skip ?? 0) + (summary.todo ?? 0);
  if (code !== 0) failedPhase = true;
}
console.log(`${total.pass} passed, ${total.fail} failed${total.skip ? `, ${total.skip} skipped` : ''}`);
process.exit(failedPhase || total.fail > 0 ? 1 : 0);
