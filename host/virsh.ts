// The seam to libvirt: every `virsh -c URI ...` this program runs goes through here, each with a
// timeout, in the C locale (the output is parsed), with failures turned into one VirshError whose
// message says what failed and what to do. Tests substitute the `Virsh` interface, or point
// `virshPath` at a fake script.
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ExecaError as ExecaErrorType } from 'execa';
import { ConfigError, errorMessage, truncateForLog } from '../common/wire/errors.js';
import { silentLogger, type Logger } from '../common/base/logger.js';

export const DEFAULT_LIBVIRT_URI = 'qemu:///system';

/** Why a virsh call failed. `missing`, `unreachable` and `timeout` mean libvirt as a whole is unusable. */
export const VIRSH_FAILURES = {
  missing: 'missing',
  unreachable: 'unreachable',
  timeout: 'timeout',
  noDomain: 'no-domain',
  canceled: 'canceled',
  failed: 'failed',
} as const;
export type VirshFailure = (typeof VIRSH_FAILURES)[keyof typeof VIRSH_FAILURES];

export class VirshError extends Error {
  override name = 'VirshError';
  readonly kind: VirshFailure;
  /** virsh's stderr, trimmed ('' when it never ran). */
  readonly stderr: string;
  constructor(kind: VirshFailure, message: string, stderr = '', options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
    this.stderr = stderr;
  }
}

/** A running (active) domain as `virsh list` shows it. */
export interface DomainSummary {
  name: string;
  id: number;
  /** Absent when this virsh cannot print UUIDs in its list (libvirt older than 7.x): read it from the XML. */
  uuid?: string;
}

/** Lifecycle event kinds, as `virsh event` prints them, lower-cased. */
export const LIFECYCLE_EVENTS = [
  'defined', 'undefined', 'started', 'suspended', 'resumed', 'stopped', 'shutdown', 'pmsuspended', 'crashed',
] as const;
export type LifecycleEvent = (typeof LIFECYCLE_EVENTS)[number];

/** One line of `virsh event --loop --all` output about a domain. */
export interface DomainEvent {
  type: 'domain';
  domain: string;
  /** virsh's event name: `lifecycle`, `device-added`, `device-removed`, `reboot`, ... */
  event: string;
  /** For `lifecycle` events: `started`, `stopped`, ...; undefined for other events. */
  lifecycle?: LifecycleEvent;
  /** The rest of the line (`Booted`, `Destroyed`, the device alias, ...). */
  detail: string;
}
/** What `followEvents()` yields: domain events, and a marker each time virsh was (re)started or ended. */
export type VirshStreamItem =
  | DomainEvent
  | { type: 'stream-started' }
  | { type: 'stream-ended'; error: VirshError; retryInMs: number };

export interface VirshCallOptions {
  signal?: AbortSignal;
}

/** The libvirt operations discovery needs. Implementations never throw anything but VirshError. */
export interface Virsh {
  readonly uri: string;
  /** Active domains (running or paused). */
  listDomains(options?: VirshCallOptions): Promise<DomainSummary[]>;
  /** `virsh dumpxml` of one domain, by name or UUID (a name that looks like an id is looked up as an id). */
  dumpXml(domain: string, options?: VirshCallOptions): Promise<string>;
  /**
   * Follows `virsh event --loop --all` until `signal` aborts, restarting virsh with backoff whenever it
   * exits (libvirtd down or restarted). Events that happen between an exit and the next start are lost:
   * rescan after every `stream-started`. Ends (without throwing) only when `signal` aborts.
   */
  followEvents(options: { signal: AbortSignal }): AsyncIterable<VirshStreamItem>;
}

export interface VirshOptions {
  /** libvirt connection URI; default `qemu:///system`. */
  uri?: string;
  /** The virsh binary; default `virsh` from PATH. */
  virshPath?: string;
  /** Deadline of each one-shot call in ms; default 10000. */
  timeoutMs?: number;
  /** First delay before restarting `virsh event` after it exits, in ms; default 1000 (doubles up to the max). */
  restartDelayMs?: number;
  /** Largest restart delay in ms; default 30000. */
  maxRestartDelayMs?: number;
  logger?: Logger;
}
type ResolvedVirshOptions = Readonly<Required<VirshOptions>>;

/** An event stream that lived this long was connected: its next restart starts again from the first delay. */
const HEALTHY_STREAM_MS = 10_000;
const EVENT_LINE = /^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+[+-]\d{4}: )?event '([^']+)' for domain (?:'(.*?)'|(\S+))(?:: (.*))?$/;
const UNREACHABLE = /failed to connect|Disconnected from|client socket is closed|Cannot recv data|Cannot write data|keepalive|no connection driver|authentication|Permission denied|Connection refused|End of file while reading/i;
const TABLE_ROW = /^\s*(\d+)\s+(.+?)\s+(?:running|idle|paused|in shutdown|shut off|crashed|pmsuspended|no state)\s*$/;
const NO_DOMAIN = /Domain not found|failed to get domain|no domain with matching/i;

// virsh output is parsed, so it must not be translated.
const VIRSH_ENV = { env: { LC_ALL: 'C', LANG: 'C' }, forceKillAfterDelay: 2000 } as const;

// Check the options at the edge and fill in defaults.
export function resolveVirshOptions(options: VirshOptions = {}): ResolvedVirshOptions {
  const resolved = {
    uri: options.uri ?? DEFAULT_LIBVIRT_URI,
    virshPath: options.virshPath ?? 'virsh',
    timeoutMs: options.timeoutMs ?? 10_000,
    restartDelayMs: options.restartDelayMs ?? 1000,
    maxRestartDelayMs: options.maxRestartDelayMs ?? 30_000,
    logger: options.logger ?? silentLogger,
  };
  if (resolved.uri.trim() === '') throw new ConfigError('Expected the `uri` option to be a libvirt URI such as `qemu:///system`, got an empty string');
  if (resolved.virshPath === '') throw new ConfigError('Expected the `virshPath` option to name the virsh binary, got an empty string');
  for (const key of ['timeoutMs', 'restartDelayMs', 'maxRestartDelayMs'] as const) {
    if (!Number.isSafeInteger(resolved[key]) || resolved[key] <= 0) {
      throw new ConfigError(`Expected the \`${key}\` option to be a positive integer, got \`${String(resolved[key])}\``);
    }
  }
  return Object.freeze(resolved);
}

// execa is loaded on first use: it costs ~190 ms of start-up that a CLI talking to a daemon never needs.
const loadExeca = (): Promise<typeof import('execa')> => import('execa');

function isExecaError(value: unknown): value is ExecaErrorType {
  return value instanceof Error && value.name === 'ExecaError';
}

/** One call through the seam: `connect: false` for what needs no libvirt connection (`--version`). */
export interface VirshRunOptions {
  signal?: AbortSignal;
  /** Deadline of this call in ms; default the seam's `timeoutMs`. */
  timeoutMs?: number;
  connect?: boolean;
}

type VirshTarget = Pick<ResolvedVirshOptions, 'uri' | 'virshPath' | 'timeoutMs'>;

// Run `virsh -c URI ARGS...` once (C locale, deadline, no stdin) and resolve with its stdout; every
// failure is a VirshError from classifyVirshFailure. Discovery's calls and setup's all come here.
export async function runVirsh(options: VirshTarget, args: readonly string[], run: VirshRunOptions = {}): Promise<string> {
  const connect = run.connect !== false;
  const timeoutMs = run.timeoutMs ?? options.timeoutMs;
  try {
    const { execa } = await loadExeca();
    const { stdout } = await execa(options.virshPath, connect ? ['-c', options.uri, ...args] : [...args], { ...VIRSH_ENV, stdin: 'ignore', timeout: timeoutMs, cancelSignal: run.signal });
    return stdout;
  } catch (cause) {
    throw classifyVirshFailure({ ...options, timeoutMs }, args, cause, connect);
  }
}

// The one classifier: anything a virsh call threw, as a VirshError whose kind tells callers whether
// libvirt as a whole is unusable (missing, unreachable, timeout) and whose message says what to do.
export function classifyVirshFailure(options: VirshTarget, args: readonly string[], cause: unknown, connected = true): VirshError {
  const command = `virsh${connected ? ` -c ${options.uri}` : ''} ${args.join(' ')}`;
  if (!isExecaError(cause)) return new VirshError('failed', `\`${command}\` failed: ${errorMessage(cause)}`, '', { cause });
  const output: unknown = cause.stderr;
  const stderr = typeof output === 'string' ? output.trim() : '';
  const said = truncateForLog(stderr.replace(/\s*\n\s*/g, ' | '), 300);
  if (cause.code === 'ENOENT' || cause.code === 'EACCES') {
    return new VirshError('missing', `cannot run \`${options.virshPath}\` (${cause.code}): install libvirt-clients (Debian/Ubuntu: apt-get install libvirt-clients) or set \`virshPath\`.`, stderr, { cause });
  }
  if (cause.isCanceled) return new VirshError('canceled', `\`${command}\` was canceled`, stderr, { cause });
  if (cause.timedOut) {
    return new VirshError('timeout', `\`${command}\` did not finish within ${options.timeoutMs} ms: libvirtd at \`${options.uri}\` is stuck or overloaded (raise \`timeoutMs\` if it is only slow).`, stderr, { cause });
  }
  if (NO_DOMAIN.test(stderr)) return new VirshError('no-domain', `libvirt has no domain \`${args.at(-1) ?? ''}\` (it stopped or was undefined): ${said}`, stderr, { cause });
  if (UNREACHABLE.test(stderr)) {
    return new VirshError('unreachable', `cannot reach libvirt at \`${options.uri}\`: ${said}. Is libvirtd (or virtqemud) running, and may this user use it (root, or the libvirt group)?`, stderr, { cause });
  }
  const how = cause.exitCode === undefined ? `was ended by ${cause.signal ?? 'a signal'}` : `exited with code ${cause.exitCode}`;
  return new VirshError('failed', `\`${command}\` ${how}: ${said || '(no output on stderr)'}`, stderr, { cause });
}

// Create the real seam; it logs one line when libvirt becomes unusable and one when it answers again.
export function createVirsh(options: VirshOptions = {}): Virsh {
  return new VirshCli(resolveVirshOptions(options));
}

class VirshCli implements Virsh {
  readonly #options: ResolvedVirshOptions;
  readonly #logger: Logger;
  #outage: string | undefined;
  /** Whether `list --uuid --name --id` works here (libvirt >= 7.x); learnt on first use. */
  #combinedList = true;

  constructor(options: ResolvedVirshOptions) {
    this.#options = options;
    this.#logger = options.logger;
  }

  get uri(): string {
    return this.#options.uri;
  }

  async listDomains(options: VirshCallOptions = {}): Promise<DomainSummary[]> {
    if (this.#combinedList) {
      try {
        return parseDomainList(await this.#run(['list', '--uuid', '--name', '--id'], options.signal));
      } catch (error) {
        if (!(error instanceof VirshError && error.kind === 'failed' && /exclusive|unknown option|unsupported/i.test(error.stderr))) throw error;
        this.#combinedList = false;
      }
    }
    return parseDomainTable(await this.#run(['list'], options.signal));
  }

  dumpXml(domain: string, options: VirshCallOptions = {}): Promise<string> {
    return this.#run(['dumpxml', domain], options.signal);
  }

  async *followEvents({ signal }: { signal: AbortSignal }): AsyncGenerator<VirshStreamItem> {
    const { restartDelayMs, maxRestartDelayMs } = this.#options;
    let delay = restartDelayMs;
    while (!signal.aborted) {
      const started = Date.now();
      const args = ['event', '--loop', '--all'];
      const { execa } = await loadExeca();
      const child = execa(this.#options.virshPath, ['-c', this.#options.uri, ...args], {
        ...VIRSH_ENV,
        stdin: 'ignore',
        buffer: { stdout: false },
        maxBuffer: { stderr: 64 * 1024 },
        cancelSignal: signal,
      });
      const outcome: Promise<unknown> = child.then(() => undefined, (error: unknown) => error);
      yield { type: 'stream-started' };
      try {
        for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) {
          const event = parseVirshEventLine(line);
          if (event) yield event;
        }
      } finally {
        // Reached on every exit path, including a consumer that stops iterating.
        child.kill();
      }
      const exit = await outcome;
      if (signal.aborted) return;
      const error = classifyVirshFailure(this.#options, args, exit ?? new Error('virsh event exited although it was told to loop'));
      this.#reportFailure(error);
      delay = Date.now() - started >= HEALTHY_STREAM_MS ? restartDelayMs : delay;
      yield { type: 'stream-ended', error, retryInMs: delay };
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        return;
      }
      delay = Math.min(delay * 2, maxRestartDelayMs);
    }
  }

  async #run(args: string[], signal: AbortSignal | undefined): Promise<string> {
    try {
      const stdout = await runVirsh(this.#options, args, { signal });
      this.#reportSuccess();
      return stdout;
    } catch (error) {
      if (error instanceof VirshError) this.#reportFailure(error);
      throw error;
    }
  }

  // libvirt-wide trouble is logged once per outage; the caller decides about anything else.
  #reportFailure(error: VirshError): void {
    if (error.kind !== 'missing' && error.kind !== 'unreachable' && error.kind !== 'timeout') return;
    if (this.#outage === undefined) {
      this.#logger.warn(`${error.message} Retrying in the background; the next success is logged.`);
    } else {
      this.#logger.debug(`libvirt still unavailable: ${error.message}`);
    }
    this.#outage = error.message;
  }

  #reportSuccess(): void {
    if (this.#outage === undefined) return;
    this.#outage = undefined;
    this.#logger.info(`libvirt at \`${this.#options.uri}\` answers again`);
  }
}

// Parse `virsh list --uuid --name --id`: one `UUID ID NAME` line per active domain (the name may hold spaces).
export function parseDomainList(stdout: string): DomainSummary[] {
  const domains: DomainSummary[] = [];
  for (const line of stdout.split('\n')) {
    const match = /^\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\s+(\d+)\s+(.+?)\s*$/i.exec(line);
    if (match?.[1] && match[2] && match[3]) domains.push({ uuid: match[1].toLowerCase(), id: Number(match[2]), name: match[3] });
  }
  return domains;
}

// Parse the default `virsh list` table (libvirt older than 7.x): `ID NAME STATE` rows; the name may hold spaces.
export function parseDomainTable(stdout: string): DomainSummary[] {
  const domains: DomainSummary[] = [];
  for (const line of stdout.split('\n')) {
    const match = TABLE_ROW.exec(line);
    if (match?.[1] && match[2]) domains.push({ id: Number(match[1]), name: match[2] });
  }
  return domains;
}

// Parse one line of `virsh event` output; null for anything that is not a domain event (continuation lines,
// `events received: N`).
export function parseVirshEventLine(line: string): DomainEvent | null {
  const match = EVENT_LINE.exec(line.trimEnd());
  const event = match?.[1];
  const domain = match?.[2] ?? match?.[3];
  if (!event || domain === undefined) return null;
  const rest = match?.[4] ?? '';
  if (event !== 'lifecycle') return { type: 'domain', domain, event, detail: rest };
  const [first = '', ...detail] = rest.split(' ');
  const lifecycle = LIFECYCLE_EVENTS.find((kind) => kind === first.toLowerCase());
  return lifecycle
    ? { type: 'domain', domain, event, lifecycle, detail: detail.join(' ') }
    : { type: 'domain', domain, event, detail: rest };
}
