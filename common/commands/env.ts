// The environment a command runs with: nothing inherited from the daemon, a fixed PATH and locale, and
// NEGOTIATOR_* variables that describe the caller (documented in README.md, "Environment of commands").
import { sanitizePeerText } from '../wire/agent-info.js';
import { COMMAND_PATH, commandHome } from './runner.js';
import type { AgentInfo, RequestId, Side } from '../wire/protocol.js';

export interface CommandEnvInput {
  /** The side running the command. */
  side: Side;
  command: string;
  requestId: RequestId;
  /** The caller, as it described itself in its hello (untrusted: sanitized here). */
  peer: AgentInfo;
  /** Name of the channel the request came in on (`negotiator-host-to-guest.0` or `negotiator-guest-to-host.0`). */
  channel: string;
  /** Seconds the command has before it is terminated; 0 = no deadline. */
  timeoutSeconds: number;
  /** Variables the wiring adds (the host: NEGOTIATOR_GUEST, NEGOTIATOR_GUEST_UUID). */
  extra?: Record<string, string>;
  /** HOME for the command (the `--run-as` user's); default the daemon user's. */
  home?: string;
}

// Build a command's complete environment.
export function buildCommandEnv(input: CommandEnvInput): Record<string, string> {
  const env: Record<string, string> = {
    PATH: COMMAND_PATH,
    LANG: 'C.UTF-8',
    HOME: input.home ?? commandHome(),
    NEGOTIATOR_SIDE: input.side,
    NEGOTIATOR_PEER_SIDE: input.peer.side,
    NEGOTIATOR_COMMAND: input.command,
    // The id is the peer's: an ESC or a NUL in it must not reach the command (a NUL would fail the spawn).
    NEGOTIATOR_REQUEST_ID: sanitizePeerText(String(input.requestId), 128),
    NEGOTIATOR_PEER_NAME: sanitizePeerText(input.peer.name, 64),
    NEGOTIATOR_PEER_VERSION: sanitizePeerText(input.peer.version, 64),
    NEGOTIATOR_PEER_HOSTNAME: sanitizePeerText(input.peer.os.hostname, 255),
    NEGOTIATOR_PEER_OS: sanitizePeerText(`${input.peer.os.type} ${input.peer.os.version}`.trim(), 128),
    NEGOTIATOR_CHANNEL: input.channel,
    NEGOTIATOR_TIMEOUT: String(input.timeoutSeconds),
  };
  if (input.peer.os.distributor) env.NEGOTIATOR_PEER_DISTRIBUTOR = sanitizePeerText(input.peer.os.distributor, 64);
  if (input.peer.os.release) env.NEGOTIATOR_PEER_RELEASE = sanitizePeerText(input.peer.os.release, 64);
  for (const [key, value] of Object.entries(input.extra ?? {})) env[key] = value;
  return env;
}
