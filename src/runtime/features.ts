// `keel features`: the runtime-spec features document (features.md), saying what keel implements.
// Every list is derived from the code that does the work, not written down apart from it:
//  - mountOptions: the names keel's mount-option parser (mount-options.ts) recognises as flags,
//    propagation or bind options, out of every option name OCI runtimes and mount(8) know;
//  - seccomp actions, operators, flags: those keel's seccomp compiler (seccomp/) accepts; flags are
//    "supported" when the running kernel accepts them too (probed with a seccomp(2) call that
//    cannot install anything);
//  - namespaces and capabilities: keel's tables (linux/constants.ts, capabilities.ts), capabilities
//    limited to those the running kernel has, as runc does.
import { RUNTIME_SPEC_VERSION } from '../spec/version.js';
import type { Features } from '../spec/index.js';
import { parseMountOptions } from './mount-options.js';
import { NAMESPACES } from './linux/constants.js';
import { CAPABILITIES, lastCap } from './capabilities.js';

/** The OCI runtime-spec versions keel accepts in config.json. */
export const OCI_VERSION_MIN = '1.0.0';

/** The six hooks of config.md, all run by keel (hooks.ts, container.ts). */
export const HOOKS = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'];

/**
 * Every mount option name the OCI runtimes (runc, crun) and mount(8) know, including the recursive
 * (mount_setattr) forms. keel lists those its parser turns into mount flags, propagation or a bind.
 */
export const KNOWN_MOUNT_OPTIONS = [
  'acl', 'async', 'atime', 'bind', 'defaults', 'dev', 'diratime', 'dirsync', 'exec', 'idmap', 'iversion', 'lazytime',
  'loud', 'mand', 'noacl', 'noatime', 'nodev', 'nodiratime', 'noexec', 'noiversion', 'nolazytime', 'nomand',
  'norelatime', 'nostrictatime', 'nosuid', 'nosymfollow', 'private', 'ratime', 'rbind', 'rdev', 'rdiratime',
  'relatime', 'remount', 'rexec', 'ridmap', 'rnoatime', 'rnodev', 'rnodiratime', 'rnoexec', 'rnorelatime',
  'rnostrictatime', 'rnosuid', 'rnosymfollow', 'ro', 'rprivate', 'rrelatime', 'rro', 'rrw', 'rshared', 'rslave',
  'rstrictatime', 'rsuid', 'rsymfollow', 'runbindable', 'rw', 'shared', 'silent', 'slave', 'strictatime', 'suid',
  'symfollow', 'sync', 'tmpcopyup', 'unbindable',
];

/**
 * Options mount-options.ts accepts but does not act on (runc gives them a meaning keel does not
 * implement yet: copying a tmpfs's lower contents up, id-mapped mounts). Not listed as supported.
 */
export const ACCEPTED_NOT_IMPLEMENTED = new Set(['tmpcopyup', 'idmap', 'ridmap']);

/** The OCI seccomp vocabulary (defs-linux.json): keel lists the entries its compiler takes. */
export const OCI_SECCOMP_ACTIONS = [
  'SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO', 'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_LOG',
  'SCMP_ACT_NOTIFY', 'SCMP_ACT_TRACE', 'SCMP_ACT_TRAP',
];
export const OCI_SECCOMP_OPERATORS = [
  'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_LE', 'SCMP_CMP_LT', 'SCMP_CMP_MASKED_EQ', 'SCMP_CMP_NE',
];
export const OCI_SECCOMP_FLAGS = [
  'SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW', 'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV',
];

/**
 * Actions the compiler takes that keel's init cannot carry out. None: SCMP_ACT_NOTIFY's listener
 * fd goes to listenerPath with the container process state (init-program.ts).
 */
export const SECCOMP_ACTIONS_NOT_IMPLEMENTED = new Set<string>();

/** Flags keel knows but cannot use. */
const SECCOMP_FLAGS_NOT_USABLE = new Set<string>();

export interface FeaturesOptions {
  /** keel's version and commit (the CLI's build-time values), for the annotations. */
  version?: string;
  commit?: string;
  /** Skip the kernel probe of seccomp flags (supportedFlags then lists every usable known flag). */
  noKernelProbe?: boolean;
  /** The criu binary checkpoint and restore use (runc's --criu; default PATH's criu). */
  criu?: string;
  /** Where a passed `criu check` is remembered (the runtime's --root). */
  root?: string;
}

/**
 * Whether checkpoint and restore can work here: criu is installed and `criu check` passes on this
 * kernel. The annotations say so, with criu's version or the reason.
 */
async function checkpointAnnotations(opts: FeaturesOptions): Promise<Record<string, string>> {
  const { criuReady } = await import('./criu/swrk.js');
  try {
    const c = await criuReady('checkpoint', { criu: opts.criu, cacheDir: opts.root });
    return { 'org.keel.checkpoint.enabled': 'true', 'org.keel.checkpoint.criu.version': c.versionText };
  } catch (err) {
    return { 'org.keel.checkpoint.enabled': 'false', 'org.keel.checkpoint.reason': (err as Error).message.replace(/^checkpoint: /, '') };
  }
}

/** Whether keel's mount-option parser turns `opt` into flags, propagation or a bind (not fs data). */
export function mountOptionRecognized(opt: string): boolean {
  const p = parseMountOptions([opt]);
  return p.data.length === 0;
}

/** The mount options keel implements. */
export function supportedMountOptions(): string[] {
  return KNOWN_MOUNT_OPTIONS.filter((o) => mountOptionRecognized(o) && !ACCEPTED_NOT_IMPLEMENTED.has(o)).sort();
}

type Seccomp = typeof import('./seccomp/index.js');

function compiles(sc: Seccomp, config: Parameters<Seccomp['compileSeccomp']>[0]): boolean {
  try {
    sc.compileSeccomp(config);
    return true;
  } catch {
    return false;
  }
}

/** The seccomp actions keel's compiler accepts (as a rule action) and its init can carry out. */
export function seccompActions(sc: Seccomp): string[] {
  return OCI_SECCOMP_ACTIONS.filter((a) => !SECCOMP_ACTIONS_NOT_IMPLEMENTED.has(a)
    && compiles(sc, {
      defaultAction: a === 'SCMP_ACT_ALLOW' ? 'SCMP_ACT_ERRNO' : 'SCMP_ACT_ALLOW', syscalls: [{ names: ['getcwd'], action: a as 'SCMP_ACT_LOG' }],
      ...(a === 'SCMP_ACT_NOTIFY' ? { listenerPath: '/run/agent.sock' } : {}),
    }));
}

/** The argument operators keel's compiler accepts. */
export function seccompOperators(sc: Seccomp): string[] {
  return OCI_SECCOMP_OPERATORS.filter((op) => compiles(sc, {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['getcwd'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, op: op as 'SCMP_CMP_EQ', value: 1, valueTwo: 1 }] }],
  }));
}

/** The filter flags keel's compiler knows. */
export function seccompKnownFlags(sc: Seccomp): string[] {
  return OCI_SECCOMP_FLAGS.filter((f) => {
    try {
      sc.seccompFlagsFor({ defaultAction: 'SCMP_ACT_ALLOW', flags: [f as 'SECCOMP_FILTER_FLAG_LOG'] });
      return true;
    } catch {
      return false;
    }
  });
}

const FLAG_VALUES: Record<string, number> = {
  SECCOMP_FILTER_FLAG_TSYNC: 1, SECCOMP_FILTER_FLAG_LOG: 2, SECCOMP_FILTER_FLAG_SPEC_ALLOW: 4, SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: 32,
};

/**
 * Whether the running kernel accepts a seccomp filter flag: seccomp(SECCOMP_SET_MODE_FILTER, flag,
 * NULL) fails with EFAULT (reading the NULL program) when the flag is known, EINVAL when it is not.
 * Nothing is installed either way.
 */
export async function kernelAcceptsSeccompFlag(sc: Seccomp, flag: string | number): Promise<boolean> {
  const value = typeof flag === 'number' ? flag : FLAG_VALUES[flag];
  const nr = sc.syscallNumber(sc.nativeSeccompArch(), 'seccomp');
  if (value === undefined || nr === undefined) return false;
  const { libc } = await import('./sys/libc.js');
  const c = libc();
  const rc = Number(c.syscall(nr, 'long', 1 /* SECCOMP_SET_MODE_FILTER */, 'long', value, 'void *', null));
  return rc === -1 && c.errno() === 14 /* EFAULT */;
}

/** The features document of this keel on this host. */
export async function features(opts: FeaturesOptions = {}): Promise<Features> {
  const sc = await import('./seccomp/index.js');
  const known = seccompKnownFlags(sc);
  const usable = known.filter((f) => !SECCOMP_FLAGS_NOT_USABLE.has(f));
  const supported: string[] = [];
  for (const f of usable) if (opts.noKernelProbe || (await kernelAcceptsSeccompFlag(sc, f))) supported.push(f);
  const last = lastCap();
  const doc: Features = {
    ociVersionMin: OCI_VERSION_MIN,
    ociVersionMax: RUNTIME_SPEC_VERSION,
    hooks: [...HOOKS],
    mountOptions: supportedMountOptions(),
    linux: {
      namespaces: Object.keys(NAMESPACES).sort() as NonNullable<Features['linux']>['namespaces'],
      capabilities: CAPABILITIES.filter((_, i) => i <= last),
      cgroup: {
        v1: true,
        v2: true,
        // --systemd-cgroup: a transient scope of the system manager over D-Bus (not a user manager's).
        systemd: true,
        systemdUser: false,
        rdma: true,
      },
      seccomp: {
        enabled: true,
        actions: seccompActions(sc) as never,
        operators: seccompOperators(sc) as never,
        archs: [...sc.SUPPORTED_ARCHES].sort() as never,
        knownFlags: known as never,
        supportedFlags: supported as never,
      },
      apparmor: { enabled: true },
      selinux: { enabled: false },
      intelRdt: { enabled: false },
      mountExtensions: { idmap: { enabled: false } },
      netDevices: { enabled: false },
    },
    annotations: {
      'org.keel.version': opts.version ?? 'unknown',
      'org.keel.commit': opts.commit ?? 'unknown',
      ...(await checkpointAnnotations(opts)),
      'org.keel.node.version': process.version,
      // keel compiles seccomp filters itself (seccomp/compile.ts): no libseccomp is involved.
      'org.keel.seccomp.compiler': 'keel',
    },
    // keel gives no annotation a meaning that could weaken a container.
    potentiallyUnsafeConfigAnnotations: [],
  };
  return doc;
}
