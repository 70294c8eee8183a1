// Users and groups by name or number as the system resolves them: `getent` first (it sees LDAP, sssd,
// NIS, systemd-homed), /etc/passwd and /etc/group only when getent cannot answer. One lookup for
// `--control-group`, `--run-as` and the names the doctor prints. Synchronous: it runs at start-up and
// in the doctor, where a blocked loop costs nothing; every getent call has a deadline.
import type * as ChildProcess from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface UserEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
}

/** The seam: tests substitute their own (see createIdentityLookup's options). */
export interface IdentityLookup {
  /** A user by name or numeric uid; undefined when there is none. */
  user(nameOrId: string): UserEntry | undefined;
  /** A group by name or numeric gid; undefined when there is none. */
  group(nameOrId: string): GroupEntry | undefined;
}

export interface IdentityLookupOptions {
  /** The getent binary; default `getent` from PATH. */
  getentPath?: string;
  passwdFile?: string;
  groupFile?: string;
  /** Deadline of each getent call; default 5000 ms (an unreachable directory server must not hang us). */
  timeoutMs?: number;
}

export function createIdentityLookup(options: IdentityLookupOptions = {}): IdentityLookup {
  const { getentPath = 'getent', passwdFile = '/etc/passwd', groupFile = '/etc/group', timeoutMs = 5000 } = options;
  // The first line of `getent DATABASE KEY`, else the line of `file` whose name or id field is KEY.
  const find = (database: 'passwd' | 'group', file: string, key: string): string[] | undefined => {
    if (key === '' || key.includes('\n')) return undefined;
    try {
      // Loaded on first use: most CLI runs never resolve a name, and node:child_process costs start-up.
      const { execFileSync } = process.getBuiltinModule('node:child_process') as typeof ChildProcess;
      const line = execFileSync(getentPath, [database, key], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[0];
      if (line) return line.split(':');
    } catch {
      // Not found (exit 2), or no getent: the files decide.
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    return text.split('\n').map((line) => line.split(':')).find((fields) => fields[0] === key || fields[2] === key);
  };
  return {
    user(nameOrId) {
      const [name, , uid, gid, , home] = find('passwd', passwdFile, nameOrId) ?? [];
      if (!name || !isId(uid) || !isId(gid)) return undefined;
      return { name, uid: Number(uid), gid: Number(gid), home: home || '/' };
    },
    group(nameOrId) {
      const [name, , gid] = find('group', groupFile, nameOrId) ?? [];
      if (!name || !isId(gid)) return undefined;
      return { name, gid: Number(gid) };
    },
  };
}

function isId(field: string | undefined): field is string {
  return field !== undefined && /^\d+$/.test(field);
}

/** This system's users and groups. */
export const systemIdentities: IdentityLookup = createIdentityLookup();
