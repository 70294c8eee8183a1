// `negotiator-host --wait GUEST` (is the guest's agent up yet?) and `--events` (what happens to the guests,
// as it happens). --wait asks the daemon when one runs, else connects to the guest's channels itself;
// --events needs the daemon (it is the one that watches libvirt, QMP and the sessions).
import { EXIT_CODES, type CliIo } from '../common/cli/actions.js';
import { startClientPeer } from '../common/cli/client.js';
import { ChannelClosedError, TimeoutError, errorMessage } from '../common/wire/errors.js';
import { METHODS, isRecord, type AgentInfo } from '../common/wire/protocol.js';
import type { RpcPeer } from '../common/wire/rpc-peer.js';
import { connectChannel } from '../common/wire/stream-channel.js';
import { CHANNEL_ROLES, describeRole } from './guest-model.js';
import type { StaticGuestSpec } from './guest-specs.js';
import type { HostEvent } from './guest-watch.js';
import type { Virsh } from './virsh.js';

/** Between two tries of a guest that is not up yet, without a daemon. */
const RETRY_MS = 500;

// Through the daemon: it answers once both channels of the guest completed their handshake.
export async function waitViaDaemon(daemon: RpcPeer, guest: string, timeoutMs: number, signal: AbortSignal): Promise<number> {
  // The daemon keeps the deadline (and says what is missing at it); ours only covers a daemon that hangs.
  await daemon.request(METHODS.agentWait, { guest, timeoutMs }, { timeoutMs: timeoutMs === 0 ? 0 : timeoutMs + 5000, signal });
  return EXIT_CODES.ok;
}

export interface DirectWaitOptions {
  guest: string;
  staticGuests: readonly StaticGuestSpec[];
  virsh: Virsh | undefined;
  localInfo: Omit<AgentInfo, 'nonce'>;
  timeoutMs: number;
  peerTimeoutMs: number;
  signal: AbortSignal;
}

// Without a daemon: locate the guest and handshake on each of its channels, again until the deadline.
export async function waitDirectly(options: DirectWaitOptions): Promise<number> {
  const { locateGuest } = await import('./locate-guest.js');
  const deadline = options.timeoutMs === 0 ? Infinity : Date.now() + options.timeoutMs;
  let reason = 'not tried yet';
  while (!options.signal.aborted) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      const located = await locateGuest(options.guest, options.staticGuests, options.virsh);
      const missing: string[] = [];
      for (const role of CHANNEL_ROLES) {
        const label = describeRole(role);
        const endpoint = located.channels[role];
        if (!endpoint) continue;
        const problem = await handshake(endpoint.path, `guest ${options.guest} (${label})`, Math.min(left, 5000), options);
        if (problem) missing.push(`${label}: ${problem}`);
      }
      if (missing.length === 0) return EXIT_CODES.ok;
      reason = missing.join('; ');
    } catch (error) {
      reason = errorMessage(error);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(RETRY_MS, Math.max(0, deadline - Date.now()))));
  }
  if (options.signal.aborted) return EXIT_CODES.interrupted;
  throw new TimeoutError(`guest ${options.guest} is not ready after ${options.timeoutMs / 1000} s: ${reason}`, options.timeoutMs);
}

// Connect and complete a handshake; the reason it failed, or undefined.
async function handshake(path: string, label: string, timeoutMs: number, options: DirectWaitOptions): Promise<string | undefined> {
  let peer: RpcPeer | undefined;
  try {
    peer = startClientPeer(await connectChannel(path, Math.min(timeoutMs, 2000)), { localInfo: options.localInfo, label, requestTimeoutMs: timeoutMs, peerTimeoutMs: options.peerTimeoutMs });
    await peer.waitForReady(timeoutMs, options.signal);
    return undefined;
  } catch (error) {
    return errorMessage(error);
  } finally {
    await peer?.close();
  }
}

// Print the daemon's events until Ctrl-C (130) or the daemon goes away (255).
export async function followEvents(daemon: RpcPeer, json: boolean, io: CliIo, signal: AbortSignal): Promise<number> {
  const print = (params: Record<string, unknown>): void => {
    const event = isRecord(params.event) ? (params.event as unknown as HostEvent) : undefined;
    if (!event) return;
    io.stdout.write(json ? `${JSON.stringify(event)}\n` : `${formatEvent(event)}\n`);
  };
  const started = daemon.startRequest(METHODS.eventsFollow, {}, { timeoutMs: 0, signal, notifications: { [METHODS.eventsEvent]: print } });
  await started.response;
  throw new ChannelClosedError('the daemon ended the event stream');
}

/** `TIME GUEST EVENT [CHANNEL] DETAIL`, one line, for people and `grep`. */
export function formatEvent(event: HostEvent): string {
  return [event.time, event.guest, event.event, ...(event.channel ? [event.channel] : []), event.detail.replace(/\s+/g, ' ')].join(' ');
}
