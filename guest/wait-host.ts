// `negotiator-guest --wait`: is the host's agent up yet? Through the guest daemon when one runs (it
// answers once both its channels completed their handshake), else by opening the channels here and
// handshaking on each, again until --timeout.
import { EXIT_CODES, type CliIo } from '../common/cli/actions.js';
import { connectToDaemon, runInterruptible, startClientPeer } from '../common/cli/client.js';
import type { Logger } from '../common/base/logger.js';
import { TimeoutError, errorMessage } from '../common/wire/errors.js';
import { METHODS, type AgentInfo } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import { describeGuestChannel, parseGuestChannelSpec } from './channel-spec.js';
import type { GuestCliOptions } from './run-guest.js';

const PROGRAM = 'negotiator-guest';
const RETRY_MS = 500;

export async function runGuestWait(options: GuestCliOptions, localInfo: Omit<AgentInfo, 'nonce'>, logger: Logger, io: CliIo): Promise<number> {
  let daemon: RpcPeer | undefined;
  return runInterruptible(
    PROGRAM,
    io,
    async (signal) => {
      if (options.characterDevice === undefined) {
        daemon = await connectToDaemon(options.controlSocket, { localInfo, requestTimeoutMs: options.timeoutMs, groupHint: 'add yourself to the group that owns it', peerTimeoutMs: options.peerTimeoutMs });
        if (daemon) {
          const timeoutMs = options.timeoutMs;
          await daemon.request(METHODS.agentWait, { timeoutMs }, { timeoutMs: timeoutMs === 0 ? 0 : timeoutMs + 5000, signal });
          return EXIT_CODES.ok;
        }
      }
      const specs = options.characterDevice !== undefined
        ? [parseGuestChannelSpec(options.characterDevice)]
        : [options.hostToGuest, options.guestToHost].filter((spec) => spec !== 'none').map((spec) => parseGuestChannelSpec(spec));
      const { openGuestChannel } = await import('./open-channel.js');
      const deadline = options.timeoutMs === 0 ? Infinity : Date.now() + options.timeoutMs;
      let reason = 'not tried yet';
      while (!signal.aborted && Date.now() < deadline) {
        const missing: string[] = [];
        for (const spec of specs) {
          const left = Math.max(1, Math.min(deadline - Date.now(), 5000));
          let peer: RpcPeer | undefined;
          try {
            const channel = await openGuestChannel(spec, { logger: logger.child('channel'), timeoutMs: left, signal });
            peer = startClientPeer(channel, { localInfo, label: 'the host', requestTimeoutMs: left, peerTimeoutMs: options.peerTimeoutMs });
            await peer.waitForReady(left, signal);
          } catch (error) {
            missing.push(`${describeGuestChannel(spec)}: ${errorMessage(error)}`);
          } finally {
            await peer?.close();
          }
        }
        if (missing.length === 0) return EXIT_CODES.ok;
        reason = missing.join('; ');
        await new Promise((resolve) => setTimeout(resolve, Math.min(RETRY_MS, Math.max(0, deadline - Date.now()))));
      }
      if (signal.aborted) return EXIT_CODES.interrupted;
      throw new TimeoutError(`the host is not ready after ${options.timeoutMs / 1000} s: ${reason}`, options.timeoutMs);
    },
    () => daemon?.close(),
  );
}
