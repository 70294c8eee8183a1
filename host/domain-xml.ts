// The parts of `virsh dumpxml` discovery needs (name, uuid, id, channels), read with a small XML reader
// (no dependency): elements, attributes in either quote style, text, entities, comments, CDATA.
import type { ChannelEndpoint, ChannelRole, DiscoveredGuest } from './guest-model.js';
import { CHANNEL_NAMES } from '../common/wire/protocol.js';

// ---- the domain XML ----------------------------------------------------------------------------------

/** One `<channel>` of a domain, as far as discovery cares. */
export interface DomainChannel {
  /** `<channel type=...>`: `unix`, `pty`, `spicevmc`, ... */
  type: string;
  /** `<target name=...>` */
  name?: string;
  /** `<target type=...>`: `virtio`, `guestfwd`, ... */
  targetType?: string;
  /** `<source path=...>`: present for `unix` channels of a running domain. */
  path?: string;
  /** `<source mode=...>`: `bind` (QEMU listens: what we need) or `connect`. */
  mode?: string;
  /** `<target state=...>` (libvirt >= 1.2.x, running domains). */
  state?: 'connected' | 'disconnected';
}

export interface DomainDescription {
  name: string;
  uuid?: string;
  /** Absent for an inactive domain (`id` missing or -1). */
  id?: number;
  channels: DomainChannel[];
}

// Read what discovery needs from `virsh dumpxml` output. Throws a SyntaxError saying where the XML is bad.
export function parseDomainXml(xml: string): DomainDescription {
  const root = parseXml(xml);
  if (root.name !== 'domain') throw new SyntaxError(`expected a <domain> document, got <${root.name}>`);
  const name = childText(root, 'name');
  if (!name) throw new SyntaxError('the <domain> has no <name>');
  const description: DomainDescription = { name, channels: [] };
  const uuid = childText(root, 'uuid');
  if (uuid) description.uuid = uuid.toLowerCase();
  const id = root.attributes.get('id');
  if (id !== undefined && /^\d+$/.test(id.trim())) description.id = Number(id);
  for (const devices of children(root, 'devices')) {
    for (const channel of children(devices, 'channel')) {
      const source = children(channel, 'source')[0]?.attributes;
      const target = children(channel, 'target')[0]?.attributes;
      const entry: DomainChannel = { type: channel.attributes.get('type') ?? '' };
      setDefined(entry, 'name', target?.get('name'));
      setDefined(entry, 'targetType', target?.get('type'));
      setDefined(entry, 'path', source?.get('path'));
      setDefined(entry, 'mode', source?.get('mode'));
      const state = target?.get('state');
      if (state === 'connected' || state === 'disconnected') entry.state = state;
      description.channels.push(entry);
    }
  }
  return description;
}

// The negotiator channels a domain has, and why any negotiator channel it has is unusable.
export function findNegotiatorChannels(domain: DomainDescription): {
  channels: DiscoveredGuest['channels'];
  problems: string[];
} {
  const channels: DiscoveredGuest['channels'] = {};
  const problems: string[] = [];
  for (const role of Object.keys(CHANNEL_NAMES) as ChannelRole[]) {
    const name = CHANNEL_NAMES[role];
    const channel = domain.channels.find((candidate) => candidate.name === name);
    if (!channel) continue;
    if (channel.type !== 'unix') {
      problems.push(`channel ${name} is <channel type='${channel.type}'>; negotiator-host needs <channel type='unix'> (see libvirt/)`);
    } else if (channel.mode === 'connect') {
      problems.push(`channel ${name} has <source mode='connect'>, so QEMU would connect to a socket nobody serves; use mode='bind' or leave <source> out (see libvirt/)`);
    } else if (!channel.path) {
      problems.push(`channel ${name} has no <source path> in the live XML; is the domain running?`);
    } else {
      const endpoint: ChannelEndpoint = { path: channel.path };
      if (channel.state) endpoint.state = channel.state;
      channels[role] = endpoint;
    }
  }
  return { channels, problems };
}

function setDefined<K extends keyof DomainChannel>(target: DomainChannel, key: K, value: DomainChannel[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}

// ---- a small XML reader: elements, attributes (either quote), text, entities, comments, CDATA ----------

interface XmlElement {
  name: string;
  attributes: Map<string, string>;
  children: XmlElement[];
  text: string;
}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const NAME = /[^\s/>=]+/y;

function children(element: XmlElement, name: string): XmlElement[] {
  return element.children.filter((child) => child.name === name);
}

function childText(element: XmlElement, name: string): string | undefined {
  return children(element, name)[0]?.text.trim();
}

function decodeEntities(text: string, at: number): string {
  return text.replace(/&([^;&\s]*);?/g, (whole, entity: string) => {
    if (!whole.endsWith(';')) throw new SyntaxError(`bad XML: unterminated entity near offset ${at}`);
    const code = /^#x([0-9a-f]+)$/i.exec(entity)?.[1];
    const decimal = /^#(\d+)$/.exec(entity)?.[1];
    const value = code !== undefined ? String.fromCodePoint(parseInt(code, 16))
      : decimal !== undefined ? String.fromCodePoint(Number(decimal))
      : ENTITIES[entity];
    if (value === undefined) throw new SyntaxError(`bad XML: unknown entity &${entity}; near offset ${at}`);
    return value;
  });
}

function parseXml(xml: string): XmlElement {
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let at = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`bad XML: ${what} at offset ${at}`);
  };
  const skipPast = (end: string, what: string): void => {
    const found = xml.indexOf(end, at);
    if (found < 0) fail(`unterminated ${what}`);
    at = found + end.length;
  };
  while (at < xml.length) {
    const open = xml.indexOf('<', at);
    const text = xml.slice(at, open < 0 ? xml.length : open);
    const current = stack.at(-1);
    if (current) current.text += decodeEntities(text, at);
    else if (text.trim() !== '') fail('text outside the root element');
    if (open < 0) break;
    at = open;
    if (xml.startsWith('<!--', at)) skipPast('-->', 'comment');
    else if (xml.startsWith('<![CDATA[', at)) {
      const end = xml.indexOf(']]>', at);
      if (end < 0 || !current) fail('unterminated or misplaced CDATA section');
      if (current) current.text += xml.slice(at + 9, end);
      at = end + 3;
    } else if (xml.startsWith('<?', at)) skipPast('?>', 'processing instruction');
    else if (xml.startsWith('<!', at)) {
      const end = xml.indexOf('>', at);
      if (end < 0 || xml.slice(at, end).includes('[')) fail('unsupported or unterminated declaration');
      at = end + 1;
    } else if (xml.startsWith('</', at)) {
      const end = xml.indexOf('>', at);
      const name = end < 0 ? '' : xml.slice(at + 2, end).trim();
      if (stack.pop()?.name !== name) fail(`unexpected </${name}>`);
      at = end + 1;
    } else {
      at += 1;
      NAME.lastIndex = at;
      const name = NAME.exec(xml)?.[0] ?? fail('element without a name');
      at += name.length;
      const element: XmlElement = { name, attributes: new Map(), children: [], text: '' };
      if (current) current.children.push(element);
      else if (root) fail('a second root element');
      else root = element;
      for (;;) {
        while (/\s/.test(xml[at] ?? '')) at += 1;
        if (xml.startsWith('/>', at)) {
          at += 2;
          break;
        }
        if (xml[at] === '>') {
          at += 1;
          stack.push(element);
          break;
        }
        NAME.lastIndex = at;
        const attribute = NAME.exec(xml)?.[0] ?? fail(`bad attribute in <${name}>`);
        at += attribute.length;
        while (/\s/.test(xml[at] ?? '')) at += 1;
        if (xml[at] !== '=') fail(`attribute ${attribute} of <${name}> has no value`);
        at += 1;
        while (/\s/.test(xml[at] ?? '')) at += 1;
        const quote = xml[at];
        if (quote !== '"' && quote !== "'") fail(`attribute ${attribute} of <${name}> is not quoted`);
        const end = xml.indexOf(quote ?? '', at + 1);
        if (end < 0) fail(`unterminated value of attribute ${attribute}`);
        if (element.attributes.has(attribute)) fail(`attribute ${attribute} given twice in <${name}>`);
        element.attributes.set(attribute, decodeEntities(xml.slice(at + 1, end), at));
        at = end + 1;
      }
    }
  }
  if (stack.length > 0) fail(`<${stack.at(-1)?.name ?? ''}> is never closed`);
  return root ?? fail('no root element');
}
