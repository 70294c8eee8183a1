// What a daemon needs for forwarded streams, resolved once at start-up from the CLI options: its service
// registry, its limits, and its --forward listeners (held for the daemon's life; each connection looks
// up the other side's current peer, so they outlive its reboots and restarts).
import { parseForwardSpec, type ForwardSpec } from '../streams/address.js';
import { openStream } from '../streams/client.js';
import { startForwarder, type Forwarder } from '../streams/forward.js';
import { checkStreamLimits, type StreamLimits } from '../streams/serve.js';
import { DEFAULT_MAX_STREAMS } from '../wire/protocol.js';
import { DEFAULT_SERVICE_DIRECTORY, createServiceRegistry, type ServiceRegistry } from '../streams/services.js';
import type { StreamCliOptions } from './serving-options.js';
import type { Logger } from '../base/logger.js';
import type { RpcPeer } from '../wire/rpc-peer.js';

export interface DaemonStreamConfig {
  services: ServiceRegistry;
  limits: StreamLimits;
  forwards: ForwardSpec[];
}

// `withGuest`: the host daemon's forwards name their guest (SPEC@GUEST).
export async function resolveStreamConfig(options: StreamCliOptions, withGuest: boolean, logger: Logger): Promise<DaemonStreamConfig> {
  const forwards = options.forward.map((text) => parseForwardSpec(text, withGuest));
  const limits = checkStreamLimits({ maxStreams: options.maxStreams, idleTimeoutMs: options.streamIdleTimeoutMs });
  const services = createServiceRegistry({ services: options.services, directories: options.servicesDir ?? [DEFAULT_SERVICE_DIRECTORY], logger, watch: true });
  await services.ready;
  return { services, limits, forwards };
}

// Start a daemon's forwards; `upstream` finds the peer for a forward (the host: its guest's).
export async function startDaemonForwards(
  forwards: readonly ForwardSpec[],
  upstream: (spec: ForwardSpec) => Promise<RpcPeer>,
  describe: (spec: ForwardSpec) => string,
  logger: Logger,
): Promise<Forwarder[]> {
  const started: Forwarder[] = [];
  try {
    for (const spec of forwards) {
      started.push(
        await startForwarder({
          spec,
          logger,
          target: `service \`${spec.service}\` of ${describe(spec)}`,
          open: async (signal) => openStream(await upstream(spec), { service: spec.service, signal }),
        }),
      );
    }
  } catch (error) {
    await Promise.all(started.map((f) => f.close()));
    throw error;
  }
  return started;
}

// A daemon started without stream options (tests, embedders): no services, no forwards, default limits.
export function defaultStreamConfig(): DaemonStreamConfig {
  return { services: createServiceRegistry({}), limits: { maxStreams: DEFAULT_MAX_STREAMS, idleTimeoutMs: 0 }, forwards: [] };
}
