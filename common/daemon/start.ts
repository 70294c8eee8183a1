// The daemon start both CLIs share: resolve the serving options (command directories, limits, --run-as)
// and the control socket's, start the side's daemon with them, and stop it on SIGTERM/SIGINT. The side
// passes only how to start its own daemon (host: guest discovery; guest: its channels).
import { setFlagsFromString } from 'node:v8';
import { createLogger, type Logger } from '../base/logger.js';
import { stopOnSignals } from './lifecycle.js';
import { startMemoryReturn } from './memory-return.js';
import { resolveServingConfig, type ServingConfig } from './serving-config.js';
import type { ServingOptions } from './serving-options.js';
import type { DaemonStreamConfig } from './stream-config.js';

/** What a daemon is started from, as the CLI parsed it. */
export interface DaemonStartOptions extends ServingOptions {
  controlSocket: string;
  controlMode: number;
  controlGroup?: number;
  /** The CLI's --timeout: the daemon's deadline of each request it makes. */
  timeoutMs: number;
}

/** The options every daemon takes, resolved (host/daemon.ts and guest/daemon.ts add their channels). */
export interface DaemonBaseOptions extends ServingConfig {
  controlSocket: string;
  controlMode: number;
  controlGid?: number;
  requestTimeoutMs: number;
  maxLineBytes: number;
  /** Silence of the other agent, with requests waiting, after which they fail (keepalive); default 15 s. */
  peerTimeoutMs?: number;
  /** Grace for running commands on shutdown. */
  graceMs: number;
  logger: Logger;
  /** Services offered to the other side, stream limits, --forward listeners (stream-config.ts); default none. */
  streams?: DaemonStreamConfig;
}

// Start the daemon and serve until a signal stops it; the promise never resolves (the signal exits).
export async function runDaemon(program: string, options: DaemonStartOptions, start: (base: DaemonBaseOptions) => Promise<{ stop(reason: string): Promise<void> }>): Promise<number> {
  // A daemon favours memory over speed: with V8's heap grown less eagerly (and its young generation capped
  // at 1 MiB by the launcher or NODE_OPTIONS, which must come before the heap exists), hostile peers keep
  // it under 100 MiB (docs/benchmarks.md, "Hostile peers and memory"). Read by V8 at each heap decision,
  // so setting it now takes effect; CLIs keep V8's defaults.
  setFlagsFromString('--optimize-for-size');
  const logger = createLogger({ level: options.logLevel });
  const serving = await resolveServingConfig(options);
  const daemon = await start({
    ...serving,
    controlSocket: options.controlSocket,
    controlMode: options.controlMode,
    ...(options.controlGroup !== undefined ? { controlGid: options.controlGroup } : {}),
    requestTimeoutMs: options.timeoutMs,
    maxLineBytes: options.maxLineBytes,
    peerTimeoutMs: options.peerTimeoutMs,
    graceMs: options.graceMs,
    logger,
  });
  const memoryReturn = startMemoryReturn();
  return new Promise<number>(() => {
    stopOnSignals(logger, (signal) => (memoryReturn.stop(), daemon.stop(`${program} received ${signal}`)), options.graceMs * 2 + 10_000);
  });
}
