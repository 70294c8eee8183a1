// Debian packages negotiator-host and negotiator-guest, built with dpkg-deb from the single executables
// (packaging/sea.ts): the executable in /usr/bin, the systemd unit from examples/services/ (ExecStart made
// absolute), the guest's udev rule that starts the service when its port appears, the empty
// /usr/lib/negotiator/commands, examples, copyright, changelog, and the maintainer scripts of
// packaging/debian/ (enable and start where systemd runs, stop on removal, nothing left on purge).
// Depends: the executables need only glibc, libgcc_s and libstdc++; the glibc floor is read from the
// binary itself (objdump -T), the libstdc++ floor is checked against the symbol versions GCC 7 has.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import type { Arch } from './node-runtime.js';
import type { Program } from './sea.js';

const run = promisify(execFile);

export const DEB_ARCH: Record<Arch, string> = { x64: 'amd64', arm64: 'arm64' };
/** Set NEGOTIATOR_DEB_MAINTAINER to sign the packages with a real address. */
const MAINTAINER = process.env.NEGOTIATOR_DEB_MAINTAINER || 'The negotiator authors <maintainers@users.noreply.h-seed-b6d48cb4.example>';
const HOMEPAGE = 'https://www.npmjs.com/package/kvm-negotiator';

// The newest libstdc++ symbol versions GCC 7 (libstdc++6 >= 7, Debian 10 and later) provides.
const LIBSTDCXX_CEILING = { GLIBCXX: '3.4.24', CXXABI: '1.3.11' };

const DESCRIPTIONS: Record<Program, string> = {
  'negotiator-host':
    'negotiator host agent: run commands inside KVM/QEMU guests\n' +
    ' negotiator runs commands between a KVM/QEMU host and its guests, both ways,\n' +
    ' over two virtio-serial ports (no network), with exit codes, streamed output\n' +
    ' and deadlines. This package holds the host side: the negotiator-host command\n' +
    ' and its daemon (a systemd service) that serves every guest\'s channels.\n' +
    ' .\n' +
    ' The executable is self-contained (it embeds its Node.js runtime).',
  'negotiator-guest':
    'negotiator guest agent: run commands on the KVM/QEMU host\n' +
    ' negotiator runs commands between a KVM/QEMU host and its guests, both ways,\n' +
    ' over two virtio-serial ports (no network), with exit codes, streamed output\n' +
    ' and deadlines. This package holds the guest side: the negotiator-guest command\n' +
    ' and its daemon (a systemd service, started when the port appears).\n' +
    ' .\n' +
    ' The executable is self-contained (it embeds its Node.js runtime).',
};

export interface DebInput {
  packageRoot: string;
  version: string;
  program: Program;
  arch: Arch;
  executable: string;
  /** Third-party JavaScript packages inside the executable (name, version, licence). */
  bundled: BundledPackage[];
  outDir: string;
  workDir: string;
  /** dpkg-deb's compressor: xz (default, 27 MB against gzip's 40 MB, but about a minute per package) or gzip (seconds). */
  compression?: 'xz' | 'gzip';
}

export interface BundledPackage {
  name: string;
  version: string;
  license: string;
}

const compareVersions = (a: string, b: string): number => {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
};

/** The highest version of each symbol-version family (GLIBC, GLIBCXX, CXXABI) the binary needs. */
export async function symbolFloors(executable: string): Promise<Record<string, string>> {
  const { stdout } = await run('objdump', ['-T', executable], { maxBuffer: 64 << 20 });
  const floors: Record<string, string> = {};
  for (const match of stdout.matchAll(/\b(GLIBC|GLIBCXX|CXXABI)_(\d+(?:\.\d+)*)\b/g)) {
    const [, family, version] = match as unknown as [string, string, string];
    if (!floors[family] || compareVersions(version, floors[family]!) > 0) floors[family] = version;
  }
  return floors;
}

async function depends(executable: string): Promise<string> {
  const floors = await symbolFloors(executable);
  for (const family of ['GLIBCXX', 'CXXABI'] as const) {
    if (floors[family] && compareVersions(floors[family]!, LIBSTDCXX_CEILING[family]) > 0) {
      throw new Error(`\`${executable}\` needs ${family}_${floors[family]}, newer than libstdc++6 (>= 7) provides: raise the floor in packaging/deb.ts.`);
    }
  }
  if (!floors.GLIBC) throw new Error(`objdump found no GLIBC symbol versions in \`${executable}\`.`);
  return `libc6 (>= ${floors.GLIBC}), libgcc-s1 | libgcc1, libstdc++6 (>= 7)`;
}

const NODE_LICENSE_FILE = 'LICENSE.Node.js.gz';

// debian/copyright in the machine-readable format; the embedded Node.js licence (110 kB, with the full
// Apache 2.0 text that lintian wants referenced, not copied, in copyright) goes in a file beside it.
function copyright(input: DebInput): string {
  const indent = (text: string): string =>
    text
      .trimEnd()
      .split('\n')
      .map((line) => (line.trim() === '' ? ' .' : ` ${line}`))
      .join('\n');
  const mit = readFileSync(path.join(input.packageRoot, 'LICENSE'), 'utf8');
  const bundled = input.bundled.map((entry) => ` ${entry.name} ${entry.version} (${entry.license})`).join('\n');
  return [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
    'Upstream-Name: negotiator',
    `Source: ${HOMEPAGE}`,
    '',
    'Files: *',
    'Copyright: 2026 The negotiator authors',
    'License: Expat',
    '',
    `Files: usr/bin/${input.program}`,
    'Copyright: 2026 The negotiator authors, Node.js contributors and the authors of the',
    ' JavaScript packages listed in the Comment field',
    'License: Expat and Node.js',
    'Comment: A Node.js single executable application: the Node.js runtime with',
    ' negotiator and these JavaScript packages bundled in (each under its own licence,',
    ' all of them Expat-like):',
    bundled,
    '',
    'License: Expat',
    indent(mit.replace(/^MIT License\s*\n\s*\nCopyright[^\n]*\n\s*\n/, '')),
    '',
    'License: Node.js',
    ` The licence of Node.js and of the libraries it embeds (among them some under the`,
    ` Apache License 2.0, see /usr/share/common-licenses/Apache-2.0) is in full in`,
    ` /usr/share/doc/${input.program}/${NODE_LICENSE_FILE}.`,
    '',
  ].join('\n');
}

// Each with its reason (lintian prints the comment with the tag).
const LINTIAN_OVERRIDES = `# Node.js links zlib in statically, and the executable embeds Node.js: self-contained by design.
embedded-library zlib [usr/bin/@PROGRAM@]
# The official Node.js binaries the executable is made from are not position-independent.
hardening-no-pie [usr/bin/@PROGRAM@]
`;

// A short manual page: the options live in `PROGRAM --help`, which the page points to.
function manPage(input: DebInput, date: string): string {
  const side = input.program === 'negotiator-host' ? 'host' : 'guest';
  const summary = side === 'host' ? 'run commands inside KVM/QEMU guests, and serve their requests' : 'run commands on this guest\'s KVM/QEMU host, and serve its requests';
  const day = new Date(date).toISOString().slice(0, 10);
  return [
    `.TH ${input.program.toUpperCase().replace(/-/g, '\\-')} 1 "${day}" "${input.version}" "negotiator"`,
    '.SH NAME',
    `${input.program.replace(/-/g, '\\-')} \\- ${summary}`,
    '.SH SYNOPSIS',
    `.B ${input.program.replace(/-/g, '\\-')}`,
    side === 'host' ? '[\\fIoptions\\fR] [\\fIcommand\\fR] [\\fIguest\\fR]' : '[\\fIoptions\\fR] [\\fIcommand\\fR]',
    '.SH DESCRIPTION',
    `negotiator runs commands between a KVM/QEMU host and its guests, both ways, over two virtio\\-serial ports.`,
    `The daemon (\\fB\\-\\-daemon\\fR) runs as the systemd service \\fB${input.program}.service\\fR;`,
    `\\fB${input.program.replace(/-/g, '\\-')} doctor\\fR checks the setup and names the fix for what is missing.`,
    'Commands it serves go in \\fI/usr/lib/negotiator/commands\\fR (empty as installed) or a \\fB\\-\\-commands\\-dir\\fR.',
    '.SH OPTIONS',
    `Run \\fB${input.program.replace(/-/g, '\\-')} \\-\\-help\\fR for the options and subcommands of this version.`,
    '.SH SEE ALSO',
    `\\fI/usr/share/doc/${input.program}/examples/\\fR, ${HOMEPAGE}`,
    '',
  ].join('\n');
}

function changelog(input: DebInput, date: string): string {
  return `${input.program} (${input.version}) unstable; urgency=medium\n\n  * Release ${input.version}: built by \`npm run package\` from the kvm-negotiator sources.\n\n -- ${MAINTAINER}  ${date}\n`;
}

// A file under the package root, with its mode.
function put(root: string, relative: string, content: Buffer | string, mode = 0o644): void {
  const file = path.join(root, relative);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  writeFileSync(file, content);
  chmodSync(file, mode);
}

function unitFor(input: DebInput): string {
  const text = readFileSync(path.join(input.packageRoot, 'examples', 'services', `${input.program}.service`), 'utf8');
  const execLine = new RegExp(`^ExecStart=${input.program} `, 'm');
  if (!execLine.test(text)) throw new Error(`examples/services/${input.program}.service has no \`ExecStart=${input.program} ...\` line to make absolute.`);
  return text
    .replace(execLine, `ExecStart=/usr/bin/${input.program} `)
    .replace(/^# Install:.*\n(#  .*\n)*/m, '# Installed by the Debian package: enabled and started at installation where systemd runs.\n')
    .replace(/^# Searched for in .*\n# be on the same default PATH\.\n/m, '');
}

/** Build OUT_DIR/PROGRAM_VERSION_DEBARCH.deb; returns its path. */
export async function buildDeb(input: DebInput, nodeLicense: string, date: string): Promise<string> {
  const side = input.program === 'negotiator-host' ? 'host' : 'guest';
  const root = path.join(input.workDir, `${input.program}-${input.arch}`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const doc = `usr/share/doc/${input.program}`;
  mkdirSync(path.join(root, 'usr/bin'), { recursive: true, mode: 0o755 });
  copyFileSync(input.executable, path.join(root, 'usr/bin', input.program));
  chmodSync(path.join(root, 'usr/bin', input.program), 0o755);
  put(root, `usr/lib/systemd/system/${input.program}.service`, unitFor(input));
  if (side === 'guest') put(root, 'usr/lib/udev/rules.d/90-negotiator-guest.rules', readFileSync(path.join(input.packageRoot, 'examples/services/90-negotiator-guest.rules')));
  mkdirSync(path.join(root, 'usr/lib/negotiator/commands'), { recursive: true, mode: 0o755 });
  put(root, `${doc}/copyright`, copyright(input));
  put(root, `${doc}/${NODE_LICENSE_FILE}`, gzipSync(nodeLicense, { level: 9 }));
  put(root, `usr/share/man/man1/${input.program}.1.gz`, gzipSync(manPage(input, date), { level: 9 }));
  put(root, `usr/share/lintian/overrides/${input.program}`, LINTIAN_OVERRIDES.replaceAll('@PROGRAM@', input.program));
  put(root, `${doc}/changelog.gz`, gzipSync(changelog(input, date), { level: 9 }));
  // Examples: the side's example commands (to copy into /usr/lib/negotiator/commands or /etc/negotiator),
  // the supervisord program, and for the host the libvirt channel definitions.
  const examples = [
    ...readdirSync(path.join(input.packageRoot, 'examples/commands', side)).map((name) => [`examples/commands/${side}/${name}`, `commands/${name}`]),
    [`examples/services/${input.program}.conf`, `supervisord/${input.program}.conf`],
    ...(side === 'host' ? readdirSync(path.join(input.packageRoot, 'libvirt')).map((name) => [`libvirt/${name}`, `libvirt/${name}`]) : []),
  ];
  for (const [from, to] of examples) put(root, `${doc}/examples/${to}`, readFileSync(path.join(input.packageRoot, from!)));
  const scripts: Record<string, string> = { '@PROGRAM@': input.program, '@SIDE@': side, '@RELOAD_UDEV@': side === 'guest' ? 'udevadm control --reload >/dev/null 2>&1 || true' : ':' };
  for (const script of ['postinst', 'prerm', 'postrm']) {
    let text = readFileSync(path.join(input.packageRoot, 'packaging', 'debian', script), 'utf8');
    for (const [key, value] of Object.entries(scripts)) text = text.replaceAll(key, value);
    put(root, `DEBIAN/${script}`, text, 0o755);
  }
  const files = readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && !path.relative(root, path.join(entry.parentPath, entry.name)).startsWith('DEBIAN'))
    .map((entry) => path.relative(root, path.join(entry.parentPath, entry.name)))
    .sort();
  const md5sums = files.map((file) => `${createHash('md5').update(readFileSync(path.join(root, file))).digest('hex')}  ${file}\n`).join('');
  put(root, 'DEBIAN/md5sums', md5sums);
  const installedKiB = Math.ceil(files.reduce((sum, file) => sum + statSync(path.join(root, file)).size, 0) / 1024);
  const control = [
    `Package: ${input.program}`,
    `Version: ${input.version}`,
    `Architecture: ${DEB_ARCH[input.arch]}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${installedKiB}`,
    `Depends: ${await depends(input.executable)}`,
    'Section: admin',
    'Priority: optional',
    `Homepage: ${HOMEPAGE}`,
    `Description: ${DESCRIPTIONS[input.program]}`,
    '',
  ].join('\n');
  put(root, 'DEBIAN/control', control);
  const deb = path.join(input.outDir, `${input.program}_${input.version}_${DEB_ARCH[input.arch]}.deb`);
  await run('dpkg-deb', ['--root-owner-group', `-Z${input.compression ?? 'xz'}`, '--build', root, deb], { timeout: 1_800_000 });
  rmSync(root, { recursive: true, force: true });
  return deb;
}
