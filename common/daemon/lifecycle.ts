// What both daemons do around their work: say when they are ready (a log line, and systemd's READY=1
// when run as a Type=notify service), and stop cleanly on SIGTERM/SIGINT with a bounded grace period.
import { errorMessage } from '../wire/errors.js';
import type { Logger } from '../base/logger.js';
import { setLongTimeout } from '../base/long-timer.js';

// Log readiness and, under systemd (NOTIFY_SOCKET set), send READY=1 through systemd-notify (Node has no
// UNIX datagram sockets; the unit needs NotifyAccess=all for a helper process to notify).
export async function announceReady(logger: Logger, message: string): Promise<void> {
  logger.info(message);
  if (!process.env.NOTIFY_SOCKET) return;
  try {
    const { execa } = await import('execa');
    await execa('systemd-notify', ['--ready', `--status=${message.slice(0, 200)}`], { timeout: 5000, env: process.env as Record<string, string> });
  } catch (error) {
    logger.warn(`could not tell systemd we are ready (systemd-notify: ${errorMessage(error)}); is NotifyAccess=all set in the unit?`);
  }
}

/**
 * On the first SIGTERM or SIGINT: run `stop`, then exit 0 (1 if it failed). A second signal, or `stop`
 * taking longer than `hardLimitMs`, exits at once with 1. Call once per process.
 */
export function stopOnSignals(logger: Logger, stop: (signal: NodeJS.Signals) => Promise<void>, hardLimitMs: number): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn(`received ${signal} again: exiting now`);
      process.exit(1);
    }
    stopping = true;
    logger.info(`received ${signal}: stopping`);
    setLongTimeout(() => {
      logger.error(`stopping took longer than ${hardLimitMs} ms: exiting anyway`);
      process.exit(1);
    }, hardLimitMs).unref();
    stop(signal).then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error(`error while stopping: ${errorMessage(error)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
