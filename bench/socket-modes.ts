// One listening UNIX socket serves every scenario: a connection's first line names its mode, the server
// answers `ok`, and from then on the connection speaks that mode only. The preamble is outside every
// measurement; the RPC connection then carries exactly what a real agent connection carries.
import net from 'node:net';

/** What a benchmark connection speaks after the preamble. */
export const MODES = {
  /** A negotiator agent (RpcPeer + command service), as the daemons wire it. */
  rpc: 'rpc',
  /** Bare NDJSON: each request line is parsed and answered with a ping-shaped reply line. */
  echo: 'echo',
  /** Bare socket copy: each `{"bytes":N}` line is answered with N bytes written from memory. */
  source: 'source',
  /** Bare child copy: each `{"bytes":N}` line spawns `head -c N /dev/zero` piped into the socket. */
  childPipe: 'child-pipe',
  /** Bare spawn: each request line spawns /bin/true and is answered with its exit code. */
  spawn: 'spawn',
  /** Each line is answered with the server's `process.cpuUsage()` and its resident set size. */
  cpu: 'cpu',
} as const;
export type Mode = (typeof MODES)[keyof typeof MODES];

const MODE_VALUES: readonly string[] = Object.values(MODES);
const ACK = 'ok';
const MAX_PREAMBLE_BYTES = 64;

// Whether a preamble line names a mode.
export function isMode(value: string): value is Mode {
  return MODE_VALUES.includes(value);
}

// Read one line from a fresh socket; leave the socket paused with any bytes after the line put back.
function readFirstLine(socket: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let held = Buffer.alloc(0);
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
    };
    const onData = (chunk: Buffer): void => {
      held = Buffer.concat([held, chunk]);
      const end = held.indexOf(0x0a);
      if (end === -1) {
        if (held.length > MAX_PREAMBLE_BYTES) (cleanup(), reject(new Error(`no preamble line in the first ${held.length} bytes`)));
        return;
      }
      cleanup();
      socket.pause();
      if (end + 1 < held.length) socket.unshift(held.subarray(end + 1));
      resolve(held.subarray(0, end).toString('utf8'));
    };
    const onError = (error: Error): void => (cleanup(), reject(error));
    const onEnd = (): void => (cleanup(), reject(new Error('the connection ended before its preamble line')));
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('end', onEnd);
  });
}

// Server side: read the mode line of a new connection and acknowledge it. The socket is left paused.
export async function acceptMode(socket: net.Socket): Promise<Mode> {
  const line = await readFirstLine(socket);
  if (!isMode(line)) throw new Error(`unknown benchmark mode \`${line}\`; expected one of ${MODE_VALUES.join(', ')}`);
  socket.write(`${ACK}\n`);
  return line;
}

// Client side: connect to the benchmark server in `mode`. The socket is returned paused; resume it after
// attaching the listeners (bytes the server sent after its `ok` are kept).
export async function connectInMode(socketPath: string, mode: Mode): Promise<net.Socket> {
  const socket = net.connect({ path: socketPath });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => (socket.off('error', reject), resolve()));
    socket.once('error', reject);
  });
  socket.write(`${mode}\n`);
  const reply = await readFirstLine(socket);
  if (reply !== ACK) {
    socket.destroy();
    throw new Error(`the benchmark server answered \`${reply}\` to mode \`${mode}\`, expected \`${ACK}\``);
  }
  return socket;
}
