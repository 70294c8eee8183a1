// libvirt domains -> guests. Follows `virsh event` (start/stop noticed as it happens), rescans after
// every (re)connection of that stream and every `rescanIntervalMs` as a safety net, and inspects a
// domain (`virsh dumpxml`) only when it is new: at most `concurrency` virsh processes at a time.
// Socket paths always come from the domain XML; libvirt has changed its layout several times.
import { ConfigError, errorMessage } from '../common/wire/errors.js';
import { silentLogger, type Logger } from '../common/base/logger.js';
import { findNegotiatorChannels, parseDomainXml, type DomainDescription } from './domain-xml.js';
import type { DiscoveredGuest, GuestSink } from './guest-model.js';
import { VirshError, type DomainEvent, type Virsh } from './virsh.js';

export interface LibvirtDiscoveryOptions {
  virsh: Virsh;
  sink: GuestSink;
  logger?: Logger;
  /** Safety-net rescan period in ms; default 30000. */
  rescanIntervalMs?: number;
  /** Most virsh processes run at once for inspections; default 4. */
  concurrency?: number;
  /** Rescan this long after `virsh event` (re)starts, to catch what happened before it listened; default 500 ms. */
  resyncDelayMs?: number;
}

/** What a running domain looked like at its last inspection: enough to tell a restart from the same instance. */
interface DomainIdentity {
  uuid: string | undefined;
  id: number;
}

// Reports the libvirt domains that have negotiator channels to a sink, until closed.
export class LibvirtDiscovery {
  /** Resolves after the first rescan and the inspections it started (also when libvirt was unreachable). */
  readonly ready: Promise<void>;
  readonly #virsh: Virsh;
  readonly #sink: GuestSink;
  readonly #logger: Logger;
  readonly #concurrency: number;
  readonly #resyncDelayMs: number;
  readonly #controller = new AbortController();
  /** Domains reported to the sink, and running domains without negotiator channels (not inspected again). */
  readonly #reported = new Map<string, DomainIdentity>();
  readonly #bare = new Map<string, DomainIdentity>();
  readonly #loggedOnce = new Set<string>();
  /** Event sequence: an inspection or a list older than the latest event about a domain is discarded. */
  #seq = 0;
  readonly #touched = new Map<string, number>();
  /** name -> what to look it up by (its UUID when known: a numeric name would be taken for an id). */
  readonly #queue = new Map<string, string>();
  readonly #running = new Map<string, Promise<void>>();
  #idleWaiters: Array<() => void> = [];
  #rescan: Promise<void> | undefined;
  #rescanAgain = false;
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #following: Promise<void>;
  #closing: Promise<void> | undefined;

  constructor(options: LibvirtDiscoveryOptions) {
    const rescanIntervalMs = options.rescanIntervalMs ?? 30_000;
    this.#concurrency = options.concurrency ?? 4;
    this.#resyncDelayMs = options.resyncDelayMs ?? 500;
    const limits: Record<string, [value: number, least: number]> = { rescanIntervalMs: [rescanIntervalMs, 1], concurrency: [this.#concurrency, 1], resyncDelayMs: [this.#resyncDelayMs, 0] };
    for (const [key, [value, least]] of Object.entries(limits)) {
      if (!Number.isSafeInteger(value) || value < least) {
        throw new ConfigError(`Expected the \`${key}\` option to be an integer of at least ${least}, got \`${String(value)}\``);
      }
    }
    this.#virsh = options.virsh;
    this.#sink = options.sink;
    this.#logger = options.logger ?? silentLogger;
    this.ready = this.rescan();
    this.#following = this.#follow();
    this.#timers.push(setInterval(() => void this.rescan(), rescanIntervalMs).unref());
  }

  // List the active domains, drop the ones gone, inspect the new ones; resolves when those inspections are done.
  rescan(): Promise<void> {
    if (this.#rescan) {
      this.#rescanAgain = true;
      return this.#rescan;
    }
    this.#rescan = this.#rescanOnce().finally(() => {
      this.#rescan = undefined;
      if (this.#rescanAgain && !this.#controller.signal.aborted) {
        this.#rescanAgain = false;
        void this.rescan();
      }
    });
    return this.#rescan;
  }

  // Stop following events, kill virsh, forget pending work. Idempotent. Emits nothing.
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#controller.abort();
      for (const timer of this.#timers) clearTimeout(timer);
      this.#queue.clear();
      await Promise.allSettled([this.#following, this.#rescan, ...this.#running.values()]);
      this.#wakeIdleWaiters();
    })();
    return this.#closing;
  }

  async #rescanOnce(): Promise<void> {
    const listedAt = this.#seq;
    let domains;
    try {
      domains = await this.#virsh.listDomains({ signal: this.#controller.signal });
    } catch (error) {
      this.#logFailure('list libvirt domains', error);
      return;
    }
    const active = new Map(domains.map((domain) => [domain.name, domain]));
    for (const name of [...this.#reported.keys(), ...this.#bare.keys()]) {
      if (!active.has(name) && !this.#touchedSince(name, listedAt)) this.#forget(name);
    }
    for (const domain of domains) {
      if (this.#touchedSince(domain.name, listedAt)) continue;
      const known = this.#reported.get(domain.name) ?? this.#bare.get(domain.name);
      if (known && known.id === domain.id && (domain.uuid === undefined || known.uuid === domain.uuid)) continue;
      this.#enqueue(domain.name, domain.uuid ?? domain.name);
    }
    for (const [name, seq] of this.#touched) {
      if (seq <= listedAt && !this.#queue.has(name) && !this.#running.has(name)) this.#touched.delete(name);
    }
    await this.#whenIdle();
  }

  async #follow(): Promise<void> {
    try {
      for await (const item of this.#virsh.followEvents({ signal: this.#controller.signal })) {
        if (item.type === 'domain') this.#onDomainEvent(item);
        else if (item.type === 'stream-started') this.#scheduleResync();
        else if (item.error.kind === 'failed') this.#logOnce(`stream:${item.error.message}`, 'warn', `following libvirt events: ${item.error.message}; retrying`);
      }
    } catch (error) {
      if (!this.#controller.signal.aborted) this.#logger.error(`following libvirt events failed: ${errorMessage(error)}; only the periodic rescan notices guests now`);
    }
  }

  #scheduleResync(): void {
    const timer = setTimeout(() => {
      this.#timers.splice(this.#timers.indexOf(timer), 1);
      void this.rescan();
    }, this.#resyncDelayMs).unref();
    this.#timers.push(timer);
  }

  #onDomainEvent(event: DomainEvent): void {
    const stopped = event.lifecycle === 'stopped';
    if (!stopped && event.lifecycle !== 'started' && event.event !== 'device-added' && event.event !== 'device-removed') return;
    this.#touched.set(event.domain, ++this.#seq);
    this.#logger.debug(`domain ${event.domain}: ${event.event} ${event.lifecycle ?? ''} ${event.detail}`);
    if (stopped) {
      this.#queue.delete(event.domain);
      this.#forget(event.domain);
    } else {
      this.#enqueue(event.domain, event.domain);
    }
  }

  #enqueue(name: string, lookup: string): void {
    if (this.#controller.signal.aborted) return;
    this.#queue.set(name, lookup);
    this.#pump();
  }

  // Start queued inspections up to the concurrency limit, never two for the same domain at once.
  #pump(): void {
    for (const [name, lookup] of this.#queue) {
      if (this.#running.size >= this.#concurrency) return;
      if (this.#running.has(name)) continue;
      this.#queue.delete(name);
      const inspection = this.#inspect(name, lookup)
        .catch((error: unknown) => this.#logger.error(`inspecting domain ${name} failed: ${errorMessage(error)}`))
        .finally(() => {
          this.#running.delete(name);
          this.#pump();
          if (this.#running.size === 0 && this.#queue.size === 0) this.#wakeIdleWaiters();
        });
      this.#running.set(name, inspection);
    }
  }

  async #inspect(name: string, lookup: string): Promise<void> {
    const startedAt = this.#seq;
    let xml: string;
    try {
      xml = await this.#virsh.dumpXml(lookup, { signal: this.#controller.signal });
    } catch (error) {
      if (this.#touchedSince(name, startedAt)) return;
      if (error instanceof VirshError && error.kind === 'no-domain') this.#forget(name);
      else this.#logFailure(`inspect domain ${name}`, error);
      return;
    }
    if (this.#touchedSince(name, startedAt) || this.#controller.signal.aborted) return;
    let domain: DomainDescription;
    try {
      domain = parseDomainXml(xml);
    } catch (error) {
      this.#logOnce(`xml:${name}`, 'warn', `cannot read the XML of domain ${name}: ${errorMessage(error)}`);
      return;
    }
    if (domain.id === undefined) {
      this.#forget(name); // stopped between list and dumpxml
      return;
    }
    const identity = { uuid: domain.uuid, id: domain.id };
    const { channels, problems } = findNegotiatorChannels(domain);
    for (const problem of problems) this.#logOnce(`${domain.uuid ?? name}:${problem}`, 'warn', `guest ${name}: ${problem}`);
    if (!channels.hostToGuest && !channels.guestToHost) {
      this.#forget(name);
      this.#bare.set(name, identity);
      this.#logOnce(`bare:${domain.uuid ?? name}`, 'info', `guest ${name} has no negotiator channels; see libvirt/ to add them`);
      return;
    }
    this.#bare.delete(name);
    this.#reported.set(name, identity);
    const guest: DiscoveredGuest = { name, source: 'libvirt', channels, id: domain.id };
    if (domain.uuid !== undefined) guest.uuid = domain.uuid;
    this.#sink.set(guest);
  }

  #touchedSince(name: string, seq: number): boolean {
    return (this.#touched.get(name) ?? -1) > seq;
  }

  #forget(name: string): void {
    this.#bare.delete(name);
    if (this.#reported.delete(name) && !this.#controller.signal.aborted) this.#sink.delete('libvirt', name);
  }

  #whenIdle(): Promise<void> {
    if (this.#running.size === 0 && this.#queue.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #wakeIdleWaiters(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const wake of waiters) wake();
  }

  // libvirt-wide outages are logged by the virsh seam (once); anything else is worth a line each time.
  #logFailure(what: string, error: unknown): void {
    if (this.#controller.signal.aborted) return;
    if (error instanceof VirshError && error.kind !== 'failed' && error.kind !== 'no-domain') {
      this.#logger.debug(`could not ${what}: ${error.message}`);
    } else {
      this.#logger.warn(`could not ${what}: ${errorMessage(error)}`);
    }
  }

  #logOnce(key: string, level: 'info' | 'warn', message: string): void {
    if (this.#loggedOnce.has(key)) return;
    // Keys are per domain: on a host that creates transient domains all day the set must not grow forever.
    if (this.#loggedOnce.size >= 10_000) this.#loggedOnce.clear();
    this.#loggedOnce.add(key);
    this.#logger[level](message);
  }
}

