// `npm run bench:package [-- RELEASE_DIR]`: what `npm run package` ships, in numbers: the size of each single
// executable and Debian package, and the idle resident memory of the guest daemon started from the x64
// executable beside the npm install (node dist/guest/cli.js), each serving a host daemon over a loopback
// and left idle for 10 s before /proc/PID/status is read (median of 3 starts each, interleaved).
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLoopbackVm } from '../examples/demo/loopback-vm.js';
import { GUEST_CLI, HOST_CLI } from './host-daemon.js';
import { loadavg1 } from './proc-stats.js';
import { describeMachine, fixed, formatTable, runBenchmark, writeResults } from './report.js';
import { medianOf } from './stats.js';

const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const IDLE_MS = 10_000;
const STARTS = 3;

function residentKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

// Start a guest daemon (argv), wait until the host daemon lists it ready, idle, and return its RSS in KiB.
async function idleGuestRss(work: string, run: number, argv: string[]): Promise<number> {
  const vm = await startLoopbackVm(path.join(work, `vm-${run}`));
  const hostSocket = path.join(work, `host-${run}.sock`);
  const env = { NODE_OPTIONS: '', XDG_RUNTIME_DIR: work };
  const children: ResultPromise[] = [];
  try {
    const guest = execa(argv[0]!, [...argv.slice(1), '--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost, '--control-socket', path.join(work, `guest-${run}.sock`)], { reject: false, env, stdin: 'ignore' });
    children.push(guest, execa(process.execPath, [HOST_CLI, '--daemon', '--no-libvirt', '--guest', `vm=${vm.dir}`, '--control-socket', hostSocket], { reject: false, env, stdin: 'ignore' }));
    const deadline = Date.now() + 60_000;
    for (;;) {
      const list = await execa(process.execPath, [HOST_CLI, '--control-socket', hostSocket, '--list-guests'], { reject: false, env });
      if (/h2g:ready g2h:ready/.test(list.stdout)) break;
      if (Date.now() > deadline) throw new Error(`the guest daemon (${argv.join(' ')}) did not become ready in 60 s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
    return residentKiB(guest.pid!);
  } finally {
    for (const child of children) child.kill('SIGTERM');
    await Promise.allSettled(children);
    await vm.close();
  }
}

async function main(argv: string[]): Promise<number> {
  const release = path.resolve(argv[2] ?? path.join(PACKAGE_ROOT, 'release')); // argv: node, script, [RELEASE_DIR]
  const executable = path.join(release, 'x64', 'negotiator-guest');
  if (!existsSync(executable)) throw new Error(`${executable} is missing: run npm run package first (or give the release folder).`);
  const machine = describeMachine();
  console.log(`negotiator package benchmark: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, 1-min load ${machine.loadavgStart}\n`);
  const files = [
    ...['x64', 'arm64'].flatMap((arch) => ['negotiator-host', 'negotiator-guest'].map((program) => path.join(arch, program))),
    ...readdirSync(release).filter((name) => name.endsWith('.deb') || name.endsWith('.rpm')).sort(),
  ].filter((file) => existsSync(path.join(release, file)));
  const sizes = files.map((file) => ({ file, bytes: statSync(path.join(release, file)).size }));
  console.log(formatTable(['file', 'MB'], sizes.map((s) => [s.file, fixed(s.bytes / 1e6)])) + '\n');

  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-bench-package-'));
  const rss: Record<string, number[]> = { 'single executable': [], 'npm install (node dist/guest/cli.js)': [] };
  try {
    for (let run = 0; run < STARTS; run++) {
      rss['single executable']!.push(await idleGuestRss(work, run * 2, [executable]));
      rss['npm install (node dist/guest/cli.js)']!.push(await idleGuestRss(work, run * 2 + 1, [process.execPath, GUEST_CLI]));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const memory = Object.entries(rss).map(([what, samples]) => ({ what, medianMiB: medianOf(samples) / 1024, samplesMiB: samples.map((kib) => kib / 1024) }));
  console.log(`guest daemon, idle ${IDLE_MS / 1000} s after the host daemon connected (VmRSS, median of ${STARTS}):`);
  console.log(formatTable(['guest daemon', 'RSS MiB', 'runs'], memory.map((m) => [m.what, fixed(m.medianMiB), m.samplesMiB.map((v) => fixed(v)).join(' ')])) + '\n');
  const loadavgEnd = loadavg1();
  writeResults(path.join(PACKAGE_ROOT, 'bench/results/package.json'), loadavgEnd, { machine: { ...machine, loadavgEnd }, sizes, memory });
  return 0;
}

runBenchmark(main);
