// README.md's examples work as written: the blocks marked `<!-- readme-test: NAME -->` run through `sh`
// against a loopback "VM" (examples/demo/loopback-vm.ts) with the built CLIs on PATH; the reference tables
// match --help, the exit codes and the command environment exactly; every option an example uses exists;
// every relative link leads to a file.
import t from 'tap';
import { execa, type ResultPromise } from 'execa';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildCommandEnv } from '../../common/commands/env.js';
import { EXIT_CODES } from '../../common/cli/actions.js';
import { EXAMPLE_COMMANDS, PACKAGE_ROOT } from '../../examples/demo/demo-daemons.js';
import { startLoopbackVm } from '../../examples/demo/loopback-vm.js';
import { GUEST_CLI, HOST_CLI, LAUNCHERS, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const README = readFileSync(path.join(PACKAGE_ROOT, 'README.md'), 'utf8');
const PROGRAMS = { 'negotiator-host': HOST_CLI, 'negotiator-guest': GUEST_CLI } as const;

// The fenced block or table right after `<!-- readme-test: NAME -->`.
function marked(name: string): string {
  const at = README.indexOf(`<!-- readme-test: ${name} -->\n`);
  if (at < 0) throw new Error(`README.md has no block marked readme-test: ${name}`);
  const rest = README.slice(at).split('\n').slice(1);
  if (rest[0]?.startsWith('```')) return rest.slice(1, rest.indexOf('```', 1)).join('\n') + '\n';
  const table: string[] = [];
  for (const line of rest) {
    if (!line.startsWith('|')) break;
    table.push(line);
  }
  return table.join('\n');
}

// Rows of a markdown table (header and separator dropped), cells trimmed.
function tableRows(table: string): string[][] {
  return table
    .split('\n')
    .slice(2)
    .map((line) => line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim()));
}

interface HelpOption {
  flags: string;
  description: string;
  defaultValue: string | undefined;
}

// The options `--help` lists, with commander's `(default: ...)` when it shows one.
async function readHelpOptions(program: keyof typeof PROGRAMS): Promise<HelpOption[]> {
  const help = (await runCli(PROGRAMS[program], ['--help'])).stdout;
  const section = help.slice(help.indexOf('Options:\n') + 'Options:\n'.length, help.indexOf('\n\n', help.indexOf('Options:\n')));
  const entries: string[] = [];
  for (const line of section.split('\n')) {
    if (/^ {2}-/.test(line)) entries.push(line.trim());
    else entries[entries.length - 1] += ` ${line.trim()}`;
  }
  return entries.map((entry) => {
    const [, flags = '', rest = ''] = /^(.+?)\s{2,}(.*)$/.exec(entry) ?? [];
    const defaultMatch = /\s*\(default: (.*)\)$/.exec(rest);
    return {
      flags,
      description: defaultMatch ? rest.slice(0, defaultMatch.index) : rest,
      defaultValue: defaultMatch ? defaultMatch[1]!.replace(/^"(.*)"$/, '$1') : undefined,
    };
  });
}

t.test('the first commands are `npm install && npm run demo` and `npm test`, and they are wired', async (t) => {
  const firstBlock = /```sh\n([\s\S]*?)```/.exec(README)?.[1];
  t.equal(firstBlock, 'npm install && npm run demo\nnpm test\n');
  const scripts = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  // test/examples/demo.test.ts runs what `npm run demo` runs after the build.
  t.equal(scripts.demo, 'npm run build && node dist/examples/demo/demo.js');
  t.ok(existsSync(path.join(PACKAGE_ROOT, 'dist', 'examples', 'demo', 'demo.js')));
  t.same([scripts.pretest, scripts.test], ['npm run build', 'node test/run-tests.mjs']);
  // test/examples/bundle.test.ts builds what `npm run bundle` builds, with the same function.
  t.equal(scripts.bundle, 'npm run build && node dist/examples/bundle/build-bundle.js');
});

for (const program of Object.keys(PROGRAMS) as Array<keyof typeof PROGRAMS>) {
  t.test(`the ${program} reference lists every option of --help with its default, and no other`, async (t) => {
    const help = await readHelpOptions(program);
    const rows = tableRows(marked(`options ${program}`));
    // Default cells without their backticks: `10` and 10 read the same.
    const documented = new Map(rows.map(([flags = '', defaultValue = '']) => [flags.replace(/^`|`$/g, ''), defaultValue.replace(/^`(.*)`$/, '$1')]));
    t.same([...documented.keys()].sort(), help.map((o) => o.flags).sort(), 'the same options');
    for (const option of help) {
      const cell = documented.get(option.flags);
      if (cell === undefined) continue;
      const takesValue = /[<[]/.test(option.flags);
      if (option.defaultValue === undefined || option.defaultValue === 'false') {
        // No default shown: a flag is off; a valued option has none, or says its default in the description.
        const inDescription = /default (\S+?)\)?$/.exec(option.description)?.[1];
        const expected = !takesValue ? 'off' : (inDescription ?? 'none');
        t.equal(cell, expected, `${option.flags}: ${cell}`);
      } else if (option.defaultValue === '[]') {
        t.equal(cell, 'none', `${option.flags}: a repeatable option, none by default`);
      } else {
        t.equal(cell, option.defaultValue, `${option.flags}: default ${option.defaultValue}`);
      }
    }
  });
}

t.test('the exit status table has every code the CLIs use', async (t) => {
  const codes = tableRows(marked('exit-codes')).map(([status = '']) => status);
  t.same(codes, [...new Set(Object.values(EXIT_CODES).map(String)), '128+N'].sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10)));
});

t.test('the environment table names exactly the variables commands get', async (t) => {
  const documented = tableRows(marked('environment')).map(([name = '']) => name.replace(/`/g, ''));
  const env = buildCommandEnv({
    side: 'host',
    command: 'x',
    requestId: 1,
    peer: {
      protocol: 1, name: 'negotiator', version: '0', side: 'guest', capabilities: [], nonce: 'n'.repeat(8), pid: 1,
      os: { type: 'Linux', version: '6', hostname: 'g', distributor: 'debian', release: '12', codename: 'bookworm' },
    },
    channel: 'c',
    timeoutSeconds: 10,
  });
  // The host daemon adds these two (host/daemon.ts, extraEnv).
  t.same(documented.sort(), [...Object.keys(env), 'NEGOTIATOR_GUEST', 'NEGOTIATOR_GUEST_UUID'].sort());
});

t.test('every option a README example gives to negotiator-host or negotiator-guest exists', async (t) => {
  const known = {
    'negotiator-host': (await readHelpOptions('negotiator-host')).flatMap((o) => o.flags.split(/,\s*|\s+/).filter((f) => f.startsWith('-'))),
    'negotiator-guest': (await readHelpOptions('negotiator-guest')).flatMap((o) => o.flags.split(/,\s*|\s+/).filter((f) => f.startsWith('-'))),
  };
  let checked = 0;
  for (const [, body] of README.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of body!.split('\n')) {
      const match = /(?:^|[|;&]\s*|sudo\s+)(negotiator-(?:host|guest))\s+(.*)$/.exec(line.replace(/#.*$/, ''));
      if (!match) continue;
      checked++;
      for (const word of match[2]!.split(/\s+/).filter((w) => /^--?[a-z]/.test(w))) {
        t.ok(known[match[1] as keyof typeof known].includes(word.replace(/=.*$/, '')), `${match[1]} ${word} (in: ${line.trim()})`);
      }
    }
  }
  t.ok(checked >= 15, `${checked} example lines checked`);
});

t.test('every relative link in the README leads to a file or folder', async (t) => {
  // libvirt/ comes from another change (see the README's "libvirt set-up helper" section).
  for (const [, target] of README.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
    if (/^[a-z]+:/.test(target!)) continue;
    if (target!.startsWith('libvirt/') && !existsSync(path.join(PACKAGE_ROOT, target!))) {
      t.comment(`${target} is not there yet (written in another change)`);
      continue;
    }
    t.ok(existsSync(path.join(PACKAGE_ROOT, target!)), target!);
  }
  for (const [, anchor] of README.matchAll(/\]\(#([^)]+)\)/g)) {
    const headings = [...README.matchAll(/^#+ (.+)$/gm)].map(([, h]) => h!.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-'));
    t.ok(headings.includes(anchor!), `#${anchor}`);
  }
});

t.test('the marked examples run as written against a loopback guest', async (t) => {
  const work = mkdtempSync(path.join(os.tmpdir(), 'negotiator-readme-'));
  const children: ResultPromise[] = [];
  t.teardown(async () => {
    for (const child of children) child.kill('SIGTERM');
    await Promise.allSettled(children);
    await vm.close();
    rmSync(work, { recursive: true, force: true });
  });
  // The README's paths, moved into the temp directory.
  const guestDir = path.join(work, 'vm1');
  const hostCommands = path.join(work, 'host-commands');
  const localize = (script: string): string => script.split('/run/vm1').join(guestDir).split('/usr/lib/negotiator/commands').join(hostCommands);
  // PATH: the commands npm installs (the launchers) with this test's control sockets and the host's
  // command directories, then this node (the launchers run the `node` on PATH); sudo runs its arguments.
  // NODE_OPTIONS is dropped so that tap's process tracker stays out of the daemons.
  const bin = path.join(work, 'bin');
  mkdirSync(bin);
  const wrappers: Record<string, string> = {
    'negotiator-host': `exec env -u NODE_OPTIONS '${LAUNCHERS.host}' --control-socket '${work}/host.sock' --commands-dir '${hostCommands}' --commands-dir '${EXAMPLE_COMMANDS.host}' "$@"`,
    'negotiator-guest': `exec env -u NODE_OPTIONS '${LAUNCHERS.guest}' --control-socket '${work}/guest.sock' "$@"`,
    sudo: 'exec "$@"',
  };
  for (const [name, body] of Object.entries(wrappers)) {
    writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(bin, name), 0o755);
  }
  const env = { PATH: [bin, path.dirname(process.execPath), process.env.PATH ?? '/usr/bin:/bin'].join(':') };
  const runBlock = (name: string) => execa('sh', ['-ec', localize(marked(name))], { env, reject: false, stdin: 'ignore', timeout: 60_000, cwd: work });

  const vm = await startLoopbackVm(guestDir);
  const guestDaemon = startCli(GUEST_CLI, [
    '--daemon',
    '--host-to-guest', vm.guestChannels.hostToGuest,
    '--guest-to-host', vm.guestChannels.guestToHost,
    '--control-socket', path.join(work, 'guest.sock'),
    '--commands-dir', EXAMPLE_COMMANDS.guest,
  ]);
  children.push(guestDaemon);
  await waitForOutput(guestDaemon, /ready: control socket/, 20_000);

  await t.test('help', async (t) => {
    const result = await runBlock('help');
    t.equal(result.exitCode, 0, result.stderr);
    t.match(result.stdout, /^Usage: negotiator-host \[options\] \[command\] \[guest\]$/m);
    t.match(result.stdout, /^Usage: negotiator-guest \[options\] \[command\]$/m);
    const version = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    t.match(result.stdout, new RegExp(`\\n${version.replace(/\./g, '\\.')}$`), '--version');
  });

  await t.test('plain-qemu: the CLI straight to the guest\'s sockets', async (t) => {
    const result = await runBlock('plain-qemu');
    t.equal(result.exitCode, 0, result.stderr);
    t.match(result.stdout, /^kernel +Kernel name/m, '--list-commands');
    t.match(result.stdout, /^\d+$/m, '--execute uptime: whole seconds');
    const json = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { command: string; exitCode: number; stdout: string };
    t.match(json, { command: 'kernel', exitCode: 0, stdout: `${os.type()} ${os.release()} ${os.machine()}\n` }, '--json --execute kernel');
  });

  await t.test('plain-qemu-daemon, with-daemons and write-command: through the daemons, both ways', async (t) => {
    const daemonLine = localize(marked('plain-qemu-daemon')).trim();
    t.notMatch(daemonLine, /\n/, 'one daemon line');
    const hostDaemon = execa('sh', ['-c', `exec ${daemonLine}`], { env, reject: false, stdin: 'ignore', all: true, buffer: true });
    children.push(hostDaemon);
    // Ready once the host's list shows vm1's agent on both channels.
    let list = '';
    for (let attempt = 0; attempt < 100 && !/h2g:ready g2h:ready/.test(list); attempt++) {
      list = (await execa('sh', ['-c', 'negotiator-host --list-guests'], { env, reject: false })).stdout;
      if (!/h2g:ready g2h:ready/.test(list)) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    t.match(list, /^vm1 +negotiator \S+ .*h2g:ready g2h:ready$/m, 'the daemon serves vm1');

    const result = await runBlock('with-daemons');
    t.equal(result.exitCode, 0, result.stderr);
    t.match(result.stdout, /^NAME +AGENT +CHANNELS\nvm1 +negotiator /m, '--list-guests');
    t.match(result.stdout, new RegExp(`^${os.type()} ${os.release().replace(/[.+]/g, '\\$&')} `, 'm'), '--execute kernel vm1');
    t.match(result.stdout, /^NEGOTIATOR_PEER_SIDE=host$/m, 'who-is-calling in the guest');
    t.match(result.stdout, /^ok +vm1: the agent answers through the host daemon/m, 'doctor');
    t.notMatch(result.stdout, /^FAIL/m, 'doctor: nothing fails');
    t.match(result.stdout, /^reboot-notify +A guest tells the host/m, 'the guest lists the host\'s commands');
    t.match(result.stdout, /acknowledges: guest vm1 may reboot/, 'reboot-notify knows the guest by its --guest name');

    const written = await runBlock('write-command');
    t.equal(written.exitCode, 0, written.stderr);
    t.equal(written.stdout, 'hello vm1, you said: good morning', 'the new command runs at once, no restart');
    t.ok(existsSync(path.join(hostCommands, 'greet')));
  });
});
