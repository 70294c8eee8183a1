import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import {
  createAgentInfo,
  parseOsRelease,
  readOsInfo,
  readPackageVersion,
  sanitizePeerText,
} from '../../../common/wire/agent-info.js';
import { CAPABILITIES, PROTOCOL_VERSION } from '../../../common/wire/protocol.js';

const FIXTURE = [
  '# A fixture in the os-release(5) format, with every quoting style',
  'NAME="Example GNU/Linux"',
  'ID=example',
  "ID_LIKE='debian ubuntu'",
  'VERSION_ID="12.3"',
  '   # an indented comment',
  'VERSION="12.3 (\\"Quoted\\" \\$edition \\\\ \\`tick\\`)"',
  'VERSION_CODENAME=bookworm # a trailing comment',
  'PRETTY_NAME="Example"\' single\'\\ joined',
  'HOME_URL=https://example.org/#anchor',
  'EMPTY=',
  'EMPTY_QUOTED=""',
  'not a variable line',
  '1BAD=starts with a digit',
  'UNTERMINATED="no end',
  'TWO_WORDS=two words',
  'BUILD_ID=first',
  'BUILD_ID=second',
  'WINDOWS="crlf"\r',
  '',
].join('\n');

t.test('parseOsRelease handles quotes, escapes and comments', async (t) => {
  t.same(parseOsRelease(FIXTURE), {
    NAME: 'Example GNU/Linux',
    ID: 'example',
    ID_LIKE: 'debian ubuntu',
    VERSION_ID: '12.3',
    VERSION: '12.3 ("Quoted" $edition \\ `tick`)',
    VERSION_CODENAME: 'bookworm',
    PRETTY_NAME: 'Example single joined',
    HOME_URL: 'https://example.org/#anchor',
    EMPTY: '',
    EMPTY_QUOTED: '',
    BUILD_ID: 'second',
    WINDOWS: 'crlf',
  });
});

t.test('readOsInfo reads a fixture file', async (t) => {
  const directory = t.testdir({ 'os-release': FIXTURE });
  const info = await readOsInfo({ osReleasePath: path.join(directory, 'os-release') });
  t.same(info, {
    type: os.type(),
    version: os.release(),
    hostname: os.hostname(),
    distributor: 'example',
    release: '12.3',
    codename: 'bookworm',
  });
});

t.test('readOsInfo without os-release keeps the kernel facts only', async (t) => {
  const directory = t.testdir({ 'os-release': 'NAME=Only a name\nPRETTY_NAME="x"\n' });
  t.same(await readOsInfo({ osReleasePath: path.join(directory, 'missing') }), {
    type: os.type(),
    version: os.release(),
    hostname: os.hostname(),
  });
  const partial = await readOsInfo({ osReleasePath: path.join(directory, 'os-release') });
  t.notOk('distributor' in partial || 'release' in partial || 'codename' in partial, 'absent fields stay absent');
});

function readSystemOsRelease(): string | undefined {
  for (const candidate of ['/etc/os-release', '/usr/lib/os-release']) {
    try {
      return readFileSync(candidate, 'utf8');
    } catch {
      // try the next one
    }
  }
  return undefined;
}
const systemOsRelease = readSystemOsRelease();

t.test('readOsInfo defaults to the system os-release', { skip: systemOsRelease === undefined && 'no os-release file here' }, async (t) => {
  const fields = parseOsRelease(systemOsRelease ?? '');
  const info = await readOsInfo();
  t.equal(info.distributor, fields.ID || undefined);
  t.equal(info.release, fields.VERSION_ID || undefined);
  t.equal(info.codename, fields.VERSION_CODENAME || undefined);
  t.equal(info.hostname, os.hostname());
});

t.test('readPackageVersion reads the package root package.json once', async (t) => {
  const packageJson = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string };
  t.equal(readPackageVersion(), packageJson.version);
  t.match(readPackageVersion(), /^\d+\.\d+\.\d+/);
});

t.test('createAgentInfo fills every field', async (t) => {
  const osInfo = { type: 'Linux', version: '6.1.0', hostname: 'box' };
  const info = createAgentInfo({ side: 'guest', os: osInfo, nonce: 'abc' });
  t.same(info, {
    protocol: PROTOCOL_VERSION,
    name: 'negotiator',
    version: readPackageVersion(),
    side: 'guest',
    os: osInfo,
    capabilities: [...CAPABILITIES],
    nonce: 'abc',
    pid: process.pid,
  });
  info.capabilities.push('mutated');
  t.notOk((CAPABILITIES as readonly string[]).includes('mutated'), 'capabilities is a copy');
  const first = createAgentInfo({ side: 'host', os: osInfo });
  const second = createAgentInfo({ side: 'host', os: osInfo });
  t.match(first.nonce, /^[0-9a-f]{32}$/, 'a random nonce by default');
  t.not(first.nonce, second.nonce, 'fresh for every call');
});

t.test('sanitizePeerText', async (t) => {
  t.equal(sanitizePeerText('plain host-1.example'), 'plain host-1.example');
  t.equal(sanitizePeerText('line\nbreak\r\nand\ttab'), 'line break and tab', 'line breaks and tabs become spaces');
  t.equal(sanitizePeerText('\u001b[31mred\u001b[0m\u0007\0'), '[31mred[0m', 'escape, bell and NUL removed');
  t.equal(sanitizePeerText('a\u2028b\u202ec\u2066d\ufeff'), 'a bcd', 'separators, bidi overrides and BOM handled');
  t.equal(sanitizePeerText('x\ud800y\udc00z'), 'xyz', 'unpaired surrogates removed');
  t.equal(sanitizePeerText('  padded  '), 'padded');
  t.equal(sanitizePeerText('a'.repeat(300)), 'a'.repeat(256), 'default cap 256');
  t.equal(sanitizePeerText('abcdef', 3), 'abc');
  t.equal(sanitizePeerText('😀😀😀', 2), '😀😀', 'cut by code point, never inside a surrogate pair');
  t.equal(sanitizePeerText(42), '42');
  t.equal(sanitizePeerText(true), 'true');
  for (const value of [undefined, null, {}, ['x'], Symbol('s')]) t.equal(sanitizePeerText(value), '');
  t.throws(() => sanitizePeerText('x', -1), { name: 'ConfigError', message: 'Expected `max` to be a non-negative integer, got `-1`.' });
});
