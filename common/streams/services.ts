// The services one side offers to the other: `--service` declarations, then drop-in directories of
// one-line files (a file's name is the service's), watched like the command directories. Nothing is
// offered by default. Files are read on every lookup, so an edit takes effect at the next stream.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseServiceFile, type ServiceSpec } from './address.js';
export { DEFAULT_SERVICE_DIRECTORY } from './address.js';
import { createCommandDirectoryMonitor, type CommandDirectoryMonitor } from '../commands/directory-monitor.js';
import { errorMessage } from '../wire/errors.js';
import { silentLogger, type Logger } from '../base/logger.js';

export interface ServiceRegistryOptions {
  /** `--service` declarations; they win over files of the same name. */
  services?: readonly ServiceSpec[];
  /** Drop-in directories, first wins. */
  directories?: readonly string[];
  logger?: Logger;
  /** Watch the directories (a daemon) or read them at each lookup only. Default true. */
  watch?: boolean;
}

export interface ServiceRegistry {
  readonly ready: Promise<void>;
  /** The services `guest` may open (every service when `guest` is undefined), by name. */
  list(guest?: string): Promise<ServiceSpec[]>;
  /** The service `name` as `guest` may see it, or undefined. */
  resolve(name: string, guest?: string): Promise<ServiceSpec | undefined>;
  close(): Promise<void>;
}

function allows(spec: ServiceSpec, guest: string | undefined): boolean {
  return guest === undefined || spec.guests === undefined || spec.guests.includes(guest);
}

export function createServiceRegistry(options: ServiceRegistryOptions): ServiceRegistry {
  const log = options.logger ?? silentLogger;
  const declared = new Map((options.services ?? []).map((spec) => [spec.name, spec]));
  const directories = options.directories ?? [];
  const monitor: CommandDirectoryMonitor | undefined =
    directories.length > 0
      ? createCommandDirectoryMonitor({ directories, logger: log, watch: options.watch ?? true, checkIntervalMs: 30_000, onChange: () => {}, kind: 'service' })
      : undefined;
  // A bad file is reported once per content, not at every lookup.
  const reported = new Map<string, string>();

  const readAll = async (): Promise<Map<string, ServiceSpec>> => {
    const found = new Map<string, ServiceSpec>();
    if (monitor) {
      const names = await monitor.readNames();
      for (const [index, directory] of directories.entries()) {
        for (const name of names[index] ?? []) {
          if (found.has(name) || declared.has(name)) continue;
          const file = path.join(directory, name);
          try {
            found.set(name, parseServiceFile(name, await readFile(file, 'utf8'), file));
            reported.delete(file);
          } catch (error) {
            const message = errorMessage(error);
            if (reported.get(file) !== message) log.warn(`service file ignored: ${message}`);
            reported.set(file, message);
          }
        }
      }
    }
    for (const [name, spec] of declared) found.set(name, spec);
    return found;
  };

  return {
    ready: monitor?.ready ?? Promise.resolve(),
    async list(guest) {
      const all = await readAll();
      return [...all.values()].filter((spec) => allows(spec, guest)).sort((a, b) => a.name.localeCompare(b.name));
    },
    async resolve(name, guest) {
      const spec = declared.get(name) ?? (await readAll()).get(name);
      return spec && allows(spec, guest) ? spec : undefined;
    },
    close: async () => monitor?.close(),
  };
}
