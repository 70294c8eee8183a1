// What `npm run demo` does: a host daemon and a guest daemon on this machine over a loopback of QEMU's two
// virtio-serial channels (no VM, no root), then list and execute in both directions with the real CLIs,
// each step explained. Cleans up (SIGTERM to the daemons, temp directory removed) on success, failure,
// Ctrl-C and a closed output. Exit status: 0 when every step worked, 1 when one failed, 130 on SIGINT,
// 143 on SIGTERM or SIGHUP, 141 when the output was closed.
import { execa } from 'execa';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../../common/wire/errors.js';
import { EXAMPLE_COMMANDS, PACKAGE_ROOT, startDemoDaemons, type DaemonSide, type DemoDaemons } from './demo-daemons.js';
import { createDemoSteps, type DemoStep } from './demo-steps.js';

// The steps run the commands npm installs: the launchers in bin/ (they start dist/*/cli.js with node).
const PROGRAMS: Record<DaemonSide, { name: string; command: string }> = {
  host: { name: 'negotiator-host', command: path.join(PACKAGE_ROOT, 'bin', 'negotiator-host') },
  guest: { name: 'negotiator-guest', command: path.join(PACKAGE_ROOT, 'bin', 'negotiator-guest') },
};

export interface DemoOptions {
  /** Where the demo's lines go. Default: process.stdout (bold and red when it is a terminal and NO_COLOR is unset). */
  write?: (text: string) => void;
  /** The steps to run. Default: createDemoSteps(guest name). */
  steps?: (guest: string) => DemoStep[];
}

// Run the demo; resolves with the exit status (never rejects). Call at most once at a time: it handles
// SIGINT, SIGTERM and SIGHUP while it runs.
export async function runDemo(options: DemoOptions = {}): Promise<number> {
  let outputClosed = false;
  const color = options.write === undefined && process.stdout.isTTY === true && !process.env.NO_COLOR;
  const write = options.write ?? ((text: string) => void (outputClosed || process.stdout.write(text)));
  const print = (text = ''): void => write(`${text}\n`);
  const bold = (text: string): string => (color ? `\u001b[1m${text}\u001b[22m` : text);
  const red = (text: string): string => (color ? `\u001b[31m${text}\u001b[39m` : text);
  const controller = new AbortController();
  const interrupt = (signal: NodeJS.Signals): void => {
    if (!controller.signal.aborted) print(`\n${signal}: stopping the demo and cleaning up...`);
    controller.abort(signal);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, interrupt);
  // Whoever reads our output went away (`npm run demo | head`): stop as on SIGPIPE, but clean up first.
  const onOutputError = (): void => {
    outputClosed = true;
    controller.abort('SIGPIPE');
  };
  if (options.write === undefined) process.stdout.on('error', onOutputError);
  const interruptedStatus = (): number => ({ SIGINT: 130, SIGPIPE: 141 } as Record<string, number>)[String(controller.signal.reason)] ?? 143;

  print(bold('negotiator demo'));
  print('A host daemon and a guest daemon run on this machine, joined by a loopback that plays QEMU\'s two');
  print('virtio-serial channels, so no VM and no root are needed. Each step below is a real CLI run.');
  const shown = (side: DaemonSide): string => path.relative(process.cwd(), PROGRAMS[side].command) || PROGRAMS[side].command;
  print(`(negotiator-host is ${shown('host')} and negotiator-guest is ${shown('guest')}, as npm installs them)`);
  print();
  let daemons: DemoDaemons | undefined;
  let succeeded = false;
  try {
    try {
      daemons = await startDemoDaemons({ signal: controller.signal });
    } catch (error) {
      if (controller.signal.aborted) return interruptedStatus();
      print(red(`FAILED to start the daemons: ${errorMessage(error)}`));
      return 1;
    }
    const show = createDisplay(daemons.dir);
    print(`Everything lives in DEMO=${daemons.dir} (removed at the end).`);
    print(bold('Starting the daemons, as systemd would on a real host and in a real guest:'));
    for (const side of ['host', 'guest'] as const) print(`$ ${PROGRAMS[side].name} ${show(daemons.commandLines[side].slice(1))}`);
    print(`  => Both are up and greeted each other on both channels (their logs: $DEMO/host.log and $DEMO/guest.log).`);

    const steps = (options.steps ?? createDemoSteps)(daemons.guestName);
    for (const [index, step] of steps.entries()) {
      print();
      print(bold(`[${index + 1}/${steps.length}] ${step.title}`));
      const failure = await runStep(step, { daemons, show, print, signal: controller.signal });
      if (controller.signal.aborted) return interruptedStatus();
      if (failure !== undefined) {
        print(red(`FAILED: ${failure}`));
        for (const side of ['host', 'guest'] as const) {
          print(`--- ${side} daemon log (last lines) ---`);
          print(daemons.readLog(side).trimEnd().split('\n').slice(-15).join('\n'));
        }
        return 1;
      }
    }
    print();
    print(bold(`All ${steps.length} steps worked.`) + ' Stopping both daemons with SIGTERM and removing $DEMO.');
    succeeded = true;
    return 0;
  } finally {
    await daemons?.stop();
    if (daemons) print(succeeded ? 'Done. Next: set negotiator up on a libvirt host and in its guests (README.md, "Set-up").' : 'Cleaned up: both daemons stopped, $DEMO removed.');
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(signal, interrupt);
    process.stdout.off('error', onOutputError);
  }
}

interface StepContext {
  daemons: DemoDaemons;
  show: (argv: string[]) => string;
  print: (text?: string) => void;
  signal: AbortSignal;
}

// Run one step: print its command line, its output and what it shows; return why it failed, or undefined.
async function runStep(step: DemoStep, { daemons, show, print, signal }: StepContext): Promise<string | undefined> {
  const program = PROGRAMS[step.side];
  const args = ['--control-socket', daemons.controlSockets[step.side], ...step.args];
  print(`$ ${program.name} ${show(args)}`);
  const logMark = step.daemonLog ? daemons.readLog(step.daemonLog.side).length : 0;
  // The CLI stays in our process group: a Ctrl-C in the terminal reaches it and cancels its request.
  // The launcher runs the `node` on PATH: this one first, so that the steps run the node the demo runs.
  const result = await execa(program.command, args, {
    all: true,
    reject: false,
    stdin: 'ignore',
    timeout: 30_000,
    cancelSignal: signal,
    env: { ...process.env, NODE_OPTIONS: '', PATH: [path.dirname(process.execPath), process.env.PATH].filter(Boolean).join(path.delimiter) },
  });
  const output = String(result.all ?? '');
  if (output !== '') for (const line of output.replace(/\n$/, '').split('\n')) print(`  | ${line}`);
  const expected = step.exitCode ?? 0;
  print(`  exit status ${result.exitCode ?? result.signal}`);
  if (result.exitCode !== expected) return `expected exit status ${expected}, got ${result.exitCode ?? result.signal}`;
  const missing = step.expect.find((pattern) => !pattern.test(output));
  if (missing) return `the output does not match ${missing}`;
  if (step.daemonLog) {
    const line = await waitForLogLine(daemons, step.daemonLog.side, step.daemonLog.pattern, logMark);
    if (line === undefined) return `the ${step.daemonLog.side} daemon did not log ${step.daemonLog.pattern}`;
    print(`  ${step.daemonLog.side} daemon log: ${line}`);
  }
  print(`  => ${step.explain}`);
  return undefined;
}

// The daemon logs a command after answering it: give the line up to 2 s to appear.
async function waitForLogLine(daemons: DemoDaemons, side: DaemonSide, pattern: RegExp, since: number): Promise<string | undefined> {
  for (let attempt = 0; attempt < 40; attempt++) {
    const match = pattern.exec(daemons.readLog(side).slice(since));
    if (match) return match[0];
    await sleep(50);
  }
  return undefined;
}

// Show an argv as a shell line, with $DEMO for the temp directory and $PWD for the package root.
function createDisplay(dir: string): (argv: string[]) => string {
  const quote = (word: string): string => (/^[\w@%+=:,./$-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);
  return (argv) =>
    argv
      .map((word) => {
        let shown = word.split(dir).join('$DEMO');
        if (process.cwd() === PACKAGE_ROOT) shown = shown.split(path.dirname(EXAMPLE_COMMANDS.host)).join('$PWD/examples/commands');
        return quote(shown);
      })
      .join(' ');
}
