// One agent's end of one channel, as the daemons use it: an RpcPeer, optionally serving commands,
// announcing itself when the handshake completes, logging the other agent's lifecycle, and a graceful stop.
import type { ByteChannel } from '../wire/byte-channel.js';
import { registerExecuteServer, type ExecuteServer, type ExecuteServerOptions } from '../execute/server.js';
import { errorMessage } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';
import { METHODS, isRecord, type AgentInfo, type StoppingParams } from '../wire/protocol.js';
import { RpcPeer, type PeerOptions } from '../wire/rpc-peer.js';

export interface AgentSessionOptions {
  channel: ByteChannel;
  /** Names the channel in logs: `guest vm1 (negotiator-guest-to-host.0)`. */
  label: string;
  localInfo: Omit<AgentInfo, 'nonce'>;
  logger: Logger;
  /** Serve `commands.list` and `execute` on this channel with these options. */
  serve?: Omit<ExecuteServerOptions, 'logger'>;
  /** Send `agent.started` each time a handshake completes. */
  announce?: boolean;
  peer?: Partial<Omit<PeerOptions, 'localInfo' | 'label' | 'logger'>>;
}

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
  peer.on('ready', (info: AgentInfo, restarted: boolean) => {
    log.info(`${restarted ? 'new session with' : 'connected to'} the ${info.side} agent: ${describeAgent(info)}`);
    if (options.announce) void peer.notify(METHODS.agentStarted, peer.localInfo);
  });
  peer.on('close', (error?: Error) => log.debug(`session closed: ${error ? errorMessage(error) : 'closed'}`));
  peer.onNotification(METHODS.agentStarted, (params) => {
    const info = isRecord(params) && isRecord(params.os) ? (params as unknown as AgentInfo) : undefined;
    log.info(`the ${info?.side ?? 'other'} agent started: ${info ? describeAgent(info) : '(no details)'}`);
  });
  peer.onNotification(METHODS.agentStopping, (params) => {
    const reason = isRecord(params) && typeof params.reason === 'string' ? params.reason.slice(0, 200) : 'no reason given';
    log.info(`the ${peer.peerInfo?.side ?? 'other'} agent is stopping: ${reason}`);
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
