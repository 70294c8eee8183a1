// Resource limits and the user commands run as, resolved once at start-up. Node cannot set rlimits on a
// child, so limits are applied by util-linux `prlimit` as an argv prefix (no shell involved).
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { COMMAND_PATH } from './runner.js';
import { ConfigError } from '../wire/errors.js';
import { systemIdentities, type IdentityLookup } from '../base/identity.js';
import { parseSize } from '../base/size.js';

/** The limits `--rlimit` accepts, by prlimit's option names. */
export const RLIMITS = {
  nofile: 'open files',
  nproc: 'processes of the user',
  as: 'address space (bytes)',
  cpu: 'CPU time (seconds)',
  fsize: 'file size (bytes)',
  core: 'core file size (bytes)',
} as const;
export type RlimitName = keyof typeof RLIMITS;

export interface ResourceLimit {
  name: RlimitName;
  value: number;
}

// Parse `NAME=VALUE` (VALUE a size: it may end in K, M or G), e.g. `nofile=1024`, `as=2G`, `cpu=600`.
export function parseResourceLimit(text: string): ResourceLimit {
  const match = /^([a-z]+)=(.*)$/i.exec(text.trim());
  const name = match?.[1]?.toLowerCase();
  const value = parseSize(match?.[2] ?? '');
  if (!name || !(name in RLIMITS) || value === undefined) {
    throw new ConfigError(`Expected \`--rlimit NAME=VALUE\` with NAME one of ${Object.keys(RLIMITS).join(', ')} (e.g. nofile=1024, as=2G), got \`${text}\``);
  }
  return { name: name as RlimitName, value };
}

// The argv prefix that applies the limits (hard and soft), or [] for none. Fails at start-up, not at the
// first command, when prlimit is missing.
export async function resolveLimitsWrapper(limits: readonly ResourceLimit[]): Promise<string[]> {
  if (limits.length === 0) return [];
  let prlimit: string | undefined;
  for (const dir of COMMAND_PATH.split(':')) {
    const candidate = path.join(dir, 'prlimit');
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) {
      prlimit = candidate;
      break;
    }
  }
  if (!prlimit) throw new ConfigError('`--rlimit` needs the `prlimit` program (util-linux); install it (apt-get install util-linux) or drop `--rlimit`');
  return [prlimit, ...limits.map((limit) => `--${limit.name}=${limit.value}:${limit.value}`), '--'];
}

export interface RunAs {
  uid: number;
  gid: number;
  home: string;
}

// Look the `--run-as` user up (name or numeric uid) as the system does: getent, then /etc/passwd.
export function resolveRunAs(user: string, identities: IdentityLookup = systemIdentities): RunAs {
  const entry = identities.user(user);
  if (!entry) {
    throw new ConfigError(`\`--run-as ${user}\`: no such user (neither \`getent passwd ${user}\` nor /etc/passwd knows it); create it (useradd --system ${user}) or give an existing one`);
  }
  return { uid: entry.uid, gid: entry.gid, home: entry.home };
}

// The service options for `--rlimit` and `--run-as` values (validated here, before any daemon I/O).
export async function resolveCommandIdentity(rlimits: readonly string[], runAs: string | undefined): Promise<{ wrapper: string[]; uid?: number; gid?: number; home?: string }> {
  const wrapper = await resolveLimitsWrapper(rlimits.map(parseResourceLimit));
  return runAs === undefined ? { wrapper } : { wrapper, ...resolveRunAs(runAs) };
}
