// Small factories shared by tests: agent infos, peers on memory channels, a logger that records lines.
import type { ByteChannel } from '../../common/wire/byte-channel.js';
import type { Logger } from '../../common/base/logger.js';
import { PROTOCOL_VERSION, type AgentInfo, type Side } from '../../common/wire/protocol.js';
import { RpcPeer, type PeerOptions } from '../../common/wire/rpc-peer.js';
import { createMemoryChannelPair, type MemoryChannel } from './memory-channel.js';

export function testAgentInfo(side: Side, overrides: Partial<AgentInfo> = {}): Omit<AgentInfo, 'nonce'> {
  return {
    protocol: PROTOCOL_VERSION,
    name: 'negotiator',
    version: '0.0.0-test',
    side,
    os: { type: 'Linux', version: '6.1.0-test', hostname: `${side}-box` },
    capabilities: ['ping'],
    pid: 4242,
    ...overrides,
  };
}

export interface RecordingLogger extends Logger {
  readonly lines: string[];
  /** Resolves when a line matching `pattern` has been logged (rejects after `timeoutMs`). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

export function createRecordingLogger(): RecordingLogger {
  const lines: string[] = [];
  const waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];
  const push = (level: string, message: string): void => {
    const line = `${level} ${message}`;
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.pattern.test(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  };
  const logger: RecordingLogger = {
    level: 'debug',
    lines,
    error: (m) => push('error', m),
    warn: (m) => push('warn', m),
    info: (m) => push('info', m),
    debug: (m) => push('debug', m),
    child: () => logger,
    waitFor(pattern, timeoutMs = 2000) {
      const found = lines.find((line) => pattern.test(line));
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line matching ${pattern} within ${timeoutMs} ms; got:\n${lines.join('\n')}`)), timeoutMs);
        waiters.push({ pattern, resolve: (line) => (clearTimeout(timer), resolve(line)) });
      });
    },
  };
  return logger;
}

export function createPeer(channel: ByteChannel, side: Side, options: Partial<PeerOptions> = {}): RpcPeer {
  return new RpcPeer(channel, { localInfo: testAgentInfo(side), label: `${side}-peer`, helloRetryMs: 50, ...options });
}

export interface PeerPair {
  host: RpcPeer;
  guest: RpcPeer;
  hostEnd: MemoryChannel;
  guestEnd: MemoryChannel;
  hostLog: RecordingLogger;
  guestLog: RecordingLogger;
}

// Two peers cross-wired over memory channels; not started.
export function createPeerPair(options: Partial<PeerOptions> = {}): PeerPair {
  const [hostEnd, guestEnd] = createMemoryChannelPair();
  const hostLog = createRecordingLogger();
  const guestLog = createRecordingLogger();
  const host = createPeer(hostEnd, 'host', { logger: hostLog, ...options });
  const guest = createPeer(guestEnd, 'guest', { logger: guestLog, ...options });
  return { host, guest, hostEnd, guestEnd, hostLog, guestLog };
}
