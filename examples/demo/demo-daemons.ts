// The demo's two daemons: a temp directory, a loopback "VM" (QEMU's two chardev sockets), a host daemon
// and a guest daemon started from the built CLIs with the example command directories, their control
// sockets and logs in the temp directory. `stop()` sends SIGTERM, waits, and removes the directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createAgentInfo, readOsInfo } from '../../common/wire/agent-info.js';
import { connectToDaemon } from '../../common/cli/client.js';
import { errorMessage } from '../../common/wire/errors.js';
import { METHODS, type AgentInfo } from '../../common/wire/protocol.js';
import { startLoopbackVm, type LoopbackVm } from './loopback-vm.js';

/** The package root: the folder with package.json, `dist/` and `examples/`. */
export const PACKAGE_ROOT = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));
export const HOST_CLI = path.join(PACKAGE_ROOT, 'dist', 'host', 'cli.js');
export const GUEST_CLI = path.join(PACKAGE_ROOT, 'dist', 'guest', 'cli.js');
export const EXAMPLE_COMMANDS = { host: path.join(PACKAGE_ROOT, 'examples', 'commands', 'host'), guest: path.join(PACKAGE_ROOT, 'examples', 'commands', 'guest') };

export type DaemonSide = 'host' | 'guest';

export interface DemoDaemonsOptions {
  /** The guest's name, as the host knows it (`--guest NAME=DIR`). Default `demo-vm`. */
  guestName?: string;
  /** How long the daemons may take to connect to each other, ms. Default 20 000. */
  readyTimeoutMs?: number;
  /** Abort the start-up (Ctrl-C): what was started is stopped and removed, and the promise rejects. */
  signal?: AbortSignal;
}

/** Two running daemons joined by a loopback; `stop()` is idempotent and never rejects. */
export interface DemoDaemons {
  /** The temp directory holding everything (removed by `stop()`). */
  readonly dir: string;
  readonly guestName: string;
  readonly controlSockets: Record<DaemonSide, string>;
  /** The exact argv (after `node`) each daemon was started with. */
  readonly commandLines: Record<DaemonSide, string[]>;
  /** A daemon's log so far (stdout and stderr). */
  readLog(side: DaemonSide): string;
  stop(): Promise<void>;
}

// Start both daemons and resolve once the host has a ready session with the guest agent on both channels
// and the guest daemon on both of its own; on failure everything started is stopped and removed.
export async function startDemoDaemons(options: DemoDaemonsOptions = {}): Promise<DemoDaemons> {
  const guestName = options.guestName ?? 'demo-vm';
  for (const cli of [HOST_CLI, GUEST_CLI]) {
    if (!existsSync(cli)) throw new Error(`\`${cli}\` is missing: build first (npm run build), or use npm run demo`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-demo-'));
  const children: Partial<Record<DaemonSide, ChildProcess>> = {};
  const exits: Partial<Record<DaemonSide, Promise<void>>> = {};
  const logs: Record<DaemonSide, string> = { host: path.join(dir, 'host.log'), guest: path.join(dir, 'guest.log') };
  const controlSockets: Record<DaemonSide, string> = { host: path.join(dir, 'host.sock'), guest: path.join(dir, 'guest.sock') };
  let vm: LoopbackVm | undefined;
  let stopping: Promise<void> | undefined;

  const readLog = (side: DaemonSide): string => {
    try {
      return readFileSync(logs[side], 'utf8');
    } catch {
      return '';
    }
  };
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      await Promise.all((['guest', 'host'] as const).map((side) => stopDaemon(children[side], exits[side])));
      await vm?.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  try {
    vm = await startLoopbackVm(path.join(dir, 'vm'));
    const commandLines: Record<DaemonSide, string[]> = {
      host: [
        HOST_CLI, '--daemon', '--no-libvirt',
        '--guest', `${guestName}=${vm.dir}`,
        '--control-socket', controlSockets.host,
        '--commands-dir', EXAMPLE_COMMANDS.host,
      ],
      guest: [
        GUEST_CLI, '--daemon',
        '--host-to-guest', vm.guestChannels.hostToGuest,
        '--guest-to-host', vm.guestChannels.guestToHost,
        '--control-socket', controlSockets.guest,
        '--commands-dir', EXAMPLE_COMMANDS.guest,
      ],
    };
    for (const side of ['host', 'guest'] as const) {
      const started = startDaemon(commandLines[side], logs[side], dir);
      children[side] = started.child;
      exits[side] = started.exited;
    }
    const daemons: DemoDaemons = { dir, guestName, controlSockets, commandLines, readLog, stop };
    await waitUntilConnected(daemons, children, options.readyTimeoutMs ?? 20_000, options.signal);
    return daemons;
  } catch (error) {
    const logText = (['host', 'guest'] as const).map((side) => `--- ${side} daemon log ---\n${readLog(side).trimEnd() || '(empty)'}`).join('\n');
    await stop();
    throw new Error(`${errorMessage(error)}\n${logText}`, { cause: error });
  }
}

// Spawn a daemon in its own process group (so a Ctrl-C in the terminal reaches the demo, which then
// stops it with SIGTERM), its output appended to `logFile`, its commands' HOME inside the demo directory.
function startDaemon(argv: string[], logFile: string, dir: string): { child: ChildProcess; exited: Promise<void> } {
  const log = openSync(logFile, 'a');
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir, NODE_OPTIONS: '' };
  // Not a systemd service, whatever runs the demo: plain log lines, no readiness notification.
  delete env.NOTIFY_SOCKET;
  delete env.JOURNAL_STREAM;
  try {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', log, log], detached: true, env });
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    return { child, exited };
  } finally {
    closeSync(log);
  }
}

// SIGTERM, then SIGKILL when the daemon has not exited within 15 s (its own --grace is 10 s).
async function stopDaemon(child: ChildProcess | undefined, exited: Promise<void> | undefined): Promise<void> {
  if (!child || !exited || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

// Poll both control sockets until every channel has completed its handshake; fail early if a daemon exits.
async function waitUntilConnected(daemons: DemoDaemons, children: Partial<Record<DaemonSide, ChildProcess>>, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const { nonce: _unused, ...localInfo } = createAgentInfo({ side: 'host', os: await readOsInfo(), nonce: '' });
  const deadline = Date.now() + timeoutMs;
  let lastProblem = 'no answer yet';
  for (;;) {
    signal?.throwIfAborted();
    for (const side of ['host', 'guest'] as const) {
      const child = children[side];
      if (child && (child.exitCode !== null || child.signalCode !== null)) {
        throw new Error(`the ${side} daemon exited during start-up (${child.exitCode ?? child.signalCode})`);
      }
    }
    try {
      const problem = (await describeHostProblem(daemons, localInfo)) ?? (await describeGuestProblem(daemons, localInfo));
      if (problem === undefined) return;
      lastProblem = problem;
    } catch (error) {
      lastProblem = errorMessage(error);
    }
    if (Date.now() > deadline) throw new Error(`the daemons did not connect to each other within ${timeoutMs} ms: ${lastProblem}`);
    await sleep(100, undefined, signal ? { signal } : {});
  }
}

interface HostStatus {
  guests: Array<{ name: string; channels: Record<string, { ready: boolean } | undefined> }>;
}
interface GuestStatus {
  channels: Array<{ name: string; connected: boolean }>;
}

// Why the host daemon is not ready yet, or undefined when it is.
async function describeHostProblem(daemons: DemoDaemons, localInfo: Omit<AgentInfo, 'nonce'>): Promise<string | undefined> {
  const status = (await requestStatus(daemons.controlSockets.host, localInfo)) as HostStatus | undefined;
  if (!status) return 'the host daemon\'s control socket is not there yet';
  const guest = status.guests.find((g) => g.name === daemons.guestName);
  if (!guest) return `the host daemon does not know ${daemons.guestName} yet`;
  const channels = Object.entries(guest.channels);
  if (channels.length < 2 || channels.some(([, c]) => !c?.ready)) return `the host's channels to ${daemons.guestName} are not all ready yet`;
  return undefined;
}

// Why the guest daemon is not ready yet, or undefined when it is.
async function describeGuestProblem(daemons: DemoDaemons, localInfo: Omit<AgentInfo, 'nonce'>): Promise<string | undefined> {
  const status = (await requestStatus(daemons.controlSockets.guest, { ...localInfo, side: 'guest' })) as GuestStatus | undefined;
  if (!status) return 'the guest daemon\'s control socket is not there yet';
  const waiting = status.channels.filter((c) => !c.connected).map((c) => c.name);
  return waiting.length > 0 ? `the guest daemon is still connecting ${waiting.join(' and ')}` : undefined;
}

async function requestStatus(socket: string, localInfo: Omit<AgentInfo, 'nonce'>): Promise<unknown> {
  const peer = await connectToDaemon(socket, { localInfo, requestTimeoutMs: 2000, groupHint: 'check the file mode' });
  if (!peer) return undefined;
  try {
    return await peer.request(METHODS.status, {}, { timeoutMs: 2000 });
  } finally {
    await peer.close();
  }
}

// Walk up from `start` to the folder holding package.json and examples/commands.
function findPackageRoot(start: string): string {
  for (let directory = start; ; directory = path.dirname(directory)) {
    if (existsSync(path.join(directory, 'package.json')) && existsSync(path.join(directory, 'examples', 'commands'))) return directory;
    if (path.dirname(directory) === directory) throw new Error(`no package root (package.json with examples/commands) above \`${start}\``);
  }
}
