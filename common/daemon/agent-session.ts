// common/daemon/: what both daemons share: the agent session on a channel, the channel keeper, the control
// socket, lifecycle and readiness, the serving and stream configuration, the daemon start.
//
// One agent's end of one channel, as the daemons use it: an RpcPeer, optionally serving commands,
// announcing itself when the handshake completes, logging the other agent's lifecycle, and a graceful stop.
import type { ByteChannel } from '../wire/byte-channel.js';
import { registerExecuteServer, type ExecuteServer, type ExecuteServerOptions } from '../execute/server.js';
import { errorMessage } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';
import { METHODS, isRecord, type AgentInfo, type StoppingParams } from '../wire/protocol.js';
import { RpcPeer, type PeerOptions } from '../wire/rpc-peer.js';
import { registerStreamService, type StreamServiceOptions } from '../streams/server.js';

export interface AgentSessionOptions {
  channel: ByteChannel;
  /** Names the channel in logs: `guest vm1 (negotiator-guest-to-host.0)`. */
  label: string;
  localInfo: Omit<AgentInfo, 'nonce'>;
  logger: Logger;
  /** Serve `commands.list` and `execute` on this channel with these options. */
  serve?: Omit<ExecuteServerOptions, 'logger'>;
  /** Serve this side's services (`stream.open`) on this channel. */
  streams?: Omit<StreamServiceOptions, 'logger'>;
  /** Send `agent.started` each time a handshake completes. */
  announce?: boolean;
  peer?: Partial<Omit<PeerOptions, 'localInfo' | 'label' | 'logger'>>;
  /** The other agent's lifecycle as seen on this channel (for the host's `--events`). */
  onEvent?: (kind: AgentEventKind, detail: string) => void;
}

/** `ready`: handshake done; `started`/`stopping`: what the other agent announced; `lost`: the session ended without a close. */
export type AgentEventKind = 'ready' | 'started' | 'stopping' | 'lost' | 'closed';

/** A running session. `stop()` is idempotent. */
export interface AgentSession {
  readonly peer: RpcPeer;
  readonly service: ExecuteServer | undefined;
  /** Tell the other side we stop, give running commands `graceMs` to finish, cancel the rest, close. */
  stop(reason: string, graceMs: number): Promise<void>;
}

// Describe an agent in one short phrase for logs.
export function describeAgent(info: AgentInfo): string {
  const os = [info.os.distributor, info.os.release].filter(Boolean).join(' ') || `${info.os.type} ${info.os.version}`.trim();
  return `${info.name} ${info.version} on ${info.os.hostname || '(unknown host)'} (${os}, protocol ${info.protocol})`;
}

// Create the peer, register the services, start the handshake.
export function startAgentSession(options: AgentSessionOptions): AgentSession {
  const log = options.logger;
  const peer = new RpcPeer(options.channel, { ...options.peer, localInfo: options.localInfo, label: options.label, logger: log });
  const service = options.serve ? registerExecuteServer(peer, { ...options.serve, logger: log }) : undefined;
  const streams = options.streams ? registerStreamService(peer, { ...options.streams, logger: log }) : undefined;
  peer.on('ready', (info: AgentInfo, restarted: boolean) => {
    log.info(`${restarted ? 'new session with' : 'connected to'} the ${info.side} agent: ${describeAgent(info)}`);
    options.onEvent?.('ready', describeAgent(info));
    if (options.announce) void peer.notify(METHODS.agentStarted, peer.localInfo);
  });
  peer.on('close', (error?: Error) => {
    log.debug(`session closed: ${error ? errorMessage(error) : 'closed'}`);
    options.onEvent?.('closed', error ? errorMessage(error) : 'closed');
  });
  peer.on('session-lost', (error: Error) => options.onEvent?.('lost', errorMessage(error)));
  peer.onNotification(METHODS.agentStarted, (params) => {
    const info = isRecord(params) && isRecord(params.os) ? (params as unknown as AgentInfo) : undefined;
    log.info(`the ${info?.side ?? 'other'} agent started: ${info ? describeAgent(info) : '(no details)'}`);
    options.onEvent?.('started', info ? describeAgent(info) : '(no details)');
  });
  peer.onNotification(METHODS.agentStopping, (params) => {
    const reason = isRecord(params) && typeof params.reason === 'string' ? params.reason.slice(0, 200) : 'no reason given';
    log.info(`the ${peer.peerInfo?.side ?? 'other'} agent is stopping: ${reason}`);
    options.onEvent?.('stopping', reason);
    // Its streams cannot outlive it (a reboot): end them now, not when its successor says hello.
    streams?.peerStopping(reason);
  });
  peer.start();
  let stopping: Promise<void> | undefined;
  return {
    peer,
    service,
    stop(reason, graceMs) {
      stopping ??= (async () => {
        if (peer.isReady) {
          const params: StoppingParams = { reason };
          // Bounded: a peer that does not read must not hold the shutdown.
          await Promise.race([peer.notify(METHODS.agentStopping, params), new Promise((resolve) => setTimeout(resolve, 500).unref())]);
        }
        if (service && !(await service.idle(graceMs))) {
          log.warn(`${service.running} command(s) still running after the ${graceMs} ms grace period: canceling them`);
          service.cancelAll(`the ${options.localInfo.side} agent is stopping`);
          await service.idle(graceMs);
        }
        await peer.close();
      })();
      return stopping;
    },
  };
}
