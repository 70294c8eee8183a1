#!/usr/bin/env node
// negotiator-host: argument parsing only; the work is in run-host.ts.
import { Command, Option } from 'commander';
import { readPackageVersion } from '../common/wire/agent-info.js';
import { addClientOptions, addControlOptions, addServingOptions, clientOptionsOf, controlOptionsOf, parseTimeoutSeconds, runMain, servingOptionsOf } from '../common/cli/options.js';
import { addStreamOptions, streamOptionsOf } from '../common/cli/stream-options.js';
import { DEFAULT_HOST_CONTROL_SOCKET, PROGRAM, runHostCli, runHostDoctor, runHostSetup } from './run-host.js';

const program = new Command(PROGRAM)
  .description('Run commands inside KVM/QEMU guests, and serve the guests\' requests (--daemon).')
  .version(readPackageVersion(), '--version')
  .argument('[guest]', 'the guest (libvirt domain name, or a --guest NAME)')
  .option('-d, --daemon', 'serve every guest: keep their channels open, run their requests with the host\'s command directories')
  .option('-g, --list-guests', 'list the guests, with their agent\'s state')
  .option('-l, --list-commands', 'list the commands GUEST offers')
  .option('-e, --execute <command>', 'run a command in GUEST, e.g. --execute \'df -h /\' vm1 (split like a shell, no shell runs)')
  .option('-w, --wait', 'exit 0 as soon as GUEST\'s agent has answered on both channels (e.g. right after virsh start); 255 with the reason at --timeout')
  .option('--events', 'print one line per event until interrupted: guests appearing and going away, their agent starting, stopping or lost, resets, ports (needs the daemon; --json for JSON lines)');
addClientOptions(program, 'guests, list, execute, setup and doctor')
  .option('--guest <name=spec>', 'a guest that is not libvirt\'s (repeatable): NAME=DIR holding the two channel sockets, or NAME=h2g=PATH,g2h=PATH; add ,qmp=PATH (a QMP monitor socket of its own) to notice resets at once', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option('--no-libvirt', 'do not ask libvirt for guests (only --guest ones)')
  .option('--libvirt-uri <uri>', 'libvirt connection', 'qemu:///system')
  .addOption(new Option('--rescan <seconds>', 'daemon: safety-net rescan of libvirt and --guest sockets').default(30_000, '30').argParser(parseTimeoutSeconds));
addControlOptions(program, { socket: DEFAULT_HOST_CONTROL_SOCKET, mode: 0o600, modeNote: ' (0600: root only)', groupNote: 'mode becomes 0660' });
addStreamOptions(addServingOptions(program, 'guest channel', 'a guest'), 'guests', '[BIND:]PORT:SERVICE GUEST, unix:PATH:SERVICE GUEST; a daemon\'s: [BIND:]PORT:SERVICE@GUEST')
  .addHelpText(
    'after',
    `
Examples:
  ${PROGRAM} --daemon                       serve all guests (run under systemd or supervisord)
  ${PROGRAM} --list-guests                  which guests, is their agent up?
  ${PROGRAM} --list-commands vm1            what may the host ask of vm1?
  ${PROGRAM} --execute 'ip-addresses' vm1   run a guest command; its output streams here
  virsh start vm1 && ${PROGRAM} --wait --timeout 120 vm1    wait until vm1's agent answers
  ${PROGRAM} --events --json                follow guests and agents (JSON lines) until Ctrl-C
  ${PROGRAM} --guest vm1=/run/vm1 --execute uptime vm1     a plain QEMU guest (-chardev socket,server=on)
  ssh -o ProxyCommand='${PROGRAM} --connect ssh %h' root@vm1   ssh to vm1's service \`ssh\`, no network
  ${PROGRAM} --forward 8080:web vm1          http://127.0.0.1:8080/ reaches vm1's service \`web\`
  ${PROGRAM} --daemon --service 'cache=tcp:127.0.0.1:6379 guests=vm1'   offer a host service to vm1 only

Exit status: the guest command's own; 128+N when a signal N ended it; 124 when its --timeout ended it;
127 no such command in the guest; 126 it could not be run; 130 interrupted (Ctrl-C cancels it in the guest);
255 negotiator failed (unknown guest, no channel, guest agent not answering); 2 usage error.
See the README for set-up (libvirt/), security and troubleshooting.`,
  )
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

// Subcommands record what to run; without one, the options above do the work (the root's action is empty).
let subcommand: (() => Promise<number>) | undefined;
const io = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };
program.action(() => {});
program
  .command('setup')
  .description('add the two negotiator channels to a libvirt domain\'s persistent definition (idempotent)')
  .argument('<guest>', 'the libvirt domain')
  .option('--dry-run', 'print the channel XML that would be added; change nothing')
  .addHelpText('after', `\nAlso: --libvirt-uri, --json. The channels take effect after a full stop and start of the guest\n(virsh shutdown GUEST; virsh start GUEST), not a reboot. See libvirt/negotiator-channels.xml.`)
  .action((guest: string, options: { dryRun?: boolean }) => {
    const root = program.opts();
    subcommand = () => runHostSetup({ guestName: guest, dryRun: Boolean(options.dryRun), json: root.json, libvirtUri: root.libvirtUri }, io);
  });
program
  .command('doctor')
  .description('check libvirt, the guests\' channels, the host daemon and the guest agents; one line per check')
  .argument('[guest]', 'check only this guest (default: every running guest)')
  .addHelpText('after', `\nAlso: --libvirt-uri, --no-libvirt, --guest, --control-socket, --timeout, --json.\nLines: ok|warn|FAIL  <what>  <fix>. Exit status 0 when nothing FAILs, 1 otherwise.`)
  .action((guest: string | undefined) => {
    const root = program.opts();
    subcommand = () =>
      runHostDoctor({ guestName: guest, guest: root.guest, libvirt: root.libvirt, libvirtUri: root.libvirtUri, controlSocket: root.controlSocket, timeoutMs: root.timeout, json: root.json }, io);
  });

// Not awaited: runMain never rejects, and a top-level await would keep the single executables' bundle
// (CommonJS, packaging/sea.ts) from building.
void runMain(program, PROGRAM, (parsed) =>
  subcommand?.() ?? runHostCli(
    {
      daemon: Boolean(parsed.daemon),
      listGuests: Boolean(parsed.listGuests),
      listCommands: Boolean(parsed.listCommands),
      execute: parsed.execute,
      wait: Boolean(parsed.wait),
      events: Boolean(parsed.events),
      guestName: program.args[0],
      guest: parsed.guest,
      libvirt: parsed.libvirt,
      libvirtUri: parsed.libvirtUri,
      rescanIntervalMs: parsed.rescan,
      ...clientOptionsOf(parsed),
      ...controlOptionsOf(parsed),
      ...servingOptionsOf(parsed),
      ...streamOptionsOf(parsed),
    },
    io,
  ),
);
