// The service files of examples/services/: systemd units that systemd-analyze accepts and whose stop
// timeouts fit the daemons' own shutdown (from their --help defaults), the udev rule, supervisord programs.
import t from 'tap';
import { execa } from 'execa';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../examples/demo/demo-daemons.js';
import { GUEST_CLI, HOST_CLI, runCli } from '../helpers/spawn-cli.js';

const SERVICES = path.join(PACKAGE_ROOT, 'examples', 'services');
const SIDES = [
  { side: 'host', cli: HOST_CLI },
  { side: 'guest', cli: GUEST_CLI },
] as const;

// `key=value` lines of an INI-like file by section (comments dropped; a repeated key keeps every value).
function parseIni(text: string, comment: RegExp): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || comment.test(line)) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1]!, current);
      continue;
    }
    const match = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    if (!match || !current) throw new Error(`not a key=value line: ${raw}`);
    current.set(match[1]!, [...(current.get(match[1]!) ?? []), match[2]!]);
  }
  return sections;
}

// The daemon's `--grace` default, in seconds, from its --help.
async function graceSeconds(cli: string): Promise<number> {
  const help = (await runCli(cli, ['--help'])).stdout.replace(/\n\s+/g, ' ');
  const match = /--grace <seconds>.*?\(default: (\d+)\)/.exec(help);
  if (!match) throw new Error('no --grace default in --help');
  return Number(match[1]);
}

for (const { side, cli } of SIDES) {
  t.test(`negotiator-${side}.service: notify, restart on failure, stop times that fit --grace`, async (t) => {
    const unit = parseIni(readFileSync(path.join(SERVICES, `negotiator-${side}.service`), 'utf8'), /^[#;]/);
    const service = unit.get('Service')!;
    const get = (key: string): string | undefined => service.get(key)?.at(-1);
    t.same([get('Type'), get('NotifyAccess')], ['notify', 'all'], 'the daemon notifies through systemd-notify, a child process');
    t.equal(get('ExecStart'), `negotiator-${side} --daemon $NEGOTIATOR_${side.toUpperCase()}_OPTIONS`);
    t.equal(get('Restart'), 'on-failure');
    t.equal(get('KillMode'), 'mixed', 'SIGTERM to the daemon alone, so running commands get their grace');
    // The daemon exits by itself within 2 x grace + 10 s (common/daemon/lifecycle.ts, run-*.ts).
    const selfLimit = 2 * (await graceSeconds(cli)) + 10;
    t.ok(Number.parseInt(get('TimeoutStopSec') ?? '0', 10) > selfLimit, `TimeoutStopSec ${get('TimeoutStopSec')} > ${selfLimit} s`);
    for (const breaking of ['PrivateDevices', 'NoNewPrivileges', 'ProtectSystem', 'PrivateTmp', 'MemoryDenyWriteExecute', 'User', 'DynamicUser']) {
      t.notOk(service.has(breaking), `no ${breaking}: it would break the daemon or the root commands it runs`);
    }
    t.same(unit.get('Install')?.get('WantedBy'), ['multi-user.target'], 'systemctl enable starts it at boot');
  });

  t.test(`negotiator-${side}.conf (supervisord): SIGTERM to the daemon only, a stop wait that fits --grace`, async (t) => {
    const conf = parseIni(readFileSync(path.join(SERVICES, `negotiator-${side}.conf`), 'utf8'), /^;/);
    const program = conf.get(`program:negotiator-${side}`);
    t.ok(program, `[program:negotiator-${side}]`);
    const get = (key: string): string | undefined => program?.get(key)?.at(-1);
    t.equal(get('command'), `/usr/local/bin/negotiator-${side} --daemon`);
    t.same([get('stopsignal'), get('stopasgroup')], ['TERM', 'false']);
    t.ok(Number(get('stopwaitsecs')) > 2 * (await graceSeconds(cli)) + 10);
    t.equal(get('stdout_logfile'), `/var/log/negotiator-${side}.log`);
  });
}

t.test('the udev rule starts the guest service when the host-to-guest port appears', async (t) => {
  const rules = readFileSync(path.join(SERVICES, '90-negotiator-guest.rules'), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.startsWith('#'));
  t.same(rules, [
    'SUBSYSTEM=="virtio-ports", ATTR{name}=="negotiator-host-to-guest.0", TAG+="systemd", ENV{SYSTEMD_WANTS}+="negotiator-guest.service"',
  ]);
});

const analyze = await execa('systemd-analyze', ['--version'], { reject: false });
t.test('systemd-analyze verify accepts both units without a warning', { skip: analyze.exitCode === 0 ? false : 'systemd-analyze is not installed' }, async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'negotiator-units-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const names = SIDES.map(({ side }) => `negotiator-${side}.service`);
  for (const name of names) {
    // verify insists that ExecStart's program exists here; negotiator is not installed on this machine.
    const text = readFileSync(path.join(SERVICES, name), 'utf8').replace(/^ExecStart=negotiator-\w+ /m, 'ExecStart=/bin/true ');
    writeFileSync(path.join(dir, name), text);
  }
  const result = await execa('systemd-analyze', ['verify', ...names], { cwd: dir, reject: false, env: { SYSTEMD_LOG_COLOR: '0' } });
  t.equal(result.exitCode, 0, result.stderr);
  t.equal(result.stderr, '', 'no warnings (unknown keys, bad values)');
});
