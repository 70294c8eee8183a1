// The host side of the loopback stream benchmark (bench/stream-bench.ts), in a process of its own as a
// host daemon holding `--forward` listeners is: it listens on the channel socket (QEMU's place), takes the
// guest daemon's connection with the peer the daemons use, and holds one forward listener per service
// (common/streams/forward.ts, as `--forward` runs it). Prints `ready` once the guest has answered its hello
// and the listeners listen; ends when its stdin closes.
// Usage: node dist/bench/stream-host.js --channel PATH --forward unix:PATH:SERVICE [--forward ...]
import net from 'node:net';
import { parseForwardSpec } from '../common/streams/address.js';
import { openStream } from '../common/streams/client.js';
import { startForwarder } from '../common/streams/forward.js';
import { silentLogger } from '../common/base/logger.js';
import { readLocalAgentInfo } from '../common/wire/agent-info.js';
import { RpcPeer } from '../common/wire/rpc-peer.js';
import { createStreamChannel } from '../common/wire/stream-channel.js';

function values(argv: readonly string[], name: string): string[] {
  return argv.flatMap((arg, at) => (arg === name && at + 1 < argv.length ? [argv[at + 1]!] : []));
}

async function main(argv: readonly string[]): Promise<void> {
  const [channelPath] = values(argv, '--channel');
  const forwardSpecs = values(argv, '--forward');
  if (!channelPath || forwardSpecs.length === 0) throw new Error('usage: stream-host --channel PATH --forward unix:PATH:SERVICE [--forward ...]');
  const channelServer = net.createServer();
  const accepted = new Promise<net.Socket>((resolve) => channelServer.once('connection', resolve));
  await new Promise<void>((resolve, reject) => channelServer.once('error', reject).listen(channelPath, resolve));
  process.stdout.write('listening\n');
  const peer = new RpcPeer(createStreamChannel(await accepted, 'guest'), { localInfo: await readLocalAgentInfo('host'), label: 'guest' });
  peer.start();
  await peer.waitForReady(20_000);
  const forwards = await Promise.all(
    forwardSpecs.map((text) => {
      const spec = parseForwardSpec(text, false);
      return startForwarder({ spec, logger: silentLogger, target: spec.service, open: (signal) => openStream(peer, { service: spec.service, signal }) });
    }),
  );
  process.stdout.write('ready\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once('close', resolve));
  await Promise.all(forwards.map((forward) => forward.close()));
  await peer.close();
  channelServer.close();
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`stream-host failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
