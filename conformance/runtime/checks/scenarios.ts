// Container runs observed by many checks at once. Each runs the probe once (memoised per suite run).
import type { SuiteContext, ProbeRun } from '../context.js';

export const DEFAULT_DEVICES: { path: string; major: number; minor: number }[] = [
  { path: '/dev/null', major: 1, minor: 3 },
  { path: '/dev/zero', major: 1, minor: 5 },
  { path: '/dev/full', major: 1, minor: 7 },
  { path: '/dev/random', major: 1, minor: 8 },
  { path: '/dev/urandom', major: 1, minor: 9 },
  { path: '/dev/tty', major: 5, minor: 0 },
];

export const DEV_LINKS: [string, string][] = [
  ['/dev/fd', '/proc/self/fd'],
  ['/dev/stdin', '/proc/self/fd/0'],
  ['/dev/stdout', '/proc/self/fd/1'],
  ['/dev/stderr', '/proc/self/fd/2'],
];

export const DEFAULT_RLIMITS = [
  // Below the usual hard limits of a root shell, so no runtime needs CAP_SYS_RESOURCE to set them.
  { type: 'RLIMIT_NOFILE', soft: 1000, hard: 1001 },
  { type: 'RLIMIT_CORE', soft: 4096, hard: 8192 },
  { type: 'RLIMIT_MSGQUEUE', soft: 409600, hard: 409601 },
];

export const DEFAULT_SYSCTL: Record<string, string> = { 'kernel.shm_rmid_forced': '1', 'net.ipv4.ip_forward': '1' };
export const DEFAULT_CWD = '/dev/shm';
export const DEFAULT_DOMAINNAME = 'kc.example';

/** Files the default run reads, stats, opens and writes, so the linux checks can look at them. */
const DEFAULT_ARGS = [
  ...DEFAULT_DEVICES.flatMap((d) => ['--stat', d.path]),
  ...DEV_LINKS.flatMap(([link]) => ['--stat', link]),
  '--stat', '/dev/ptmx',
  '--stat', '/dev/console',
  '--write', '/dev/null',
  '--write', '/dev/full',
  '--read', '/dev/zero',
  '--open', '/dev/urandom',
  '--open', '/dev/random',
  '--read', '/proc/kcore',
  '--read', '/proc/keys',
  '--read', '/proc/timer_list',
  '--list', '/sys/firmware',
  '--write', '/proc/sys/kernel/domainname',
  '--write', '/kc-rootfs-write',
  ...Object.keys(DEFAULT_SYSCTL).flatMap((k) => ['--read', `/proc/sys/${k.replace(/\./g, '/')}`]),
];

/**
 * The default run: the base configuration with a cwd, several rlimits, sysctls, a domainname,
 * a cgroup namespace, and probes for default devices, /dev links, masked and read-only paths.
 */
export function defaultRun(ctx: SuiteContext): Promise<ProbeRun> {
  return ctx.memo('default-run', () =>
    ctx.runProbe('default', {
      args: DEFAULT_ARGS,
      mutate: (c) => {
        c.process.cwd = DEFAULT_CWD;
        c.process.rlimits = DEFAULT_RLIMITS.map((r) => ({ ...r }));
        c.linux.sysctl = { ...DEFAULT_SYSCTL };
        c.linux.namespaces!.push({ type: 'cgroup' });
        c.domainname = DEFAULT_DOMAINNAME;
      },
    }),
  );
}

export const USER = { uid: 1000, gid: 1001, additionalGids: [2001, 2002], umask: 0o027 };
export const USER_CAPS = {
  bounding: ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_CHOWN', 'CAP_SETUID'],
  effective: ['CAP_NET_BIND_SERVICE', 'CAP_KILL'],
  permitted: ['CAP_NET_BIND_SERVICE', 'CAP_KILL'],
  inheritable: ['CAP_NET_BIND_SERVICE'],
  ambient: ['CAP_NET_BIND_SERVICE'],
};

/** A non-root process: uid, gid, additional groups, umask, ambient capabilities, no_new_privs off. */
export function userRun(ctx: SuiteContext): Promise<ProbeRun> {
  return ctx.memo('user-run', () =>
    ctx.runProbe('user', {
      mutate: (c) => {
        c.process.user = { ...USER, additionalGids: [...USER.additionalGids] };
        c.process.capabilities = structuredClone(USER_CAPS);
        c.process.noNewPrivileges = false;
      },
    }),
  );
}
