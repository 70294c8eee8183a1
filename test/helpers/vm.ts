// Real guests for end-to-end tests: ../shared/vm/boot-guest.sh (QEMU under TCG, the two virtio-serial
// ports, this checkout at /mnt/share) and ../shared/vm/libvirt-guest.sh (a real libvirt domain), plus QMP.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const VM_DIR = path.resolve(REPO, '..', 'shared', 'vm');
export const BOOT_GUEST = path.join(VM_DIR, 'boot-guest.sh');
export const LIBVIRT_GUEST = path.join(VM_DIR, 'libvirt-guest.sh');

// Why the VM scenarios cannot run here, or undefined when they can. In CI they must run: the caller fails.
export function vmSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (QEMU, the lab scripts and libvirt run as root)';
  if (!existsSync(BOOT_GUEST)) return `${BOOT_GUEST} is missing (../shared/vm is not beside this checkout)`;
  if (spawnSync('sh', ['-c', 'command -v qemu-system-x86_64'], { stdio: 'ignore' }).status !== 0) {
    // build-initramfs.sh installs QEMU from apt; try once.
    const built = spawnSync(path.join(VM_DIR, 'build-initramfs.sh'), { stdio: 'ignore', timeout: 600_000 });
    if (built.status !== 0) return 'qemu-system-x86_64 is not installed and ../shared/vm/build-initramfs.sh could not install it';
  }
  return undefined;
}

// The one rule for every VM scenario file: the reason its scenarios cannot run, or false when they can.
// With a reason, under CI (CI set, and not "false" or "0") the file fails at once: a skip there would pass
// a run that tested nothing. Elsewhere the caller skips with the reason.
export function vmScenarioSkip(what: string, reason: string | false | undefined = vmSkipReason()): string | false {
  if (!reason) return false;
  if (runningInCi()) t.fail(`${what} must run in CI but cannot: ${reason}`);
  return reason;
}

// vmScenarioSkip for a file whose scenarios are not one t.test: true when they run; else false, after
// planning no tests (or failing, in CI).
export function shouldRunVmScenarios(what: string): boolean {
  const skip = vmScenarioSkip(what);
  if (skip && !runningInCi()) t.plan(0, `skipping ${what}: ${skip}`);
  return !skip;
}

export function runningInCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

// Build the kernel and initramfs once (about 1 s when up to date).
export function buildGuestImage(): void {
  const result = spawnSync(path.join(VM_DIR, 'build-initramfs.sh'), { encoding: 'utf8', timeout: 600_000 });
  if (result.status !== 0) throw new Error(`build-initramfs.sh failed (${result.status}): ${result.stderr}`);
}

export interface BootedGuest {
  sockDir: string;
  consoleLog: string;
  /** The console so far, without escape sequences and carriage returns. */
  console(): string;
  /** Resolve when the console shows `pattern` after offset `since` (rejects after timeoutMs or if QEMU exits). */
  waitForConsole(pattern: RegExp, timeoutMs: number, since?: number): Promise<string>;
  /** Send a QMP command (`system_reset`, ...) and return its answer. */
  qmp(command: string, args?: Record<string, unknown>): Promise<unknown>;
  kill(): Promise<void>;
}

export interface BootOptions {
  sockDir: string;
  /** The guest's command (sh -c, cwd /mnt/share). */
  command: string;
  memoryMb?: number;
  timeoutS?: number;
  /** Extra QEMU arguments (QEMU_EXTRA). */
  qemuExtra?: string;
}

// Boot a guest in serve mode (it stays up after its command) and wait until QEMU's sockets exist.
export async function bootGuest(options: BootOptions): Promise<BootedGuest> {
  mkdirSync(options.sockDir, { recursive: true });
  const consoleLog = path.join(options.sockDir, 'console.log');
  const child: ChildProcess = spawn(
    BOOT_GUEST,
    ['-s', REPO, '-d', options.sockDir, '-M', 'serve', '-l', consoleLog, '-m', String(options.memoryMb ?? 2048), '-t', String(options.timeoutS ?? 900), '--', options.command],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...(options.qemuExtra ? { QEMU_EXTRA: options.qemuExtra } : {}) } },
  );
  let exited = false;
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.on('exit', () => (exited = true));
  const readConsole = (): string => {
    try {
      return readFileSync(consoleLog, 'utf8').replace(/\r/g, '').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
    } catch {
      return '';
    }
  };
  const guest: BootedGuest = {
    sockDir: options.sockDir,
    consoleLog,
    console: readConsole,
    async waitForConsole(pattern, timeoutMs, since = 0) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(readConsole().slice(since));
        if (match) return match[0];
        if (exited) throw new Error(`QEMU exited before the console showed ${pattern}: ${stderr}\n${readConsole().slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`the guest console did not show ${pattern} within ${timeoutMs} ms; last lines:\n${readConsole().slice(-3000)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
    qmp: (command, args) => qmpCommand(path.join(options.sockDir, 'qmp.sock'), command, args),
    async kill() {
      if (exited) return;
      const pidFile = path.join(options.sockDir, 'qemu.pid');
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
      await new Promise((resolve) => (exited ? resolve(undefined) : child.once('exit', resolve)));
    },
  };
  const deadline = Date.now() + 60_000;
  while (!existsSync(path.join(options.sockDir, 'qmp.sock'))) {
    if (exited) throw new Error(`boot-guest.sh exited early: ${stderr}`);
    if (Date.now() > deadline) throw new Error('QEMU did not create its sockets within 60 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return guest;
}

// One QMP command on a fresh connection (greeting, qmp_capabilities, the command).
export function qmpCommand(socketPath: string, command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let buffer = '';
    let step = 0;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`QMP ${command} got no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      let newline;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffer.slice(0, newline)) as Record<string, unknown>;
        buffer = buffer.slice(newline + 1);
        if ('event' in message) continue;
        if (step === 0 && 'QMP' in message) {
          step = 1;
          socket.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
        } else if (step === 1 && 'return' in message) {
          step = 2;
          socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
        } else if (step === 2) {
          clearTimeout(timer);
          socket.end();
          if ('error' in message) reject(new Error(`QMP ${command}: ${JSON.stringify(message.error)}`));
          else resolve(message.return);
        }
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}
