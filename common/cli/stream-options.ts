// The options of forwarded streams, on both CLIs: the services a daemon offers and its stream limits,
// and the callers (--connect, --forward), parsed at the edge.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { DEFAULT_SERVICE_DIRECTORY, parseServiceOption, type ServiceSpec } from '../streams/address.js';
import { DEFAULT_MAX_STREAMS } from '../wire/protocol.js';
import type { StreamCliOptions } from '../daemon/serving-options.js';
import { collectDirectory, parseCount, parseTimeoutSeconds } from './options.js';

export type { StreamCliOptions };

function collectService(value: string, previous: ServiceSpec[]): ServiceSpec[] {
  try {
    return [...previous, parseServiceOption(value)];
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

// `peerNoun`: who opens this side's services ("guests" / "the host"); `forwardForm`: the daemon's spelling.
export function addStreamOptions(program: Command, peerNoun: string, forwardForm: string): Command {
  return program
    .option('--connect <service>', `stdin and stdout become a stream to SERVICE on the other side, until both directions are closed (ssh's ProxyCommand)`)
    .addOption(
      new Option('--forward <spec>', `listen on [BIND:]PORT (BIND default 127.0.0.1) or unix:PATH and make every connection a stream to SERVICE: ${forwardForm} (repeatable with --daemon, which keeps the listeners for good)`)
        .default([] as string[], 'none')
        .argParser((v: string, prev: string[]) => [...prev, v]),
    )
    .addOption(
      new Option('--service <name=address>', `daemon: offer a service to ${peerNoun}: NAME=tcp:HOST:PORT or NAME=unix:PATH${peerNoun === 'guests' ? ', optionally followed by " guests=NAME,NAME"' : ''} (repeatable; none by default)`)
        .default([] as ServiceSpec[], 'none')
        .argParser(collectService),
    )
    .option('--services-dir <dir>', `daemon: a drop-in directory of services, one file per service holding its address (repeatable; default ${DEFAULT_SERVICE_DIRECTORY})`, collectDirectory)
    .addOption(new Option('--max-streams <n>', 'daemon: streams open at once per channel (and per control-socket client)').default(DEFAULT_MAX_STREAMS).argParser(parseCount(false)))
    .addOption(new Option('--stream-idle-timeout <seconds>', 'daemon: reset a stream with no traffic for this long (0 = never)').default(0, '0').argParser(parseTimeoutSeconds));
}

export function streamOptionsOf(parsed: Record<string, unknown>): StreamCliOptions {
  return {
    services: parsed.service as ServiceSpec[],
    ...(parsed.servicesDir !== undefined ? { servicesDir: parsed.servicesDir as string[] } : {}),
    maxStreams: parsed.maxStreams as number,
    streamIdleTimeoutMs: parsed.streamIdleTimeout as number,
    forward: parsed.forward as string[],
    ...(parsed.connect !== undefined ? { connect: parsed.connect as string } : {}),
  };
}
