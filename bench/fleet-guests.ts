// Simulated guests for the host-daemon benchmarks, in a process of their own so that their work does not
// count as the daemon's. Each guest is a directory holding QEMU-named sockets (negotiator-host-to-guest.0,
// negotiator-guest-to-host.0) whose connections are served by a guest agent session offering one command
// directory, as a real guest agent behind QEMU would be (the idea of test/helpers/fake-guests.ts).
// Usage: node dist/bench/fleet-guests.js --root DIR --commands DIR [--names a,b,c]
// stdout: {"ready": N} once the named guests listen; then one reply line per stdin line:
//   {"add": NAME} -> {"added": NAME, "atMs": E}: a guest started now (its directory created if missing);
//                    E is the wall clock (ms since the epoch) when both of its sockets were listening.
// Exits when stdin closes.
import { Command } from 'commander';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { mapConcurrently } from '../common/base/concurrency.js';
import { createCommandRegistry, type CommandRegistry } from '../common/commands/registry.js';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';
import { serveAgent } from './bench-agent.js';

interface FleetArgs {
  root: string;
  commands: string;
  names: string[];
}

// Start one guest: both sockets listening, each connection served as a guest agent named `name`.
async function startGuest(root: string, name: string, registry: CommandRegistry): Promise<number> {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  await Promise.all(
    [CHANNEL_NAMES.hostToGuest, CHANNEL_NAMES.guestToHost].map(
      (channel) =>
        new Promise<void>((resolve, reject) => {
          const server = net.createServer((socket) => void serveAgent(socket, registry, name));
          server.once('error', reject);
          server.listen(path.join(dir, channel), () => resolve());
        }),
    ),
  );
  return performance.timeOrigin + performance.now();
}

async function main(argv: string[]): Promise<number> {
  const args = new Command()
    .name('fleet-guests')
    .requiredOption('--root <dir>', 'directory of the guest directories')
    .requiredOption('--commands <dir>', 'command directory every guest offers')
    .option('--names <list>', 'guests to start at once, comma-separated', (v: string) => v.split(',').filter(Boolean), [] as string[])
    .parse(argv)
    .opts<FleetArgs>();
  const registry = createCommandRegistry({ directories: [args.commands], watch: false });
  await registry.ready;
  // A few at a time: hundreds of listen() calls at once gain nothing.
  await mapConcurrently(args.names, 50, (name) => startGuest(args.root, name, registry));
  process.stdout.write(JSON.stringify({ ready: args.names.length }) + '\n');

  let held = '';
  let chain: Promise<void> = Promise.resolve();
  process.stdin.setEncoding('utf8').on('data', (chunk: string) => {
    held += chunk;
    for (let end = held.indexOf('\n'); end !== -1; end = held.indexOf('\n')) {
      const line = held.slice(0, end);
      held = held.slice(end + 1);
      chain = chain
        .then(async () => {
          const request = JSON.parse(line) as { add?: unknown };
          if (typeof request.add !== 'string') throw new Error(`expected {"add": NAME}, got ${line}`);
          const atMs = await startGuest(args.root, request.add, registry);
          process.stdout.write(JSON.stringify({ added: request.add, atMs }) + '\n');
        })
        .catch((error: unknown) => {
          // The benchmark waits for a reply line: end the process so that it fails at once.
          process.stderr.write(`fleet-guests: ${error instanceof Error ? error.message : String(error)}\n`);
          process.exit(1);
        });
    }
  });
  await new Promise((resolve) => process.stdin.once('close', resolve));
  await chain;
  await registry.close();
  return 0;
}

main(process.argv).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`fleet-guests failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
