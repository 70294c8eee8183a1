// The doctors' daemon check, the same on both sides: does a daemon answer on the control socket, and
// what is its status? Yields one `ok|warn|fail` line and, when the daemon answers, a peer that the
// later checks ask through (QEMU and the guest's ports serve one client: the daemon holds them).
import { errorMessage } from '../wire/errors.js';
import { METHODS, type AgentInfo } from '../wire/protocol.js';
import type { RpcPeer } from '../wire/rpc-peer.js';
import { connectToDaemon } from './client.js';
import type { DoctorCheck } from './doctor-report.js';

export interface DaemonCheckOptions<S> {
  /** The check's id and how its lines name the daemon: `host-daemon` / `host daemon`. */
  id: string;
  noun: string;
  controlSocket: string;
  localInfo: Omit<AgentInfo, 'nonce'>;
  timeoutMs: number;
  /** How to gain access when the socket refuses us (connectToDaemon's hint). */
  groupHint: string;
  fixes: { access: string; absent: string; restart: string };
  /** More of the status for the ok line (`, 3 guests`). */
  describe?: (status: S) => string;
}

/** A daemon that answered: its status, and the peer to ask it more (the caller closes it). */
export interface DaemonView<S> {
  peer: RpcPeer;
  status: S;
}

// Ask the daemon for its status; push one check; undefined when no daemon can be asked.
export async function checkDaemon<S extends { agent: AgentInfo }>(options: DaemonCheckOptions<S>, checks: DoctorCheck[]): Promise<DaemonView<S> | undefined> {
  const { id, noun, controlSocket: socket, fixes } = options;
  let peer: RpcPeer | undefined;
  try {
    peer = await connectToDaemon(socket, { localInfo: options.localInfo, requestTimeoutMs: options.timeoutMs, groupHint: options.groupHint });
  } catch (error) {
    checks.push({ id, status: 'fail', what: `cannot use the ${noun}'s control socket: ${errorMessage(error)}`, fix: fixes.access });
    return undefined;
  }
  if (!peer) {
    checks.push({ id, status: 'warn', what: `no ${noun} answers at ${socket}`, fix: fixes.absent });
    return undefined;
  }
  let status: S;
  try {
    status = (await peer.request(METHODS.status, {}, { timeoutMs: options.timeoutMs })) as S;
  } catch (error) {
    await peer.close();
    checks.push({ id, status: 'fail', what: `the ${noun} at ${socket} does not answer: ${errorMessage(error)}`, fix: fixes.restart });
    return undefined;
  }
  const { agent } = status;
  checks.push({ id, status: 'ok', what: `${noun} answers at ${socket} (${agent.name} ${agent.version}, pid ${agent.pid}${options.describe?.(status) ?? ''})` });
  return { peer, status };
}
