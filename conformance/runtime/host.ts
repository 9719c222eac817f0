// What the suite knows about the host it runs on: its own namespaces (the runtime namespaces the
// container is compared with), its status fields, and where each cgroup controller is mounted.
import { readFileSync, readdirSync, readlinkSync, existsSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';

export interface HostInfo {
  /** readlink of /proc/self/ns/<name> for this process (the runtime is started from it). */
  ns: Record<string, string>;
  status: Record<string, string>;
  uid: number;
  seccompMode: string;
  userNamespaces: boolean;
  timeNamespaces: boolean;
  /** The fuse device can be opened here (used to observe the device cgroup). */
  fuse: boolean;
  cgroupMounts: CgroupMount[];
}

export interface CgroupMount {
  /** `v1` hierarchies list their controllers; `v2` is the unified hierarchy. */
  version: 'v1' | 'v2';
  controllers: string[];
  mountpoint: string;
  /** The cgroup path of the mount's root (mountinfo field 4). */
  root: string;
  /** major:minor: the same for every mount of one hierarchy. */
  dev: string;
}

function readNs(pid: string): Record<string, string> {
  const out: Record<string, string> = {};
  const dir = `/proc/${pid}/ns`;
  for (const name of readdirSync(dir)) {
    try {
      out[name] = readlinkSync(join(dir, name));
    } catch {
      /* not readable */
    }
  }
  return out;
}

export function nsOf(pid: number | 'self'): Record<string, string> {
  return readNs(String(pid));
}

export function statusFields(pid: number | 'self'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** One parsed line of /proc/PID/mountinfo. */
export interface MountEntry {
  id: number;
  parent: number;
  /** major:minor of the filesystem (one cgroup hierarchy mounted twice shows the same). */
  dev: string;
  root: string;
  mountpoint: string;
  /** Per-mount options (ro, nosuid, nodev, noexec, relatime ...). */
  options: string[];
  /** Optional fields such as shared:N, master:N. */
  optional: string[];
  fstype: string;
  source: string;
  /** Superblock options (size=..., mode=...). */
  superOptions: string[];
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 6) continue;
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      dev: f[2] ?? '',
      root: unescapeMount(f[3]),
      mountpoint: unescapeMount(f[4]),
      options: f[5].split(','),
      optional: f.slice(6, dash),
      fstype: f[dash + 1],
      source: unescapeMount(f[dash + 2] ?? ''),
      superOptions: (f[dash + 3] ?? '').split(','),
    });
  }
  return out;
}

/** The topmost mount at a mount point (the last one listed) in mountinfo text. */
export function mountAt(mountinfo: string | null, path: string): MountEntry | undefined {
  return parseMountinfo(mountinfo ?? '').filter((m) => m.mountpoint === path).at(-1);
}

function cgroupMounts(): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const m of parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))) {
    if (m.fstype === 'cgroup2') out.push({ version: 'v2', controllers: [], mountpoint: m.mountpoint, root: m.root, dev: m.dev });
    else if (m.fstype === 'cgroup') {
      const controllers = m.superOptions.filter((o) => !['rw', 'ro'].includes(o) && !o.includes('=') && !['clone_children', 'noprefix', 'xattr', 'nsdelegate'].includes(o));
      const named = m.superOptions.filter((o) => o.startsWith('name=')).map((o) => o);
      out.push({ version: 'v1', controllers: [...controllers, ...named], mountpoint: m.mountpoint, root: m.root, dev: m.dev });
    }
  }
  return out;
}

function canOpen(path: string): boolean {
  try {
    closeSync(openSync(path, 'r'));
    return true;
  } catch {
    return false;
  }
}

export function hostInfo(): HostInfo {
  const status = statusFields('self');
  let userNamespaces = true;
  try {
    userNamespaces = Number(readFileSync('/proc/sys/user/max_user_namespaces', 'utf8')) > 0;
  } catch {
    userNamespaces = existsSync('/proc/self/ns/user');
  }
  return {
    ns: nsOf('self'),
    status,
    uid: process.getuid?.() ?? -1,
    seccompMode: status.Seccomp ?? '0',
    userNamespaces,
    timeNamespaces: existsSync('/proc/self/ns/time'),
    fuse: canOpen('/dev/fuse'),
    cgroupMounts: cgroupMounts(),
  };
}

/** The cgroup paths of a process: controller (or '' for the v2 unified hierarchy) → path. */
export function cgroupsOf(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[2] === '') out.set('', m[3]);
    else for (const c of m[2].split(',')) out.set(c, m[3]);
  }
  return out;
}

/**
 * Where a controller's files for a cgroup path live on this host, e.g.
 * (pids, /a/b) → /sys/fs/cgroup/pids/a/b on v1, /sys/fs/cgroup/a/b on v2. Null if not mounted.
 */
export function controllerDir(host: HostInfo, controller: string, path: string, v2 = false): string | null {
  const mount = v2 ? host.cgroupMounts.find((m) => m.version === 'v2') : host.cgroupMounts.find((m) => m.version === 'v1' && m.controllers.includes(controller));
  if (!mount) return null;
  let rel = path;
  if (mount.root !== '/' && rel.startsWith(mount.root)) rel = rel.slice(mount.root.length);
  return join(mount.mountpoint, rel);
}

/** True when the host uses cgroup v1 for this controller (a hybrid host counts as v1 for its v1 controllers). */
export function isV1(host: HostInfo, controller: string): boolean {
  return host.cgroupMounts.some((m) => m.version === 'v1' && m.controllers.includes(controller));
}

/** Capability names in bit order (capabilities(7)). */
export const CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** Names of the capabilities set in a /proc/PID/status hex mask (CapEff etc.), sorted. */
export function capNames(hex: string | undefined): string[] {
  if (!hex) return [];
  const mask = BigInt(`0x${hex}`);
  const out: string[] = [];
  for (let i = 0; i < 64; i++) {
    if ((mask >> BigInt(i)) & 1n) out.push(CAPABILITIES[i] ?? `CAP_${i}`);
  }
  return out.sort();
}
