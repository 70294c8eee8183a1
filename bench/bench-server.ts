// The benchmark server process: one listening UNIX socket; each connection picks a mode (see
// socket-modes.ts) and is served by the negotiator agent or by a bare baseline. Prints one JSON line
// `{"listening": path}` on stdout when ready; exits when its stdin closes (the benchmark ended or died).
// Usage: node dist/bench/bench-server.js --socket PATH --commands DIR [--prespawn N]
import { Command } from 'commander';
import net from 'node:net';
import { parseCount } from '../common/cli/options.js';
import { createCommandRegistry } from '../common/commands/registry.js';
import { serveAgent } from './bench-agent.js';
import { serveBaseline } from './baseline-server.js';
import { MODES, acceptMode } from './socket-modes.js';

interface ServerArgs {
  socket: string;
  commands: string;
  prespawn: number;
}

async function main(argv: string[]): Promise<number> {
  const args = new Command()
    .name('bench-server')
    .requiredOption('--socket <path>', 'UNIX socket to listen on')
    .requiredOption('--commands <dir>', 'command directory the agent serves')
    .option('--prespawn <n>', 'launchers the agent keeps ready (0 = none)', parseCount(true), 2)
    .parse(argv)
    .opts<ServerArgs>();
  const registry = createCommandRegistry({ directories: [args.commands], watch: false });
  await registry.ready;
  const server = net.createServer((socket) => {
    socket.on('error', () => {
      // A client that goes away mid-preamble: nothing to serve.
    });
    acceptMode(socket).then(
      (mode) => (mode === MODES.rpc ? void serveAgent(socket, registry, undefined, args.prespawn) : serveBaseline(socket, mode)),
      (error: unknown) => {
        process.stderr.write(`bench server: ${error instanceof Error ? error.message : String(error)}\n`);
        socket.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(args.socket, resolve));
  process.stdout.write(JSON.stringify({ listening: args.socket }) + '\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once('close', resolve));
  server.close();
  await registry.close();
  return 0;
}

main(process.argv).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench server failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
