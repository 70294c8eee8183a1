// The package's public API, imported by its name as an integrator would (package.json `exports`).
import t from 'tap';
import { startSocketAgent } from '../helpers/socket-agent.js';

t.test("import 'kvm-negotiator': connectPeer, executeRemote, list, errors", async (t) => {
  const api = await import('kvm-negotiator');
  const agent = await startSocketAgent();
  t.teardown(() => agent.close());
  const peer = await api.connectPeer(agent.socketPath, { side: 'host', timeoutMs: 5000 });
  t.teardown(() => peer.close());
  t.equal(peer.peerInfo?.side, 'guest');
  const out: Buffer[] = [];
  const result = await api.executeRemote(peer, { command: 'echo-args', args: ['from the library'], stdout: (chunk) => void out.push(chunk) });
  t.equal(result.exitCode, 0);
  t.match(Buffer.concat(out).toString(), /from the library/);
  const listed = (await peer.request(api.METHODS.listCommands, {})) as { commands: Array<{ name: string }> };
  t.ok(listed.commands.some((c) => c.name === 'echo-args'));
  await t.rejects(api.executeRemote(peer, { command: 'no-such-command' }), { name: 'RpcError', code: api.ERROR_CODES.commandNotFound });
  await t.rejects(api.connectPeer(agent.socketPath, { side: 'neither' as 'host' }), { name: 'ConfigError', message: /`side`/ });
});
