// A real benchmark guest: ../shared/vm/boot-guest.sh (QEMU under TCG, the two virtio-serial ports, this
// checkout shared at /mnt/share), booted in serve mode with one guest command (the idea of
// test/helpers/vm.ts, kept here so that benchmarks do not import test code).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readProcessCpuMs } from './proc-stats.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const VM_DIR = path.resolve(REPO, '..', 'shared', 'vm');
const BOOT_GUEST = path.join(VM_DIR, 'boot-guest.sh');

/** Where bench/vm-stream-services.ts listens in the guest, and the daemon's `--service` addresses point. */
export const VM_STREAM_SERVICES = { sink: '/run/bench-sink.sock', source: '/run/bench-source.sock' } as const;

// Why no guest can be booted here, or undefined when one can.
export function vmSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (QEMU and the lab scripts run as root)';
  if (!existsSync(BOOT_GUEST)) return `${BOOT_GUEST} is missing (../shared/vm is not beside this checkout)`;
  return undefined;
}

// Build (or check) the guest kernel and initramfs: about 1 s when up to date.
export function buildGuestImage(): void {
  const result = spawnSync(path.join(VM_DIR, 'build-initramfs.sh'), { encoding: 'utf8', timeout: 600_000 });
  if (result.status !== 0) throw new Error(`build-initramfs.sh failed (${result.status}): ${result.stderr}`);
}

/** A booted guest. `kill()` is idempotent. */
export interface BenchGuest {
  readonly sockDir: string;
  /** The host end of the guest's host-to-guest port. */
  readonly hostToGuestSocket: string;
  /** The console so far, without escape sequences and carriage returns. */
  console(): string;
  /**
   * Resolve with the first match of `pattern` on the console; rejects after timeoutMs, when QEMU exits, or
   * when the guest command ended first (init's `LAB-EXIT=` line) unless `pattern` may follow it.
   */
  waitForConsole(pattern: RegExp, timeoutMs: number, options?: { afterExit?: boolean }): Promise<string>;
  /** QEMU's CPU time so far (the whole guest under TCG), ms. */
  readQemuCpuMs(): number;
  kill(): Promise<void>;
}

export interface BootSpec {
  sockDir: string;
  /** The guest's command (sh -c, cwd /mnt/share). */
  command: string;
  memoryMb?: number;
  timeoutS?: number;
}

// Boot in serve mode; resolves once QEMU's sockets exist.
export async function bootBenchGuest(spec: BootSpec): Promise<BenchGuest> {
  mkdirSync(spec.sockDir, { recursive: true });
  const consoleLog = path.join(spec.sockDir, 'console.log');
  const child = spawn(
    BOOT_GUEST,
    ['-s', REPO, '-d', spec.sockDir, '-M', 'serve', '-l', consoleLog, '-m', String(spec.memoryMb ?? 1024), '-t', String(spec.timeoutS ?? 900), '--', spec.command],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let exited = false;
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const readConsole = (): string => {
    try {
      return readFileSync(consoleLog, 'utf8').replace(/\r/g, '').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
    } catch {
      return '';
    }
  };
  const qemuPid = (): number | undefined => {
    try {
      return Number(readFileSync(path.join(spec.sockDir, 'qemu.pid'), 'utf8').trim()) || undefined;
    } catch {
      return undefined;
    }
  };
  let killing: Promise<void> | undefined;
  const guest: BenchGuest = {
    sockDir: spec.sockDir,
    hostToGuestSocket: path.join(spec.sockDir, 'negotiator-host-to-guest.0'),
    console: readConsole,
    async waitForConsole(pattern, timeoutMs, options = {}) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const text = readConsole();
        const match = pattern.exec(text);
        if (match) return match[0];
        if (!options.afterExit && /^LAB-EXIT=/m.test(text)) throw new Error(`the guest command ended before the console showed ${pattern}:\n${text.slice(-3000)}`);
        if (exited) throw new Error(`QEMU exited before the console showed ${pattern}: ${stderr}\n${readConsole().slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`the guest console did not show ${pattern} within ${timeoutMs} ms; last lines:\n${readConsole().slice(-3000)}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    readQemuCpuMs() {
      const pid = qemuPid();
      if (pid === undefined) throw new Error(`no QEMU pid in ${spec.sockDir}/qemu.pid`);
      return readProcessCpuMs(pid);
    },
    kill() {
      killing ??= (async () => {
        if (exited) return;
        const pid = qemuPid();
        try {
          if (pid === undefined) throw new Error('no pid file');
          process.kill(pid, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
        await exit;
      })();
      return killing;
    },
  };
  const deadline = Date.now() + 60_000;
  while (!existsSync(path.join(spec.sockDir, 'qmp.sock')) || qemuPid() === undefined) {
    if (exited) throw new Error(`boot-guest.sh exited early: ${stderr}`);
    if (Date.now() > deadline) {
      await guest.kill();
      throw new Error('QEMU did not create its sockets within 60 s');
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return guest;
}
