// The serving side of execute on memory channels: exact bytes of the output lines it builds itself.
import t from 'tap';
import { createCommandRegistry } from '../../../common/commands/registry.js';
import { registerExecuteServer } from '../../../common/execute/server.js';
import { executeRemote } from '../../../common/execute/client.js';
import { createPeerPair } from '../../helpers/agents.js';
import { FIXTURE_COMMANDS } from '../../helpers/socket-agent.js';

t.test('execute.output lines are exactly what JSON.stringify would write', async (t) => {
  const { host, guest, guestEnd } = createPeerPair();
  const registry = createCommandRegistry({ directories: [FIXTURE_COMMANDS], watch: false });
  t.teardown(async () => {
    await Promise.all([host.close(), guest.close()]);
    await registry.close();
  });
  registerExecuteServer(guest, { side: 'guest', commands: registry });
  host.start();
  guest.start();
  const out: Buffer[] = [];
  await executeRemote(host, { command: 'echo-args', args: ['"quoted" \\ and é'], stdout: (c) => void out.push(c) });
  t.equal(Buffer.concat(out).toString(), '"quoted" \\ and é\n');
  const lines = Buffer.concat(guestEnd.written).toString('utf8').split('\n').filter((l) => l.includes('execute.output'));
  t.equal(lines.length, 1);
  const parsed = JSON.parse(lines[0]!) as { params: { data: string } };
  t.equal(lines[0], JSON.stringify(parsed), 'byte for byte the canonical serialisation');
  t.equal(Buffer.from(parsed.params.data, 'base64').toString(), '"quoted" \\ and é\n');
});
