// Version skew, proven: the first release (0.1.0, commit 8cffb19) is built from git in a scratch
// directory and run against this build over a loopback "VM", both ways (host old / guest new, host new /
// guest old): list, execute in both directions with stdin and stdout, and a feature the old peer lacks
// fails saying it is too old and which release it needs. Needs the full history (CI clones with it).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { requireCapability } from '../../common/wire/capabilities.js';
import { connectChannel } from '../../common/wire/stream-channel.js';
import { RpcPeer } from '../../common/wire/rpc-peer.js';
import { CAPABILITIES } from '../../common/wire/protocol.js';
import { testAgentInfo } from '../helpers/agents.js';
import { startLoopbackVm } from '../helpers/loopback-vm.js';
import { FIXTURE_COMMANDS } from '../helpers/socket-agent.js';
import { DIST, GUEST_CLI, HOST_CLI, runCli, startCli, waitForOutput } from '../helpers/spawn-cli.js';

const FIRST_RELEASE = '8cffb19';
const REPO = path.resolve(DIST, '..');

// Build release 0.1.0 once per machine (kept in the temp directory, built aside and renamed into place).
function buildFirstRelease(): string {
  const present = spawnSync('git', ['-C', REPO, 'cat-file', '-e', `${FIRST_RELEASE}^{commit}`]);
  if (present.status !== 0) {
    throw new Error(
      `commit ${FIRST_RELEASE} (negotiator 0.1.0, the first release) is not in the clone at ${REPO}: the version-skew test builds it from git, ` +
        'so clone with the full history (`git fetch --unshallow`, or actions/checkout with `fetch-depth: 0`)',
    );
  }
  const dir = path.join(os.tmpdir(), `negotiator-release-0.1.0-${FIRST_RELEASE}`);
  if (existsSync(path.join(dir, '.built'))) return dir;
  const work = mkdtempSync(`${dir}.build-`);
  const run = (command: string, args: string[], what: string): void => {
    const result = spawnSync(command, args, { cwd: work, encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`building release 0.1.0 in ${work}: ${what} failed (${result.status}): ${result.stderr}${result.stdout}`);
  };
  run('sh', ['-c', `git -C "$1" archive ${FIRST_RELEASE} | tar -x -C "$2"`, 'sh', REPO, work], 'git archive | tar');
  symlinkSync(path.join(REPO, 'node_modules'), path.join(work, 'node_modules'));
  run(process.execPath, [path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(work, 'tsconfig.json')], 'tsc');
  writeFileSync(path.join(work, '.built'), `${FIRST_RELEASE}\n`);
  rmSync(dir, { recursive: true, force: true });
  try {
    renameSync(work, dir);
  } catch {
    // Another run renamed its build into place first: use that one.
    rmSync(work, { recursive: true, force: true });
  }
  return dir;
}

const old = buildFirstRelease();
const releases = {
  old: { host: path.join(old, 'dist', 'host', 'cli.js'), guest: path.join(old, 'dist', 'guest', 'cli.js'), version: '0.1.0' },
  new: { host: HOST_CLI, guest: GUEST_CLI, version: '0.2.0' },
} as const;

for (const [hostRelease, guestRelease] of [['old', 'new'], ['new', 'old']] as const) {
  t.test(`host ${releases[hostRelease].version} / guest ${releases[guestRelease].version}`, async (t) => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'negotiator-compat-'));
    const vm = await startLoopbackVm(path.join(root, 'vm1'));
    const hostControl = path.join(root, 'host.sock');
    const guestControl = path.join(root, 'guest.sock');
    const guest = startCli(releases[guestRelease].guest, [
      '--daemon', '--host-to-guest', vm.guestChannels.hostToGuest, '--guest-to-host', vm.guestChannels.guestToHost,
      '--control-socket', guestControl, '--commands-dir', FIXTURE_COMMANDS, '-v',
    ]);
    const host = startCli(releases[hostRelease].host, [
      '--daemon', '--no-libvirt', '--guest', `vm1=${vm.dir}`, '--control-socket', hostControl, '--commands-dir', FIXTURE_COMMANDS, '-v',
    ]);
    t.teardown(async () => {
      host.kill('SIGKILL');
      guest.kill('SIGKILL');
      await Promise.allSettled([host, guest]);
      await vm.close();
      rmSync(root, { recursive: true, force: true });
    });
    await waitForOutput(host, new RegExp(`guest vm1.*connected to the guest agent: negotiator ${releases[guestRelease].version.replace(/\./g, '\\.')} on`), 60_000);
    const hostCli = (args: string[], input?: string) =>
      runCli(releases[hostRelease].host, ['--control-socket', hostControl, '--no-libvirt', ...args], { timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) });
    const guestCli = (args: string[], input?: string) =>
      runCli(releases[guestRelease].guest, ['--control-socket', guestControl, ...args], { timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) });

    const list = await hostCli(['--list-commands', 'vm1']);
    t.equal(list.exitCode, 0, list.stderr);
    t.match(list.stdout, /cat-stdin/, 'the host lists the guest\'s commands');
    // Several chunks each way, so bulk data crosses in more than one message.
    const input = Array.from({ length: 20_000 }, (_, i) => `line ${i} of the input\n`).join('');
    const down = await hostCli(['--execute', 'cat-stdin', 'vm1'], input);
    t.equal(down.exitCode, 0, down.stderr);
    t.ok(down.stdout === input, `host to guest: ${input.length} bytes of stdin come back as stdout, exact`);
    const up = await guestCli(['--execute', 'cat-stdin'], input);
    t.equal(up.exitCode, 0, up.stderr);
    t.ok(up.stdout === input, `guest to host: ${input.length} bytes exact`);
    const failed = await hostCli(['--execute', 'exit-with 42', 'vm1']);
    t.equal(failed.exitCode, 42, 'a command\'s exit code passes through');

    // A feature the old side lacks fails before use, naming the release it needs.
    const oldControl = hostRelease === 'old' ? hostControl : guestControl;
    const peer = new RpcPeer(await connectChannel(oldControl, 5000), { localInfo: testAgentInfo(hostRelease === 'old' ? 'guest' : 'host', { capabilities: [...CAPABILITIES] }), label: 'the old daemon' });
    t.teardown(() => peer.close());
    peer.start();
    const info = await peer.waitForReady(10_000);
    t.equal(info.version, '0.1.0');
    t.throws(() => requireCapability(peer, 'streams', '0.2.0'), {
      name: 'RpcError',
      message: /^the (host|guest) agent on the old daemon \(negotiator 0\.1\.0\) is too old: it does not offer `streams`, which needs negotiator 0\.2\.0 or later; upgrade the (host|guest)'s negotiator to 0\.2\.0 or later$/,
    });
  });
}
