// How a CLI reaches the other side: through its daemon's control socket when one answers, otherwise by
// opening the channel itself. Also the common run shape: Ctrl-C cancels, errors print one clear line,
// and the exit code is returned (never thrown).
import { access } from 'node:fs/promises';
import type { ByteChannel } from '../wire/byte-channel.js';
import { EXIT_CODES, exitCodeOfError, formatCliError, runExecuteAction, runListAction, type CliIo } from './actions.js';
import type { ClientOptions } from './options.js';
import { ChannelClosedError } from '../wire/errors.js';
import type { AgentInfo } from '../wire/protocol.js';
import { RpcPeer } from '../wire/rpc-peer.js';
import { connectChannel } from '../wire/stream-channel.js';

export interface ClientConnection {
  peer: RpcPeer;
  /** True when the peer is the local daemon (requests are relayed), false when it is the other side itself. */
  viaDaemon: boolean;
}

// Connect to the daemon's control socket; undefined when no daemon runs there (no socket, or refused).
export async function connectToDaemon(socketPath: string, options: DaemonConnectOptions): Promise<RpcPeer | undefined> {
  const { groupHint, ...peerOptions } = options;
  try {
    await access(socketPath);
  } catch {
    return undefined;
  }
  let channel: ByteChannel;
  try {
    channel = await connectChannel(socketPath, 2000);
  } catch (error) {
    const code = ((error as Error).cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') return undefined;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new ChannelClosedError(`permission denied on the daemon's control socket ${socketPath}: run as root, or ${groupHint}`);
    }
    throw error;
  }
  return startClientPeer(channel, { ...peerOptions, label: `the daemon (${socketPath})`, freshConnection: true });
}

export interface ClientPeerOptions {
  localInfo: Omit<AgentInfo, 'nonce'>;
  /** Who is at the other end, for messages: `guest vm1`, `the host`, `the daemon (PATH)`. */
  label: string;
  requestTimeoutMs: number;
  /** --peer-timeout (the peer's default when undefined). */
  peerTimeoutMs?: number | undefined;
  /** The channel is a new connection to a daemon's control socket: no half frame of an earlier session in it (peer-options.ts). */
  freshConnection?: boolean;
}

/** connectToDaemon's options: the peer's, and what to tell a user the socket refuses. */
export interface DaemonConnectOptions extends Omit<ClientPeerOptions, 'label' | 'freshConnection'> {
  /** How to get access, after "run as root, or": `add yourself to the group that owns it`. */
  groupHint: string;
}

// Start a peer for a CLI on an open channel. Hello retries are short (1 s, then every 2 s): a CLI lives
// seconds, yet an agent that missed the first hello (just starting, or reading stale bytes) still answers.
export function startClientPeer(channel: ByteChannel, options: ClientPeerOptions): RpcPeer {
  const { localInfo, label, requestTimeoutMs, peerTimeoutMs, freshConnection = false } = options;
  const peer = new RpcPeer(channel, { localInfo, label, requestTimeoutMs, helloRetryMs: 1000, maxHelloRetryMs: 2000, freshConnection, ...(peerTimeoutMs !== undefined ? { peerTimeoutMs } : {}) });
  peer.start();
  return peer;
}

// Run a CLI action with Ctrl-C canceling it; print failures as one line; resolve with the exit code.
export async function runClientAction(program: string, io: CliIo, connect: () => Promise<ClientConnection>, action: (connection: ClientConnection, signal: AbortSignal) => Promise<number>): Promise<number> {
  let connection: ClientConnection | undefined;
  return runInterruptible(
    program,
    io,
    async (signal) => {
      connection = await connect();
      return action(connection, signal);
    },
    // Let a cancel notification reach the wire before closing.
    () => connection?.peer.close(),
  );
}

// The shape of every CLI action: Ctrl-C aborts `signal` (exit 130), a failure prints one line and exits
// with its code, `cleanup` runs in every case.
export async function runInterruptible(program: string, io: CliIo, run: (signal: AbortSignal) => Promise<number>, cleanup?: () => Promise<void> | undefined): Promise<number> {
  const controller = new AbortController();
  const onInterrupt = (): void => controller.abort();
  process.once('SIGINT', onInterrupt);
  try {
    return await run(controller.signal);
  } catch (error) {
    io.stderr.write(formatCliError(program, error));
    return controller.signal.aborted ? EXIT_CODES.interrupted : exitCodeOfError(error);
  } finally {
    process.off('SIGINT', onInterrupt);
    await cleanup?.();
  }
}

/** What a client CLI was asked to do: list the other side's commands, or execute one. */
export interface ClientRequest extends ClientOptions {
  listCommands: boolean;
  execute?: string;
}

// List or execute through `connect` (runClientAction's shape); `viaDaemon` adds the daemon's routing
// params (the host's guest name) when the peer is the daemon rather than the other side itself.
export function runListOrExecute(program: string, io: CliIo, request: ClientRequest, connect: () => Promise<ClientConnection>, viaDaemon: { guest?: string } = {}): Promise<number> {
  return runClientAction(program, io, connect, async (connection, signal) => {
    const { peer } = connection;
    const target = connection.viaDaemon ? viaDaemon : {};
    const { timeoutMs, json } = request;
    if (request.listCommands) return runListAction({ peer, ...target, timeoutMs, json, io });
    return runExecuteAction({ peer, ...target, commandLine: request.execute ?? '', timeoutMs, json, forwardStdin: request.stdin, viaDaemon: connection.viaDaemon, io, signal });
  });
}
