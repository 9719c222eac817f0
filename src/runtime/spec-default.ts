// The default container configuration `keel spec` writes: the same document `runc spec` writes
// (same keys in the same order, same values), except the hostname and the spec version. Other code
// (the image unpacker, the builder's RUN steps) starts from it and fills in the process and rootfs.
import type { Spec, Mount, Linux } from '../spec/index.js';
import { RUNTIME_SPEC_VERSION } from '../spec/version.js';

export interface DefaultSpecOptions {
  /** Make the configuration usable by an unprivileged user: a user namespace, no network namespace, no cgroup settings. */
  rootless?: boolean;
  /** Host user and group mapped to root inside the container when rootless (default: this process's effective ids). */
  uid?: number;
  gid?: number;
}

const CAPS = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];

function mounts(rootless: boolean): Mount[] {
  const list: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ];
  if (!rootless) return list;
  // Without privilege sysfs cannot be mounted afresh (it belongs to the host's network namespace):
  // bind the host's; and uid=/gid= options name ids that the one-id mapping does not have.
  return list.map((m) => m.destination === '/sys'
    ? { destination: '/sys', type: 'none', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] }
    : m.options ? { ...m, options: m.options.filter((o) => !o.startsWith('uid=') && !o.startsWith('gid=')) } : m);
}

function linux(rootless: boolean, uid: number, gid: number): Linux {
  const masked = ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
    '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'];
  const readonly = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
  if (rootless) {
    return {
      uidMappings: [{ containerID: 0, hostID: uid, size: 1 }],
      gidMappings: [{ containerID: 0, hostID: gid, size: 1 }],
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'user' }],
      maskedPaths: masked,
      readonlyPaths: readonly,
    };
  }
  return {
    resources: { devices: [{ allow: false, access: 'rwm' }] },
    namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
    maskedPaths: masked,
    readonlyPaths: readonly,
  };
}

/**
 * A fresh default configuration: `sh` on a terminal as root, read-only `rootfs`, the usual /proc, /dev
 * and /sys mounts, new pid/net/ipc/uts/mount namespaces. Rootless: a user namespace mapping `uid`:`gid`
 * to root instead of the network namespace, /sys bound from the host, no cgroup settings.
 */
export function defaultSpec(opts: DefaultSpecOptions = {}): Spec {
  const rootless = opts.rootless ?? false;
  const uid = opts.uid ?? process.geteuid?.() ?? 0;
  const gid = opts.gid ?? process.getegid?.() ?? 0;
  return {
    ociVersion: RUNTIME_SPEC_VERSION,
    process: {
      terminal: true,
      user: { uid: 0, gid: 0 },
      args: ['sh'],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: '/',
      capabilities: { bounding: [...CAPS], effective: [...CAPS], permitted: [...CAPS], ambient: [...CAPS] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'keel',
    mounts: mounts(rootless),
    linux: linux(rootless, uid, gid),
  };
}

/** The text `keel spec` writes: tab-indented JSON without a final newline, as runc writes it. */
export function formatSpec(spec: Spec): string {
  return JSON.stringify(spec, null, '\t');
}
