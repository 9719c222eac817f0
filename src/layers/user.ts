/**
 * Resolving an image's `User` ("name", "uid", "name:group", "uid:gid", ...) against the
 * /etc/passwd and /etc/group of its root filesystem. The files are opened with
 * openat2(RESOLVE_IN_ROOT), so a symlinked /etc/passwd is followed inside the rootfs only.
 */
import * as fs from 'node:fs';
import { KeelError } from '../util/errors.js';

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** Home directory from passwd, when the user is listed there. */
  home?: string;
  name?: string;
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    out.push({ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '' });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 3 || !/^\d+$/.test(f[2]!)) continue;
    out.push({ name: f[0]!, gid: Number(f[2]), members: (f[3] ?? '').split(',').map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}

/** Reads a file inside `rootfs` without ever leaving it; undefined when it does not exist. */
export async function readFileInRoot(rootfs: string, path: string, limit = 4 << 20): Promise<string | undefined> {
  const { loadFsSys, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS } = await import('../runtime/sys/fs.js');
  const sys = await loadFsSys();
  const dirfd = fs.openSync(rootfs, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    let fd: number;
    try {
      fd = sys.openat2(dirfd, path.replace(/^\/+/, ''), fs.constants.O_RDONLY | 0o2000000 /* O_CLOEXEC */, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return undefined;
      throw err;
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) return undefined;
      if (st.size > limit) throw new KeelError(`${path} in ${rootfs}: larger than ${limit} bytes`);
      return fs.readFileSync(fd, 'utf8');
    } finally {
      fs.closeSync(fd);
    }
  } finally {
    fs.closeSync(dirfd);
  }
}

const MAX_ID = 0xffffffff - 1;

function numericId(s: string): number | undefined {
  if (!/^\d+$/.test(s)) return undefined;
  const n = Number(s);
  if (n > MAX_ID) throw new KeelError(`user: id ${s} is out of range`);
  return n;
}

/** Resolves an image config's `User` in a root filesystem, as Docker and runc do. */
export async function resolveUser(rootfs: string, spec: string | undefined): Promise<ResolvedUser> {
  const userSpec = (spec ?? '').trim();
  const [userPart = '', groupPart, ...rest] = userSpec.split(':');
  if (rest.length) throw new KeelError(`image config User ${JSON.stringify(spec)}: expected USER or USER:GROUP`);
  const passwdText = await readFileInRoot(rootfs, 'etc/passwd');
  const passwd = passwdText ? parsePasswd(passwdText) : [];
  const u = userPart === '' ? '0' : userPart;
  let entry: PasswdEntry | undefined;
  let uid = numericId(u);
  if (uid === undefined) {
    entry = passwd.find((p) => p.name === u);
    if (!entry) throw new KeelError(`image config User ${JSON.stringify(spec)}: no user ${JSON.stringify(u)} in /etc/passwd`);
    uid = entry.uid;
  } else {
    entry = passwd.find((p) => p.uid === uid);
  }
  let groups: GroupEntry[] | undefined;
  const loadGroups = async () => {
    if (!groups) {
      const t = await readFileInRoot(rootfs, 'etc/group');
      groups = t ? parseGroup(t) : [];
    }
    return groups;
  };
  let gid: number;
  if (groupPart !== undefined && groupPart !== '') {
    const g = numericId(groupPart);
    if (g !== undefined) gid = g;
    else {
      const ge = (await loadGroups()).find((x) => x.name === groupPart);
      if (!ge) throw new KeelError(`image config User ${JSON.stringify(spec)}: no group ${JSON.stringify(groupPart)} in /etc/group`);
      gid = ge.gid;
    }
  } else {
    gid = entry?.gid ?? 0;
  }
  // Supplementary groups come from /etc/group only when the group was not given explicitly
  // (runc's and umoci's rule).
  const additionalGids: number[] = [];
  if (entry && (groupPart === undefined || groupPart === '')) {
    for (const g of await loadGroups()) {
      if (g.members.includes(entry.name) && g.gid !== gid && !additionalGids.includes(g.gid)) additionalGids.push(g.gid);
    }
  }
  const out: ResolvedUser = { uid, gid, additionalGids };
  if (entry) {
    out.name = entry.name;
    if (entry.home) out.home = entry.home;
  }
  return out;
}
