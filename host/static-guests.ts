// Guests that are not libvirt's (plain QEMU `-chardev socket,server=on`, tests, the demo), given as
// `--guest NAME=SPEC`. Such a guest is up while all of its socket paths exist as sockets: QEMU creates
// them when it starts and removes them when it exits. Their directories are watched with chokidar, and
// rechecked every `rescanIntervalMs` as a safety net (a directory that did not exist yet, a SIGKILLed QEMU).
import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { ConfigError, errorMessage } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { CHANNEL_NAMES, type ChannelRole, type DiscoveredGuest, type GuestSink } from './guest-registry.js';

/** A guest given on the command line; paths are absolute. At least one channel is set. */
export interface StaticGuestSpec {
  name: string;
  hostToGuest?: string;
  guestToHost?: string;
}

const SPEC_HELP = 'NAME=DIR (a directory holding the sockets negotiator-host-to-guest.0 and negotiator-guest-to-host.0) or NAME=h2g=PATH,g2h=PATH';
const GUEST_NAME = /^[\w.:@+-]{1,128}$/;
const KEYS: Record<string, ChannelRole> = { h2g: 'hostToGuest', g2h: 'guestToHost' };

// Parse one `--guest` value; relative paths are taken from `cwd`. Pure: the sockets need not exist yet.
export function parseGuestSpec(option: string, cwd: string = process.cwd()): StaticGuestSpec {
  const equals = option.indexOf('=');
  const name = option.slice(0, Math.max(equals, 0));
  const spec = option.slice(equals + 1);
  if (equals < 0 || spec.trim() === '') throw new ConfigError(`Expected \`--guest\` to be ${SPEC_HELP}, got \`${option}\``);
  if (!GUEST_NAME.test(name)) {
    throw new ConfigError(`\`--guest ${option}\`: the guest name \`${name}\` must be 1-128 letters, digits or . _ : @ + -`);
  }
  if (!/^(?:h2g|g2h)=/.test(spec)) {
    const directory = resolve(cwd, spec);
    return { name, hostToGuest: join(directory, CHANNEL_NAMES.hostToGuest), guestToHost: join(directory, CHANNEL_NAMES.guestToHost) };
  }
  const guest: StaticGuestSpec = { name };
  // Split only before something like a key, so a path may hold commas (but not `,word=`).
  for (const part of spec.split(/,(?=[\w-]+=)/)) {
    const [key = '', ...rest] = part.split('=');
    const path = rest.join('=');
    const role = KEYS[key];
    if (role === undefined) throw new ConfigError(`\`--guest ${option}\`: unknown key \`${key}\`; use h2g=PATH and/or g2h=PATH`);
    if (path === '') throw new ConfigError(`\`--guest ${option}\`: \`${key}=\` needs a socket path`);
    if (guest[role] !== undefined) throw new ConfigError(`\`--guest ${option}\`: \`${key}\` is given twice`);
    guest[role] = resolve(cwd, path);
  }
  return guest;
}

// Parse every `--guest` value; a name given twice is an error.
export function parseGuestSpecs(options: readonly string[], cwd?: string): StaticGuestSpec[] {
  const specs = options.map((option) => parseGuestSpec(option, cwd));
  const seen = new Set<string>();
  for (const spec of specs) {
    if (seen.has(spec.name)) throw new ConfigError(`\`--guest ${spec.name}=...\` is given twice; give each guest once`);
    seen.add(spec.name);
  }
  return specs;
}

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
  readonly #watcher: FSWatcher | undefined;
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
    const watcher = watch([...this.#directories], { depth: 0 });
    this.#watcher = watcher;
    watcher.on('all', (event, path) => this.#onChange(event, path));
    watcher.on('error', (error) => this.#logger.warn(`watching the --guest socket directories failed: ${errorMessage(error)}`));
    const watching = new Promise<void>((resolve) =>
      watcher.once('ready', () => {
        this.#watching = true;
        resolve();
      }),
    );
    this.ready = Promise.all([watching, this.#checkAll()]).then(() => undefined);
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
