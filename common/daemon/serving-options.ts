// The serving options both daemons take, as the CLIs parse them: a leaf (types and one default), so that
// the CLIs' option parsing does not load the daemon's modules.
import type { LogLevel } from '../base/logger.js';
import type { ServiceSpec } from '../streams/address.js';

/** The user's command directory, as Negotiator's. */
export const DEFAULT_COMMAND_DIRECTORY = '/usr/lib/negotiator/commands';

/** The daemon options both CLIs share, as parsed (see common/cli/options.ts addServingOptions for their meaning and defaults). */
export interface ServingOptions {
  commandsDir?: string[];
  builtinCommands: boolean;
  maxConcurrent: number;
  maxQueued: number;
  maxCommandTimeMs: number;
  maxOutputBytes: number;
  killGraceMs: number;
  prespawn: number;
  rlimits: string[];
  runAs?: string;
  maxLineBytes: number;
  graceMs: number;
  logLevel: LogLevel;
  /** --peer-timeout: silence of the other agent, while requests wait, after which they fail. */
  peerTimeoutMs: number;
}

/** The stream options both CLIs share, as parsed (see common/cli/stream-options.ts for their meaning). */
export interface StreamCliOptions {
  services: ServiceSpec[];
  servicesDir?: string[];
  maxStreams: number;
  streamIdleTimeoutMs: number;
  forward: string[];
  connect?: string;
}
