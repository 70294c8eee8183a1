#!/usr/bin/env node
// negotiator-guest: argument parsing only; the work is in run-guest.ts.
import { Command, Option } from 'commander';
import { readPackageVersion } from '../common/wire/agent-info.js';
import { addClientOptions, addControlOptions, addServingOptions, clientOptionsOf, controlOptionsOf, runMain, servingOptionsOf } from '../common/cli/options.js';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';
import { addStreamOptions, streamOptionsOf } from '../common/cli/stream-options.js';
import { DEFAULT_GUEST_CONTROL_SOCKET, PROGRAM, runGuestCli, runGuestDoctor } from './run-guest.js';

const program = new Command(PROGRAM)
  .description('Run commands on this guest\'s KVM/QEMU host, and serve the host\'s requests (--daemon).')
  .version(readPackageVersion(), '--version')
  .option('-d, --daemon', 'serve the host: run the host\'s requests with this guest\'s command directories')
  .option('-l, --list-commands', 'list the commands the host offers to this guest')
  .option('-e, --execute <command>', 'run a host command, e.g. --execute \'reboot-notify now\' (split like a shell, no shell runs)')
  .option('-w, --wait', 'exit 0 as soon as the host\'s agent has answered on both channels; 255 with the reason at --timeout');
addClientOptions(program, 'list, execute and doctor')
  .option('-c, --character-device <channel>', 'talk to the host through this channel, not through the daemon: a device (/dev/vport1p2), serial:/dev/ttyS1[@BAUD], unix:PATH or tcp:HOST:PORT')
  .option('--host-to-guest <channel>', 'daemon: the channel the host calls us on (virtio:NAME, a device, serial:..., unix:..., tcp:...)', `virtio:${CHANNEL_NAMES.hostToGuest}`)
  .option('--guest-to-host <channel>', 'daemon: the channel we call the host on; "none" to use --host-to-guest both ways (one serial line)', `virtio:${CHANNEL_NAMES.guestToHost}`);
addControlOptions(program, { socket: DEFAULT_GUEST_CONTROL_SOCKET, mode: 0o660, modeNote: '', groupNote: 'unset: the daemon\'s own group' });
addStreamOptions(addServingOptions(program, 'channel', 'the host'), 'the host', '[BIND:]PORT:SERVICE or unix:PATH:SERVICE')
  .addHelpText(
    'after',
    `
Examples:
  ${PROGRAM} --daemon                          serve the host (run under systemd or supervisord)
  ${PROGRAM} --list-commands                   what may this guest ask of the host?
  ${PROGRAM} --execute 'reboot-notify'         tell the host we are about to reboot
  echo data | ${PROGRAM} --execute 'store x'   stdin goes to the host command
  ${PROGRAM} --forward 6379:cache              127.0.0.1:6379 here reaches the host's service \`cache\`
  ${PROGRAM} --daemon --service web=tcp:127.0.0.1:80   let the host open this guest's web server

Exit status: the host command's own; 128+N when a signal N ended it; 124 when its --timeout ended it;
127 no such command on the host; 126 it could not be run; 130 interrupted (Ctrl-C cancels it on the host);
255 negotiator failed (no channel, host agent not answering); 2 usage error.
The daemon logs to stderr; see the README for set-up, security and troubleshooting.`,
  )
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

// Subcommands record what to run; without one, the options above do the work (the root's action is empty).
let subcommand: (() => Promise<number>) | undefined;
const io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
program.action(() => {});
program
  .command('doctor')
  .description('check virtio_console, the ports by name, their devices, the guest daemon and the host; one line per check')
  .addOption(new Option('--sys-root <dir>', 'where sysfs is (tests)').default('/sys').hideHelp())
  .addOption(new Option('--dev-root <dir>', 'where the device nodes are (tests)').default('/dev').hideHelp())
  .addOption(new Option('--proc-root <dir>', 'where procfs is (tests)').default('/proc').hideHelp())
  .addHelpText('after', `\nAlso: --host-to-guest, --guest-to-host, --control-socket, --timeout, --json.\nLines: ok|warn|FAIL  <what>  <fix>. Exit status 0 when nothing FAILs, 1 otherwise.`)
  .action((options: { sysRoot: string; devRoot: string; procRoot: string }) => {
    const root = program.opts();
    subcommand = () =>
      runGuestDoctor({ ...options, hostToGuest: root.hostToGuest, guestToHost: root.guestToHost, controlSocket: root.controlSocket, timeoutMs: root.timeout, json: root.json }, io);
  });

// Not awaited: runMain never rejects, and a top-level await would keep the single executables' bundle
// (CommonJS, packaging/sea.ts) from building.
void runMain(program, PROGRAM, (parsed) =>
  subcommand?.() ?? runGuestCli(
    {
      daemon: Boolean(parsed.daemon),
      listCommands: Boolean(parsed.listCommands),
      execute: parsed.execute,
      wait: Boolean(parsed.wait),
      characterDevice: parsed.characterDevice,
      hostToGuest: parsed.hostToGuest,
      guestToHost: parsed.guestToHost,
      ...clientOptionsOf(parsed),
      ...controlOptionsOf(parsed),
      ...servingOptionsOf(parsed),
      ...streamOptionsOf(parsed),
    },
    io,
  ),
);
