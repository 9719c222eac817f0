// Where the cgroup hierarchies are: cgroup v1 (one hierarchy per controller or controller group),
// cgroup v2 (one unified hierarchy), or hybrid (v1 for the controllers plus a cgroup2 mount,
// usually /sys/fs/cgroup/unified, holding whatever controllers v1 does not).
import { readFileSync } from 'node:fs';

export type CgroupMode = 'v1' | 'v2' | 'hybrid';

export interface V1Hierarchy {
  /** Where the hierarchy is mounted, e.g. /sys/fs/cgroup/memory. */
  mountpoint: string;
  /** The cgroup the mount shows at its mountpoint ("/" unless mounted from inside a cgroup namespace). */
  root: string;
  /** Controllers bound to it (["cpu", "cpuacct"]), or ["name=systemd"] for a named hierarchy. */
  controllers: string[];
}

export interface CgroupLayout {
  mode: CgroupMode;
  /** v1 controller (or "name=systemd") → its hierarchy. Empty on pure v2. */
  v1: Record<string, V1Hierarchy>;
  /** The cgroup2 mount, when there is one. */
  unified?: { mountpoint: string; root: string };
  /** Controllers the unified hierarchy offers at its root (its cgroup.controllers). */
  unifiedControllers: string[];
}

/** Controllers keel manages through v1 hierarchies (runc's list), plus the named systemd hierarchy. */
export const V1_CONTROLLERS = [
  'cpuset', 'devices', 'memory', 'cpu', 'cpuacct', 'pids', 'blkio', 'hugetlb', 'net_cls', 'net_prio',
  'perf_event', 'freezer', 'rdma', 'misc', 'name=systemd',
] as const;

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Parses /proc/self/mountinfo text into the cgroup layout. */
export function parseCgroupMounts(mountinfo: string, readControllers: (dir: string) => string[]): CgroupLayout {
  const v1: Record<string, V1Hierarchy> = {};
  let unified: CgroupLayout['unified'];
  for (const line of mountinfo.split('\n')) {
    if (!line) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const fstype = right[0];
    const root = unescapeMount(left[3] ?? '/');
    const mountpoint = unescapeMount(left[4] ?? '');
    if (fstype === 'cgroup2') {
      // The first cgroup2 mount wins (later ones are usually bind mounts of sub-trees).
      unified ??= { mountpoint, root };
    } else if (fstype === 'cgroup') {
      const superOpts = (right[2] ?? '').split(',');
      const controllers = superOpts.filter((o) => (V1_CONTROLLERS as readonly string[]).includes(o) || o.startsWith('name='));
      if (controllers.length === 0) continue;
      const h: V1Hierarchy = { mountpoint, root, controllers };
      for (const c of controllers) v1[c] ??= h;
    }
  }
  const hasV1 = Object.keys(v1).some((c) => !c.startsWith('name='));
  const mode: CgroupMode = hasV1 ? (unified ? 'hybrid' : 'v1') : 'v2';
  const unifiedControllers = unified ? readControllers(unified.mountpoint) : [];
  return { mode, v1, ...(unified ? { unified } : {}), unifiedControllers };
}

/**
 * Detects the cgroup layout of this mount namespace from /proc/self/mountinfo.
 * A pure v2 host has a cgroup2 mount and no v1 controller hierarchies.
 */
export function detectCgroupLayout(mountinfoPath = '/proc/self/mountinfo'): CgroupLayout {
  return parseCgroupMounts(readFileSync(mountinfoPath, 'utf8'), (dir) => {
    try {
      return readFileSync(`${dir}/cgroup.controllers`, 'utf8').trim().split(/\s+/).filter(Boolean);
    } catch {
      return [];
    }
  });
}

/** A process's cgroups from /proc/<pid>/cgroup: v1 controller → path, and "" → the v2 path. */
export function readProcCgroups(pid: number | 'self' = 'self'): Record<string, string> {
  const out: Record<string, string> = {};
  const text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  for (const line of text.split('\n')) {
    if (!line) continue;
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (controllers === '') out[''] = path;
    else for (const c of controllers.split(',')) out[c] = path;
  }
  return out;
}
