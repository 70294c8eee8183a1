// Turns the serving options both CLIs share into what a daemon needs: its command directories (the
// user's, then the built-in ones) and the command limits, with --rlimit and --run-as resolved.
import { builtinCommandsDirectory } from '../commands/builtin.js';
import { DEFAULT_COMMAND_DIRECTORY, type ServingOptions } from './serving-options.js';

export { DEFAULT_COMMAND_DIRECTORY, type ServingOptions };
import type { ExecuteServerOptions } from '../execute/server.js';
import { resolveCommandIdentity } from '../commands/resource-limits.js';

export interface ServingConfig {
  /** In precedence order, the built-in directory last. */
  commandDirectories: string[];
  limits: Omit<ExecuteServerOptions, 'side' | 'commands' | 'logger' | 'onExecuted' | 'extraEnv' | 'channelName'>;
}

// Resolve once at daemon start-up, before any channel is opened.
export async function resolveServingConfig(options: ServingOptions): Promise<ServingConfig> {
  return {
    commandDirectories: [...(options.commandsDir ?? [DEFAULT_COMMAND_DIRECTORY]), ...(options.builtinCommands ? [builtinCommandsDirectory()] : [])],
    limits: {
      maxConcurrent: options.maxConcurrent,
      maxQueued: options.maxQueued,
      maxTimeoutMs: options.maxCommandTimeMs,
      maxOutputBytes: options.maxOutputBytes,
      killGraceMs: options.killGraceMs,
      prespawn: options.prespawn,
      ...(await resolveCommandIdentity(options.rlimits, options.runAs)),
    },
  };
}
