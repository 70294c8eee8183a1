// A small QMP client for a plain QEMU guest's monitor socket (`--guest NAME=DIR,qmp=PATH`): it reports
// what tells the host at once that the guest agent's session is over: `RESET` (system_reset, a guest
// reboot), `SHUTDOWN`, and `VSERPORT_CHANGE` (the guest opened or closed a virtio-serial port), with the
// port's name read once per device id (`qom-get ... name`). Reconnects with backoff while QEMU is away.
//
// Hazard: QEMU serves one client per QMP socket; holding it keeps other tools out. So QMP is used only
// when asked for (qmp=PATH), and the socket given should be a monitor of its own (`-qmp unix:...`).
import net from 'node:net';
import { errorMessage } from '../common/wire/errors.js';
import { silentLogger, type Logger } from '../common/base/logger.js';
import { LineReader } from '../common/wire/line-reader.js';

/** What the monitor reports. `port` is the virtio-serial port's name (`negotiator-host-to-guest.0`) when known. */
export type QmpGuestEvent =
  | { kind: 'reset'; detail: string }
  | { kind: 'shutdown'; detail: string }
  | { kind: 'port'; port: string; open: boolean }
  | { kind: 'monitor'; connected: boolean; detail: string };

export interface QmpMonitorOptions {
  path: string;
  onEvent: (event: QmpGuestEvent) => void;
  logger?: Logger;
  /** First reconnect delay, doubling to 30 s. Default 500 ms. */
  retryMs?: number;
}

/** Lifecycle: connects at once, until `close()` (idempotent). */
export interface QmpMonitor {
  readonly connected: boolean;
  close(): void;
}

const MAX_LINE_BYTES = 1024 * 1024;

export function startQmpMonitor(options: QmpMonitorOptions): QmpMonitor {
  const log = options.logger ?? silentLogger;
  const firstDelay = options.retryMs ?? 500;
  let delay = firstDelay;
  let socket: net.Socket | undefined;
  let connected = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let lastError = '';
  /** QEMU device id -> port name (asked once per id with qom-get). */
  const portNames = new Map<string, string>();
  const asked = new Map<number, (value: unknown) => void>();
  let nextId = 1;

  const connect = (): void => {
    if (closed) return;
    const current = net.connect(options.path);
    socket = current;
    const reader = new LineReader({
      maxLineBytes: MAX_LINE_BYTES,
      onLine: (line) => onMessage(current, line),
      onProblem: () => log.warn(`QMP ${options.path}: a malformed or oversized line; skipped`),
    });
    current.on('data', (chunk: Buffer) => reader.push(chunk));
    current.on('error', (error) => {
      if (errorMessage(error) !== lastError) log.debug(`QMP ${options.path}: ${errorMessage(error)}`);
      lastError = errorMessage(error);
    });
    current.on('close', () => {
      if (socket !== current) return;
      socket = undefined;
      if (connected) {
        connected = false;
        options.onEvent({ kind: 'monitor', connected: false, detail: 'QEMU closed its QMP socket' });
      }
      for (const answer of asked.values()) answer(undefined);
      asked.clear();
      if (closed) return;
      timer = setTimeout(connect, delay);
      timer.unref();
      delay = Math.min(delay * 2, 30_000);
    });
  };

  const send = (target: net.Socket, command: string, args?: Record<string, unknown>): Promise<unknown> => {
    const id = nextId++;
    target.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    return new Promise((resolve) => asked.set(id, resolve));
  };

  const portName = async (target: net.Socket, id: string): Promise<string> => {
    const known = portNames.get(id);
    if (known) return known;
    const name = await send(target, 'qom-get', { path: `/machine/peripheral/${id}`, property: 'name' });
    if (typeof name !== 'string') return id;
    if (portNames.size > 1024) portNames.clear();
    portNames.set(id, name);
    return name;
  };

  const onMessage = (target: net.Socket, line: string): void => {
    let message: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return;
      message = parsed as Record<string, unknown>;
    } catch {
      return;
    }
    if ('QMP' in message) {
      void send(target, 'qmp_capabilities').then(() => {
        if (socket !== target) return;
        connected = true;
        delay = firstDelay;
        lastError = '';
        options.onEvent({ kind: 'monitor', connected: true, detail: `QMP ${options.path}` });
      });
      return;
    }
    if ('id' in message && ('return' in message || 'error' in message)) {
      const answer = asked.get(message.id as number);
      asked.delete(message.id as number);
      answer?.('return' in message ? message.return : undefined);
      return;
    }
    const data = (typeof message.data === 'object' && message.data !== null ? message.data : {}) as Record<string, unknown>;
    if (message.event === 'RESET') options.onEvent({ kind: 'reset', detail: `QMP RESET (${String(data.reason ?? (data.guest ? 'by the guest' : 'by the host'))})` });
    else if (message.event === 'SHUTDOWN') options.onEvent({ kind: 'shutdown', detail: `QMP SHUTDOWN (${String(data.reason ?? 'no reason')})` });
    else if (message.event === 'VSERPORT_CHANGE' && typeof data.id === 'string' && typeof data.open === 'boolean') {
      const open = data.open;
      void portName(target, data.id).then((port) => options.onEvent({ kind: 'port', port, open }));
    }
  };

  connect();
  return {
    get connected() {
      return connected;
    },
    close() {
      closed = true;
      clearTimeout(timer);
      socket?.destroy();
    },
  };
}
