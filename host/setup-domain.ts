// `negotiator-host setup GUEST`: add negotiator's two channels to a libvirt domain's persistent
// definition, idempotently, and say what was done and that a full stop and start is needed.
//
// Why `virsh attach-device --config` (one call per missing channel) and not `virsh define` of edited XML:
// only the channel is sent, so nothing else of the definition is rewritten. `dumpxml` leaves secrets out
// (graphics passwords) unless given `--security-info`, and a define would also undo any change made
// between our dump and our define. libvirt validates the channel, adds the virtio-serial controller (and
// a PCIe port for it on q35) and the addresses itself, and refuses a second channel of the same name
// ("chardev already exists"), so two setups at once cannot add one twice. The price: two calls are not
// atomic; if the second fails, the first channel stays and running setup again adds the other.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EXIT_CODES, formatCliError, type CliIo } from '../common/cli/actions.js';
import { ConfigError, errorMessage, truncateForLog } from '../common/wire/errors.js';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';
import { parseDomainXml, type DomainChannel } from './domain-xml.js';
import { DEFAULT_LIBVIRT_URI, VIRSH_FAILURES, VirshError, createVirsh, resolveVirshOptions, runVirsh, type Virsh, type VirshOptions } from './virsh.js';

/** What `virsh dominfo` says of a domain. */
export interface DomainState {
  persistent: boolean;
  /** Active: running, paused, shutting down. */
  running: boolean;
}

/**
 * The virsh calls about persistent definitions that host/virsh.ts does not make. Implementations throw
 * only VirshError (kind `no-domain` for an unknown domain).
 */
export interface DomainDefinitions {
  readonly uri: string;
  /** `virsh --version`: the client's version (it proves virsh can be run). */
  version(): Promise<string>;
  /** `virsh list --all --name`: every domain libvirt knows, running or not. */
  listAllDomains(): Promise<string[]>;
  describeDomain(domain: string): Promise<DomainState>;
  /** `virsh dumpxml --inactive`: the persistent definition, which the next start uses. */
  dumpInactiveXml(domain: string): Promise<string>;
  /** `virsh attach-device DOMAIN FILE --config`: add one device to the persistent definition only. */
  attachDeviceToConfig(domain: string, deviceXml: string): Promise<void>;
}

export interface DomainDefinitionsOptions extends Pick<VirshOptions, 'uri' | 'virshPath' | 'timeoutMs'> {
  /** Deadline of `attach-device` in ms; default 120000 (libvirtd may probe QEMU first: tens of seconds). */
  changeTimeoutMs?: number;
}

/** setup cannot (or must not) change this domain; the message says why and what to do. */
export class DomainSetupError extends Error {
  override name = 'DomainSetupError';
}

// Create the real seam: every call goes through runVirsh (host/virsh.ts), so one classifier sorts its failures.
export function createDomainDefinitions(options: DomainDefinitionsOptions = {}): DomainDefinitions {
  const { uri, virshPath, timeoutMs } = resolveVirshOptions(options);
  const changeTimeoutMs = options.changeTimeoutMs ?? 120_000;
  if (!Number.isSafeInteger(changeTimeoutMs) || changeTimeoutMs <= 0) {
    throw new ConfigError(`Expected the \`changeTimeoutMs\` option to be a positive integer, got \`${changeTimeoutMs}\``);
  }
  const run = (args: string[], { timeout = timeoutMs, connect = true } = {}): Promise<string> =>
    runVirsh({ uri, virshPath, timeoutMs }, args, { timeoutMs: timeout, connect });
  return {
    uri,
    version: async () => (await run(['--version'], { connect: false })).trim(),
    listAllDomains: async () => (await run(['list', '--all', '--name'])).split('\n').map((line) => line.trim()).filter(Boolean),
    describeDomain: async (domain) => parseDomInfo(await run(['dominfo', domain])),
    dumpInactiveXml: (domain) => run(['dumpxml', '--inactive', domain]),
    async attachDeviceToConfig(domain, deviceXml) {
      const dir = await mkdtemp(path.join(tmpdir(), 'negotiator-setup-'));
      try {
        const file = path.join(dir, 'device.xml');
        await writeFile(file, deviceXml, { mode: 0o600 });
        await run(['attach-device', domain, file, '--config'], { timeout: changeTimeoutMs });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

// Parse `virsh dominfo` (C locale): `Id: -` for an inactive domain, `Persistent: yes|no`.
export function parseDomInfo(stdout: string): DomainState {
  const field = (name: string): string | undefined => new RegExp(`^${name}:\\s*(.*?)\\s*$`, 'm').exec(stdout)?.[1];
  const id = field('Id');
  const persistent = field('Persistent');
  if (id === undefined || persistent === undefined) throw new VirshError('failed', `cannot read \`virsh dominfo\` output: ${truncateForLog(stdout)}`);
  return { persistent: persistent === 'yes', running: id !== '-' };
}

// ---- the channels ------------------------------------------------------------------------------------

// The <channel> element for one negotiator channel name: libvirt picks the socket path (libvirt >= 1.0.6).
export function createChannelXml(name: string): string {
  return `<channel type='unix'>\n  <target type='virtio' name='${name}'/>\n</channel>\n`;
}

// Why a channel with a negotiator name cannot serve negotiator; undefined when it can.
export function describeUnusableChannel(channel: DomainChannel): string | undefined {
  if (channel.type !== 'unix') return `is <channel type='${channel.type}'>, not type='unix'`;
  if (channel.targetType !== 'virtio') return `has <target type='${channel.targetType ?? ''}'>, not type='virtio'`;
  if (channel.mode === 'connect') return "has <source mode='connect'> (QEMU would connect to a socket nobody serves), not mode='bind'";
  return undefined;
}

/** What setup found and did. */
export interface SetupResult {
  domain: string;
  uri: string;
  /** Channels added now (with `dryRun`: that would be added). */
  added: string[];
  /** Channels already in the persistent definition. */
  present: string[];
  dryRun: boolean;
  running: boolean;
  /** The domain runs without some channel of its persistent definition: it must be stopped and started. */
  restartNeeded: boolean;
  /** The XML of each channel in `added`, in the same order. */
  xml: string[];
}

export interface SetUpDomainOptions {
  definitions: DomainDefinitions;
  /** For the running domain's live XML (does it already have the channels?). */
  virsh: Pick<Virsh, 'dumpXml'>;
  dryRun?: boolean;
}

// Add the missing negotiator channels to `domain`'s persistent definition. Throws DomainSetupError for an
// unknown or transient domain and for an unusable channel of the same name; VirshError when virsh fails.
export async function setUpDomain(domain: string, options: SetUpDomainOptions): Promise<SetupResult> {
  if (domain.trim() === '') throw new ConfigError('Expected a libvirt domain name, got an empty string');
  const { definitions } = options;
  let state: DomainState;
  try {
    state = await definitions.describeDomain(domain);
  } catch (error) {
    if (error instanceof VirshError && error.kind === VIRSH_FAILURES.noDomain) throw await createUnknownDomainError(domain, definitions);
    throw error;
  }
  if (!state.persistent) {
    throw new DomainSetupError(
      `\`${domain}\` is a transient domain: it has no persistent definition to add the channels to. Make it persistent ` +
        `(${virshHint(definitions.uri, 'dumpxml', '--inactive', domain)} > ${domain}.xml; ${virshHint(definitions.uri, 'define', `${domain}.xml`)}) ` +
        'and run setup again, or add the elements of libvirt/negotiator-channels.xml to the XML you create it from.',
    );
  }
  const persistentChannels = parseDomainXml(await definitions.dumpInactiveXml(domain)).channels;
  const present: string[] = [];
  const missing: string[] = [];
  for (const name of Object.values(CHANNEL_NAMES)) {
    const channel = persistentChannels.find((candidate) => candidate.name === name);
    const problem = channel && describeUnusableChannel(channel);
    if (problem) {
      throw new DomainSetupError(
        `\`${domain}\` already has a channel named ${name}, but it ${problem}. setup does not change existing devices: ` +
          `replace it by hand (${virshHint(definitions.uri, 'edit', domain)}) with the element in libvirt/negotiator-channels.xml.`,
      );
    }
    (channel ? present : missing).push(name);
  }
  const xml = missing.map(createChannelXml);
  if (!options.dryRun) {
    for (const [index, name] of missing.entries()) {
      try {
        await definitions.attachDeviceToConfig(domain, xml[index]!);
      } catch (error) {
        const done = missing.slice(0, index);
        const note = done.length > 0 ? ` (${done.join(', ')} was added; run setup again once the cause is fixed)` : '';
        throw new DomainSetupError(`could not add channel ${name} to \`${domain}\`${note}: ${errorMessage(error)}`, { cause: error });
      }
    }
  }
  let restartNeeded = false;
  if (state.running) {
    const live = parseDomainXml(await options.virsh.dumpXml(domain)).channels;
    restartNeeded = Object.values(CHANNEL_NAMES).some((name) => !live.some((channel) => channel.name === name));
  }
  return { domain, uri: definitions.uri, added: missing, present, dryRun: options.dryRun ?? false, running: state.running, restartNeeded, xml };
}

async function createUnknownDomainError(domain: string, definitions: DomainDefinitions): Promise<DomainSetupError> {
  const known = await definitions.listAllDomains().then(
    (names) => names.join(', ') || '(none)',
    (error: unknown) => `(could not list them: ${errorMessage(error)})`,
  );
  return new DomainSetupError(`libvirt at \`${definitions.uri}\` has no domain \`${domain}\`; the domains it knows: ${known}`);
}

// ---- output --------------------------------------------------------------------------------------------

// A virsh command line to show the user: `-c URI` unless plain `virsh` reaches the same libvirt (root, default URI).
export function virshHint(uri: string, ...args: string[]): string {
  const connection = uri === DEFAULT_LIBVIRT_URI && process.getuid?.() === 0 ? '' : ` -c ${uri}`;
  return `virsh${connection} ${args.map(quoteForShell).join(' ')}`;
}

function quoteForShell(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

// The lines telling the user how to make the channels take effect (a full stop and start, not a reboot).
export function describeRestart(domain: string, uri: string, running: boolean): string[] {
  if (!running) return [`${domain} is not running: the channels appear when it next starts (${virshHint(uri, 'start', domain)}).`];
  return [
    `${domain} is running without them: they take effect after a full stop and start (a reboot is not enough):`,
    `  ${virshHint(uri, 'shutdown', domain)}    (then wait until \`${virshHint(uri, 'domstate', domain)}\` says shut off)`,
    `  ${virshHint(uri, 'start', domain)}`,
  ];
}

// The text setup prints for a result.
export function formatSetupResult(result: SetupResult): string {
  const { domain, added, present, uri } = result;
  const count = `${added.length} channel${added.length === 1 ? '' : 's'}`;
  const lines: string[] = [];
  if (added.length === 0) {
    lines.push(`${domain}: already present, nothing to do (${present.join(', ')} in the persistent definition)`);
    if (result.restartNeeded) lines.push(...describeRestart(domain, uri, true));
    return `${lines.join('\n')}\n`;
  }
  const already = present.length > 0 ? `; ${present.join(', ')} already present` : '';
  if (result.dryRun) {
    lines.push(`${domain}: would add ${count} (${added.join(', ')})${already}. Dry run: nothing changed.`);
    lines.push(`Each would be added with \`${virshHint(uri, 'attach-device', domain, 'FILE', '--config')}\`, FILE holding:`);
    lines.push(...result.xml.map((xml) => xml.trimEnd()));
  } else {
    lines.push(`${domain}: added ${count} (${added.join(', ')}) to the persistent definition${already}.`);
  }
  lines.push(...describeRestart(domain, uri, result.running));
  return `${lines.join('\n')}\n`;
}

/** `negotiator-host setup` as the CLI parsed it. */
export interface SetupCliOptions {
  guestName: string;
  dryRun: boolean;
  json: boolean;
  libvirtUri: string;
}

// Run `negotiator-host setup GUEST`; resolves with the exit code.
export async function runSetup(options: SetupCliOptions, io: CliIo, program = 'negotiator-host'): Promise<number> {
  try {
    const result = await setUpDomain(options.guestName, {
      definitions: createDomainDefinitions({ uri: options.libvirtUri }),
      virsh: createVirsh({ uri: options.libvirtUri }),
      dryRun: options.dryRun,
    });
    io.stdout.write(options.json ? `${JSON.stringify(result)}\n` : formatSetupResult(result));
    return EXIT_CODES.ok;
  } catch (error) {
    io.stderr.write(formatCliError(program, error));
    return error instanceof ConfigError ? EXIT_CODES.usage : EXIT_CODES.failure;
  }
}
