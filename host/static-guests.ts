// Guests that are not libvirt's (plain QEMU `-chardev socket,server=on`, tests, the demo), given as
// `--guest NAME=SPEC`. Such a guest is up while all of its socket paths exist as sockets: QEMU creates
// them when it starts and removes them when it exits. Their directories are watched with chokidar, and
// rechecked every `rescanIntervalMs` as a safety net (a directory that did not exist yet, a SIGKILLed QEMU).
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FSWatcher } from 'chokidar';
import { errorMessage } from '../common/wire/errors.js';
import type { StaticGuestSpec } from './guest-specs.js';
import { silentLogger, type Logger } from '../common/base/logger.js';
import type { ChannelRole, DiscoveredGuest, GuestSink } from './guest-model.js';

export { parseGuestSpec, parseGuestSpecs, type StaticGuestSpec } from './guest-specs.js';

export interface StaticGuestWatcherOptions {
  specs: readonly StaticGuestSpec[];
  sink: GuestSink;
  /** Safety-net recheck period in ms; default 30000. */
  rescanIntervalMs?: number;
  logger?: Logger;
}

// Reports each static guest to the sink while its sockets exist, until closed.
export class StaticGuestWatcher {
  /** Resolves once every guest was checked and the directories are watched. */
  readonly ready: Promise<void>;
  readonly #specs: readonly StaticGuestSpec[];
  readonly #sink: GuestSink;
  readonly #logger: Logger;
  readonly #directories: Set<string>;
  #watcher: FSWatcher | undefined;
  readonly #timer: NodeJS.Timeout | undefined;
  readonly #up = new Set<string>();
  readonly #checking = new Map<string, Promise<void>>();
  readonly #checkAgain = new Set<string>();
  readonly #logged = new Set<string>();
  /** chokidar's initial scan is over: an `addDir` of a watched directory now means it was created. */
  #watching = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(options: StaticGuestWatcherOptions) {
    this.#specs = options.specs;
    this.#sink = options.sink;
    this.#logger = options.logger ?? silentLogger;
    this.#directories = new Set(this.#specs.flatMap((spec) => socketPaths(spec).map(([, path]) => dirname(path))));
    if (this.#specs.length === 0) {
      this.ready = Promise.resolve();
      return;
    }
    this.ready = Promise.all([this.#startWatching(), this.#checkAll()]).then(() => undefined);
    this.#timer = setInterval(() => void this.#checkAll(), options.rescanIntervalMs ?? 30_000).unref();
  }

  // Stop watching. Idempotent. Emits nothing.
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      clearInterval(this.#timer);
      await this.#watcher?.close();
      await Promise.allSettled(this.#checking.values());
    })();
    return this.#closing;
  }

  // chokidar is loaded here, where watching starts, not with this module: the CLI imports the module
  // graph around it (guest specs, the guest model) and must not pay for chokidar.
  async #startWatching(): Promise<void> {
    const { watch } = await import('chokidar');
    if (this.#closed) return;
    // The parents too: chokidar 4 reports only the first of several missing sibling directories that
    // appear (measured: the others waited for the rescan), but an existing parent reports each one.
    const parents = new Set([...this.#directories].map((directory) => dirname(directory)));
    const watcher = watch([...this.#directories, ...parents], { depth: 0 });
    this.#watcher = watcher;
    watcher.on('all', (event, path) => this.#onChange(event, path));
    watcher.on('error', (error) => this.#logger.warn(`watching the --guest socket directories failed: ${errorMessage(error)}`));
    await new Promise<void>((resolve) =>
      watcher.once('ready', () => {
        this.#watching = true;
        resolve();
      }),
    );
  }

  #onChange(event: string, path: string): void {
    // chokidar reports a watched directory that appears, but not what is created in it: watch it afresh.
    if (event === 'addDir' && this.#watching && this.#directories.has(path)) {
      this.#watcher?.unwatch(path);
      this.#watcher?.add(path);
    }
    for (const spec of this.#specs) {
      if (socketPaths(spec).some(([, socket]) => socket === path || dirname(socket) === path)) void this.#check(spec);
    }
  }

  async #checkAll(): Promise<void> {
    await Promise.all(this.#specs.map((spec) => this.#check(spec)));
  }

  // Check one guest's sockets; a check asked for while one runs runs again after it.
  #check(spec: StaticGuestSpec): Promise<void> {
    const running = this.#checking.get(spec.name);
    if (running) {
      this.#checkAgain.add(spec.name);
      return running;
    }
    const check = this.#checkOnce(spec).finally(() => {
      this.#checking.delete(spec.name);
      if (this.#checkAgain.delete(spec.name) && !this.#closed) void this.#check(spec);
    });
    this.#checking.set(spec.name, check);
    return check;
  }

  async #checkOnce(spec: StaticGuestSpec): Promise<void> {
    const missing: string[] = [];
    for (const [, path] of socketPaths(spec)) {
      const kind = await stat(path).then((stats) => (stats.isSocket() ? 'socket' : 'other'), () => 'absent');
      if (kind === 'other') this.#logOnce(`${path}:other`, `guest ${spec.name}: ${path} exists but is not a socket; point --guest at the sockets QEMU creates (-chardev socket,server=on,path=...)`);
      if (kind !== 'socket') missing.push(path);
    }
    if (this.#closed) return;
    if (missing.length > 0) {
      this.#logOnce(`${spec.name}:waiting`, `guest ${spec.name}: waiting for ${missing.join(' and ')} (created when its QEMU starts)`, 'info');
      if (this.#up.delete(spec.name)) this.#sink.delete('static', spec.name);
      return;
    }
    const guest: DiscoveredGuest = { name: spec.name, source: 'static', channels: {} };
    for (const [role, path] of socketPaths(spec)) guest.channels[role] = { path };
    this.#up.add(spec.name);
    this.#sink.set(guest);
  }

  #logOnce(key: string, message: string, level: 'info' | 'warn' = 'warn'): void {
    if (this.#logged.has(key)) return;
    this.#logged.add(key);
    this.#logger[level](message);
  }
}

function socketPaths(spec: StaticGuestSpec): Array<[ChannelRole, string]> {
  const paths: Array<[ChannelRole, string]> = [];
  if (spec.hostToGuest !== undefined) paths.push(['hostToGuest', spec.hostToGuest]);
  if (spec.guestToHost !== undefined) paths.push(['guestToHost', spec.guestToHost]);
  return paths;
}
