// Option parsing at the edge, through real spawns of both CLIs where the defect was end to end.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { parseFileMode } from '../../../common/cli/options.js';
import { GUEST_CLI, HOST_CLI, runCli } from '../../helpers/spawn-cli.js';

t.test('parseFileMode takes octal modes up to 0777 and nothing else', async (t) => {
  t.same(['600', '0600', '0660', '0', '777'].map(parseFileMode), [0o600, 0o600, 0o660, 0, 0o777]);
  for (const bad of ['abc', '0o660', '0x1b0', '', '8', '-600', '1777', '06600', '6 60']) {
    t.throws(() => parseFileMode(bad), { code: 'commander.invalidArgument' }, bad);
  }
});

// Defect 4: `abc` became NaN and `0o660` mode 0, reaching chmod after the socket was listening.
t.test('a bad --control-mode is a usage error naming the option, before any socket exists', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'control-mode-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [cli, extra] of [[HOST_CLI, ['--no-libvirt']], [GUEST_CLI, ['--host-to-guest', `unix:${path.join(dir, 'none.sock')}`, '--guest-to-host', 'none']]] as const) {
    for (const mode of ['abc', '0o660']) {
      const socket = path.join(dir, `${path.basename(path.dirname(cli))}-${mode}.sock`);
      const run = await runCli(cli, ['--daemon', ...extra, '--control-socket', socket, '--control-mode', mode, '--commands-dir', dir], { timeoutMs: 20_000 });
      t.equal(run.exitCode, 2, `${cli} --control-mode ${mode}: exit 2`);
      t.match(run.stderr, new RegExp(`option '--control-mode <octal>' argument '${mode}' is invalid\\. expected an octal file mode`), 'the message names the option');
      t.notOk(existsSync(socket), 'no control socket was created');
    }
  }
  t.same(readdirSync(dir), [], 'nothing at all was created');
});
