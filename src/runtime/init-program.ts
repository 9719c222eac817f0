// Compiles a container's config.json into the syscall program its init runs (see native/program.ts):
// namespaces joined, mounts, devices, pivot_root, masked and read-only paths, hostname, sysctls,
// console, rlimits, user and groups, capabilities, the wait for `start`, and execve.
import { existsSync, fstatSync, lstatSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import type { Spec, Mount } from '../spec/index.js';
import { KeelError, quoteValue } from '../util/errors.js';
import type { Program } from './native/program.js';
import { newProgram } from './native/clone.js';
import { syscalls, CLONE, NAMESPACES, O, MS, AT_FDCWD, MNT_DETACH, PR, PR_CAP_AMBIENT_RAISE, RLIMITS } from './linux/constants.js';
import { secureJoin, pathPrefixes } from './paths.js';
import { parseMountOptions, propagationFlag } from './mount-options.js';
import { capabilityMask, lastCap } from './capabilities.js';
import { compileApparmorExec } from './security/apparmor.js';
import type { compileSeccomp as CompileSeccomp } from './seccomp/index.js';
import { compileCloak, compileParentBond } from './native/cloak.js';
import { compileFork } from './nsjoin.js';

const S = syscalls();
const ENOENT = 2, EEXIST = 17, ENOTDIR = 20, EINVAL = 22;
const S_IFCHR = 0o020000, S_IFBLK = 0o060000, S_IFIFO = 0o010000;
const F_SETFD = 2;
const CLOSE_RANGE_CLOEXEC = 4;
const TIOCGPTPEER = 0x5441, TIOCSPTLCK = 0x40045431, TIOCSCTTY = 0x540e, TIOCSWINSZ = 0x5414;
const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0o2000000, SOL_SOCKET = 1, SCM_RIGHTS = 1;

const SCHED_POLICIES: Record<string, number> = { SCHED_OTHER: 0, SCHED_FIFO: 1, SCHED_RR: 2, SCHED_BATCH: 3, SCHED_ISO: 4, SCHED_IDLE: 5, SCHED_DEADLINE: 6 };
const SCHED_FLAGS: Record<string, number> = {
  SCHED_FLAG_RESET_ON_FORK: 1, SCHED_FLAG_RECLAIM: 2, SCHED_FLAG_DL_OVERRUN: 4, SCHED_FLAG_KEEP_POLICY: 8,
  SCHED_FLAG_KEEP_PARAMS: 16, SCHED_FLAG_UTIL_CLAMP_MIN: 32, SCHED_FLAG_UTIL_CLAMP_MAX: 64,
};

export const KNOWN_MOUNT_TYPES = new Set([
  'bind', 'rbind', 'proc', 'sysfs', 'tmpfs', 'devpts', 'mqueue', 'cgroup', 'cgroup2', 'overlay', 'ramfs', 'securityfs',
  'debugfs', 'tracefs', 'hugetlbfs', 'fusectl', 'configfs', 'binfmt_misc', 'pstore', 'bpf', 'nfs', 'ext4', 'xfs', 'btrfs',
  'vfat', 'squashfs', 'fuse', 'nsfs', 'efivarfs', 'autofs', 'iso9660',
]);

/** The default device nodes every container gets, as runc makes them. */
const DEFAULT_DEVICES = [
  { path: '/dev/null', major: 1, minor: 3 }, { path: '/dev/zero', major: 1, minor: 5 },
  { path: '/dev/full', major: 1, minor: 7 }, { path: '/dev/random', major: 1, minor: 8 },
  { path: '/dev/urandom', major: 1, minor: 9 }, { path: '/dev/tty', major: 5, minor: 0 },
];
const DEFAULT_SYMLINKS: [string, string][] = [
  ['/proc/self/fd', '/dev/fd'], ['/proc/self/fd/0', '/dev/stdin'], ['/proc/self/fd/1', '/dev/stdout'],
  ['/proc/self/fd/2', '/dev/stderr'],
];

export interface InitOptions {
  rootfs: string;
  /** The bundle directory: relative bind sources are resolved against it. */
  bundle: string;
  /** fd the child writes step records on (error, or a sync marker). */
  errFd: number;
  /** fd the child reads one byte from before starting, once the parent has set it up (uid maps, cgroups). */
  goFd: number;
  /** fd the child reads one byte from to exec the user process (`start`). */
  startFd: number;
  /** The pipe the runtime writes the container process state on, for a seccomp agent (listenerPath). */
  seccompStateFd?: number;
  /** A connected unix socket (fd) to send the pty master on, instead of --console-socket. */
  consoleFd?: number;
  /** Path of the --console-socket, connected by the child before pivot_root. */
  consoleSocket?: string;
  /** Stop before pivot_root (MARK_PIVOT) and wait on goFd: the runtime runs prestart/createRuntime/createContainer hooks there. */
  syncBeforePivot?: boolean;
  noPivot?: boolean;
  noNewKeyring?: boolean;
  /** The container id (names the session keyring). */
  id?: string;
  preserveFds?: number;
  /** fds to install as the container's stdin, stdout, stderr (default: the runtime's own). */
  stdio?: number[];
  /** fds (our own pipes) that must stay open in the child until it execs. */
  internalFds: number[];
  /** The runtime's own ends of its pipes (and sockets), closed first thing in the child: holding
   * them, the child would never see the runtime go away. */
  parentFds?: number[];
}

export interface InitProgram {
  program: Program;
  cloneFlags: number;
  /** The init joins an existing pid namespace by forking into it at this step: the runtime reads MARK_FORKED and the pid that carries on. */
  forkStep?: number;
  userns: boolean;
}

/** Sync markers the child writes on errFd: {step: MARK, errno: 0}. */
export const MARK_READY = 0xfffffffffffffffen;
export const MARK_PIVOT = 0xfffffffffffffffdn;

function parseMode(spec: string): number { return parseInt(spec, 8); }

function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major), mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

function v1Hierarchies(): { name: string; options: string }[] {
  // The host's cgroup v1 hierarchies, as /proc/self/mountinfo lists them under /sys/fs/cgroup.
  const out: { name: string; options: string }[] = [];
  let info = '';
  try { info = readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return out; }
  for (const line of info.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const mountPoint = pre.split(' ')[4] ?? '';
    const [fstype, , superOpts] = post.split(' ');
    if (fstype !== 'cgroup' || !mountPoint.startsWith('/sys/fs/cgroup/')) continue;
    const controllers = (superOpts ?? '').split(',').filter((o) => !['rw', 'ro', 'relatime', 'noatime', 'nosuid', 'nodev', 'noexec', 'clone_children'].includes(o) && !o.startsWith('release_agent'));
    out.push({ name: posix.basename(mountPoint), options: controllers.join(',') });
  }
  return out;
}

/** The mount point of the mount holding `path` (the longest mount point above it in /proc/self/mountinfo). */
function mountPointOf(path: string): string {
  let real = path;
  try { real = realpathSync(path); } catch { /* keep the path */ }
  let best = '/';
  let info = '';
  try { info = readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return best; }
  for (const line of info.split('\n')) {
    const raw = line.split(' ')[4];
    if (!raw) continue;
    const mp = raw.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if ((real === mp || real.startsWith(mp === '/' ? '/' : `${mp}/`)) && mp.length > best.length) best = mp;
  }
  return best;
}

function isCgroup2Host(): boolean {
  try { return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => / \/sys\/fs\/cgroup [^-]* - cgroup2 /.test(l)); } catch { return false; }
}

let seccompCompiler: typeof CompileSeccomp | undefined;

/**
 * Loads the seccomp compiler when `config` has a filter (call before compiling a program): it is
 * a large module, and most containers' start-up has no use for it.
 */
export async function prepareSeccomp(config: Spec): Promise<void> {
  if (config.linux?.seccomp && !seccompCompiler) seccompCompiler = (await import('./seccomp/index.js')).compileSeccomp;
}

export function compileInit(config: Spec, opts: InitOptions): InitProgram {
  return compileInto(newProgram(), config, opts);
}

/** Builds the init program for `config` into `p`. */
export function compileInto(p: Program, config: Spec, opts: InitOptions): InitProgram {
  const linux = config.linux ?? {};
  const proc = config.process;
  if (!proc) throw new KeelError('config.json: /process: a process is required to create a container');
  if (!proc.args || proc.args.length === 0) throw new KeelError('config.json: /process/args: must name the program to run');
  if (!proc.cwd.startsWith('/')) throw new KeelError(`config.json: /process/cwd: must be an absolute path: ${JSON.stringify(proc.cwd)}`);
  const rlimitTypes = new Set<string>();
  for (const r of proc.rlimits ?? []) {
    if (rlimitTypes.has(r.type)) throw new KeelError(`config.json: /process/rlimits: ${r.type} is set twice`);
    rlimitTypes.add(r.type);
  }
  const scratch = p.cell();
  const str = (s: string) => p.cstr(s);

  // Namespaces: new ones are clone flags; paths are joined (setns) by the child, except pid and
  // time, which only apply to children and are joined by the parent before cloning.
  let cloneFlags = 0;
  const joins: { type: string; path: string }[] = [];
  const seen = new Set<string>();
  for (const ns of linux.namespaces ?? []) {
    const info = NAMESPACES[ns.type];
    if (!info) throw new KeelError(`config.json: /linux/namespaces: unknown namespace type ${JSON.stringify(ns.type)}`);
    if (seen.has(ns.type)) throw new KeelError(`config.json: /linux/namespaces: namespace ${ns.type} listed twice`);
    seen.add(ns.type);
    if (ns.path) {
      if (!existsSync(ns.path)) throw new KeelError(`config.json: /linux/namespaces: ${ns.type} namespace path ${ns.path} does not exist`);
      // time: the child is single-threaded, so its setns may switch its own time namespace too;
      // pid: the child forks into it once in every other namespace (compileFork).
      joins.push({ type: ns.type, path: ns.path });
    } else {
      cloneFlags |= info.flag;
    }
  }
  // A new cgroup namespace is made by the child once the runtime has moved it into its cgroup,
  // so that cgroup is the namespace's root.
  const newCgroupNs = (cloneFlags & CLONE.NEWCGROUP) !== 0;
  cloneFlags &= ~CLONE.NEWCGROUP;
  const userns = seen.has('user');
  // Mounts and device nodes as in a new user namespace also when the runtime itself runs in one
  // (a rootless builder): nodes are bound, locked mount flags kept.
  const inUserns = userns || runningInUserNamespace();
  const mountns = seen.has('mount');
  // Time offsets can be written only while no process is in the time namespace: the child makes
  // it for its children (unshare), writes them, then enters it (setns).
  const offsets = Object.entries(linux.timeOffsets ?? {}).filter(([, o]) => o !== undefined);
  if (offsets.length && !(cloneFlags & CLONE.NEWTIME)) throw new KeelError('config.json: /linux/timeOffsets: time offsets need a new time namespace (a "time" entry without a path in /linux/namespaces)');
  if (offsets.length) cloneFlags &= ~CLONE.NEWTIME;
  // With a new user namespace, a new ipc namespace is made once the init is root in it (after the
  // id maps): its mqueue filesystem then belongs to container root, not the overflow id (as runc).
  const lateIpc = (cloneFlags & CLONE.NEWUSER) !== 0 && (cloneFlags & CLONE.NEWIPC) !== 0;
  if (lateIpc) cloneFlags &= ~CLONE.NEWIPC;

  // 0. Bound to the runtime's life (it dies with it), wait for it to finish set-up, then not
  // dumpable while the host's files are in view. (The runtime writes the id maps first: an
  // unprivileged runtime can only while the child is dumpable.)
  for (const fd of opts.parentFds ?? []) p.sys(S.close, [fd], { what: 'close', tolerate: 'any' });
  compileParentBond(p, opts.errFd, { dumpable: true });
  p.sys(S.read, [opts.goFd, scratch, 1], { what: 'wait for the runtime', onOk: 'go', notOnZero: true });
  p.fail(EINVAL, 'wait for the runtime: the runtime went away');
  p.label('go');
  p.sys(S.prctl, [PR.SET_DUMPABLE, 0, 0, 0, 0], { what: 'prctl(PR_SET_DUMPABLE)' });

  // 1. Join namespaces by path: the user namespace first, then the runtime's executable is shed
  // (native/cloak.ts: in a user namespace of its own the child may), the others, and the pid
  // namespace by a fork.
  const rank = (t: string) => (t === 'user' ? 0 : t === 'pid' ? 2 : 1);
  joins.sort((a, b) => rank(a.type) - rank(b.type));
  const nsFds = joins.map((j) => {
    const fd = p.cell();
    p.sys(S.openat, [AT_FDCWD, str(j.path), O.RDONLY | O.CLOEXEC, 0], { what: `open ${j.type} namespace ${j.path}`, store: fd });
    return fd;
  });
  joins.forEach((j, i) => {
    p.sys(S.setns, [{ load: nsFds[i]! }, NAMESPACES[j.type]!.flag], { what: `join ${j.type} namespace ${j.path}` });
    p.sys(S.close, [{ load: nsFds[i]! }], { what: 'close' });
    if (j.type === 'user') compileCloak(p);
  });
  if (!joins.some((j) => j.type === 'user')) compileCloak(p);
  const forkStep = joins.some((j) => j.type === 'pid') ? compileFork(p, opts.errFd) : undefined;
  if (newCgroupNs) p.sys(S.unshare, [CLONE.NEWCGROUP], { what: 'unshare the cgroup namespace' });
  // Before setresuid: the host-root owner of our (non-dumpable) /proc/self files can still open them.
  if (offsets.length) {
    p.sys(S.unshare, [CLONE.NEWTIME], { what: 'unshare the time namespace' });
    const text = Buffer.from(offsets.map(([clock, o]) => `${clock} ${o!.secs ?? 0} ${o!.nanosecs ?? 0}\n`).join(''));
    const fd = p.cell(), ns = p.cell();
    p.sys(S.openat, [AT_FDCWD, str('/proc/self/timens_offsets'), O.WRONLY | O.CLOEXEC, 0], { what: 'open /proc/self/timens_offsets', store: fd });
    p.sys(S.write, [{ load: fd }, p.bytes(text), text.length], { what: `set the time offsets (${text.toString().trim().replaceAll('\n', ', ')})` });
    p.sys(S.close, [{ load: fd }], { what: 'close' });
    p.sys(S.openat, [AT_FDCWD, str('/proc/self/ns/time_for_children'), O.RDONLY | O.CLOEXEC, 0], { what: 'open the new time namespace', store: ns });
    p.sys(S.setns, [{ load: ns }, CLONE.NEWTIME], { what: 'enter the new time namespace' });
    p.sys(S.close, [{ load: ns }], { what: 'close' });
  }
  if (userns) {
    p.sys(S.setresgid, [0, 0, 0], { what: 'setresgid(0) in the user namespace' });
    p.sys(S.setresuid, [0, 0, 0], { what: 'setresuid(0) in the user namespace' });
    // A change of credentials clears the parent-death signal (and dumpable): again.
    compileParentBond(p, opts.errFd);
  }
  if (lateIpc) p.sys(S.unshare, [CLONE.NEWIPC], { what: 'unshare the ipc namespace' });

  // 2. File descriptors: stdio and preserved fds are inherited, everything else closes on exec.
  (opts.stdio ?? []).forEach((fd, i) => {
    if (fd !== i) p.sys(S.dup3, [fd, i, 0], { what: `set up stdio fd ${i}` });
  });
  const preserve = opts.preserveFds ?? 0;
  for (let fd = 0; fd < 3 + preserve; fd++) p.sys(S.fcntl, [fd, F_SETFD, 0], { what: `keep fd ${fd}`, tolerate: 9 /* EBADF */ });
  p.sys(S.close_range, [3 + preserve, 0xffffffff, CLOSE_RANGE_CLOEXEC], { what: 'close_range' });
  p.sys(S.setsid, [], { what: 'setsid' });
  // A new session keyring, as runc makes one, unless --no-new-keyring (failures are ignored, as runc).
  if (!opts.noNewKeyring) p.sys(S.keyctl, [1 /* KEYCTL_JOIN_SESSION_KEYRING */, p.cstr(`_ses.${opts.id ?? 'keel'}`), 0, 0, 0], { what: 'join a new session keyring', tolerate: 'any' });
  // The seccomp agent's socket is a host path: connect before pivot_root.
  let seccompListener: { socket: bigint; statePipeFd: number } | undefined;
  if (linux.seccomp?.listenerPath) {
    if (opts.seccompStateFd === undefined) throw new KeelError('config.json: /linux/seccomp/listenerPath: no state pipe for the seccomp agent');
    seccompListener = { socket: compileUnixConnect(p, linux.seccomp.listenerPath, 'the seccomp agent'), statePipeFd: opts.seccompStateFd };
  }
  let consoleFd: bigint | undefined;
  if (proc.terminal) {
    if (opts.consoleFd !== undefined) consoleFd = p.cell(BigInt(opts.consoleFd));
    else if (opts.consoleSocket) consoleFd = compileConsoleConnect(p, opts.consoleSocket);
    else throw new KeelError('config.json: /process/terminal: a terminal needs --console-socket');
  }

  // 3. Hostname and domain name.
  if (config.hostname !== undefined && config.hostname !== '') {
    if (!seen.has('uts')) throw new KeelError('config.json: /hostname: setting the hostname needs a new uts namespace');
    const h = Buffer.from(config.hostname);
    if (h.length > 64) throw new KeelError(`config.json: /hostname: ${quoteValue(config.hostname)} is longer than the 64 bytes a hostname may have`);
    p.sys(S.sethostname, [p.bytes(h), h.length], { what: `/hostname: sethostname ${quoteValue(config.hostname)}` });
  }
  if (config.domainname !== undefined && config.domainname !== '') {
    if (!seen.has('uts')) throw new KeelError('config.json: /domainname: setting the domain name needs a new uts namespace');
    const d = Buffer.from(config.domainname);
    if (d.length > 64) throw new KeelError(`config.json: /domainname: ${quoteValue(config.domainname)} is longer than the 64 bytes a domain name may have`);
    p.sys(S.setdomainname, [p.bytes(d), d.length], { what: `/domainname: setdomainname ${quoteValue(config.domainname)}` });
  }

  // 4. The root filesystem and mounts.
  const rootfs = opts.rootfs;
  if (mountns) {
    const rootProp = linux.rootfsPropagation ? propagationFlag(linux.rootfsPropagation) : undefined;
    if (linux.rootfsPropagation && rootProp === undefined) throw new KeelError(`config.json: /linux/rootfsPropagation: unknown propagation ${JSON.stringify(linux.rootfsPropagation)}`);
    // rootfsPropagation replaces the default rslave of the host's mounts (as runc): with "shared",
    // shared host mounts bound into the container keep their peers, so mounts propagate out.
    // (unbindable is set after pivot_root only: the rootfs could not be bound from an unbindable /.)
    const firstProp = rootProp !== undefined && rootProp !== MS.UNBINDABLE ? rootProp : MS.REC | MS.SLAVE;
    p.sys(S.mount, [0, str('/'), 0, firstProp, 0], { what: firstProp === rootProp ? `make / ${linux.rootfsPropagation}` : 'make / a slave mount' });
    if (firstProp & MS.SHARED) {
      // pivot_root refuses a new root whose parent mount is shared: the mount holding the rootfs goes private (as runc).
      const holder = mountPointOf(rootfs);
      p.sys(S.mount, [0, str(holder), 0, MS.PRIVATE, 0], { what: `make ${holder} (holding the rootfs) private` });
    }
    p.sys(S.mount, [str(rootfs), str(rootfs), 0, MS.BIND | MS.REC, 0], { what: `bind mount the rootfs ${rootfs}` });
    const mounts = config.mounts ?? [];
    const devBound = mounts.some((m) => posix.normalize(m.destination) === '/dev' && parseMountOptions(m.options, m.type).bind);
    const devMounted = mounts.some((m) => posix.normalize(m.destination) === '/dev');
    mounts.forEach((m, i) => compileMount(p, m, i, rootfs, opts.bundle, inUserns, seen.has('cgroup')));
    if (!devBound) compileDevices(p, config, rootfs, inUserns, devMounted);
    // A missing cwd is made (0755, by root, before / can be read-only), as runc does.
    if (proc.cwd && proc.cwd !== '/') mkdirAll(p, rootfs, secureJoin(rootfs, proc.cwd), '/process/cwd');
    if (opts.syncBeforePivot) syncPoint(p, opts, MARK_PIVOT, 'pivot');
    // pivot_root(".", ".") and detach the old root, or MS_MOVE + chroot with --no-pivot.
    p.sys(S.chdir, [str(rootfs)], { what: `chdir to the rootfs ${rootfs}` });
    if (opts.noPivot) {
      p.sys(S.mount, [str(rootfs), str('/'), 0, MS.MOVE, 0], { what: 'move the rootfs to / (--no-pivot)' });
      p.sys(S.chroot, [str('.')], { what: 'chroot to the rootfs (--no-pivot)' });
    } else {
      const dot = str('.');
      // After pivot_root(".", ".") the old root is stacked on the new one, and mount(2) on "." would
      // act on the new root (only umount2 follows to the top mount): step into the old root by fd.
      const oldRoot = p.cell();
      p.sys(S.openat, [AT_FDCWD, str('/'), O.RDONLY | O.DIRECTORY | O.CLOEXEC, 0], { what: 'open the old root', store: oldRoot });
      p.sys(S.pivot_root, [dot, dot], { what: 'pivot_root' });
      p.sys(S.fchdir, [{ load: oldRoot }], { what: 'chdir to the old root' });
      p.sys(S.close, [{ load: oldRoot }], { what: 'close' });
      p.sys(S.mount, [0, dot, 0, MS.REC | MS.SLAVE, 0], { what: 'make the old root a slave mount' });
      p.sys(S.umount2, [dot, MNT_DETACH], { what: 'detach the old root' });
    }
    p.sys(S.chdir, [str('/')], { what: 'chdir /' });
    if (rootProp !== undefined) p.sys(S.mount, [0, str('/'), 0, rootProp, 0], { what: `set rootfs propagation ${linux.rootfsPropagation}` });
    // stdio on the host's /dev/null is reopened on the container's (as runc): nothing of the
    // host's mounts stays open in the container, which criu could not checkpoint.
    if (!proc.terminal) compileReopenDevNull(p, hostDevNullStdio(opts.stdio));
    // sysctls, through the container's /proc, before readonlyPaths make /proc/sys read-only (as runc).
    for (const [key, value] of Object.entries(linux.sysctl ?? {})) {
      const path = '/proc/sys/' + key.replaceAll('.', '/');
      const fd = p.cell();
      const v = Buffer.from(value);
      const field = `/linux/sysctl/${quoteValue(key)}`;
      p.sys(S.openat, [AT_FDCWD, str(path), O.WRONLY | O.CLOEXEC, 0], { what: `${field}: open ${quoteValue(path)}`, store: fd });
      p.sys(S.write, [{ load: fd }, p.bytes(v), v.length], { what: `${field}: write ${quoteValue(value)}` });
      p.sys(S.close, [{ load: fd }], { what: 'close' });
    }

    for (const path of linux.maskedPaths ?? []) {
      // A file gets /dev/null bound over it; where that fails (a directory: ENOTDIR), an empty
      // read-only tmpfs; a path that does not exist (ENOENT on both) is left alone.
      p.sys(S.mount, [str('/dev/null'), str(path), 0, MS.BIND, 0], { what: `mask ${path}`, tolerate: 'any', onOk: `mask-done-${path}` });
      p.sys(S.mount, [str('tmpfs'), str(path), str('tmpfs'), MS.RDONLY, 0], { what: `mask directory ${path}`, tolerate: ENOENT, onError: `mask-done-${path}` });
      p.label(`mask-done-${path}`);
    }
    for (const path of linux.readonlyPaths ?? []) {
      const done = `ro-done-${path}`;
      p.sys(S.mount, [str(path), str(path), 0, MS.BIND | MS.REC, 0], { what: `bind ${path} read-only`, tolerate: ENOENT, onError: done });
      p.sys(S.mount, [0, str(path), 0, MS.BIND | MS.REMOUNT | MS.RDONLY | MS.REC, 0], { what: `remount ${path} read-only` });
      p.label(done);
    }
    if (config.root?.readonly) {
      p.sys(S.mount, [0, str('/'), 0, MS.BIND | MS.REMOUNT | MS.RDONLY, 0], { what: 'remount the rootfs read-only' });
    }
  } else {
    if (opts.noPivot === undefined || true) {
      p.sys(S.chroot, [str(rootfs)], { what: `chroot to the rootfs ${rootfs} (no mount namespace)` });
      p.sys(S.chdir, [str('/')], { what: 'chdir /' });
    }
  }

  // 6. Console: a new pty whose master goes to the console socket; its slave becomes stdio.
  if (consoleFd !== undefined) compileConsole(p, consoleFd, proc.consoleSize, mountns);

  compileProcess(p, { ...proc, args: proc.args }, linux, {
    userns, seccompListener, rootfs,
    // Ready: tell the runtime, then wait for `start`.
    beforeExec: () => syncPoint(p, { ...opts, goFd: opts.startFd }, MARK_READY, 'start'),
  });
  return { program: p, cloneFlags, forkStep, userns };
}

type Process = NonNullable<Spec['process']>;

/**
 * The process part shared by a container's init and `exec`: rlimits, seccomp, capabilities,
 * user and groups, umask, cwd, executable lookup, then (after `beforeExec`) signals, no_new_privs
 * and execve.
 */
export function compileProcess(p: Program, proc: Process & { args: string[] }, linux: NonNullable<Spec['linux']>, opts: {
  userns: boolean; beforeExec?: () => void;
  /** For SCMP_ACT_NOTIFY: the connected socket to the seccomp agent (a cell) and the pipe the state JSON comes on. */
  seccompListener?: { socket: bigint; statePipeFd: number }; /** Host path of the rootfs, to find HOME in its /etc/passwd. */ rootfs?: string }): void {
  // The process outlives the runtime from here (create returns, exec --detach...): the
  // parent-death signal goes, before a seccomp filter could refuse prctl.
  p.sys(S.prctl, [PR.SET_PDEATHSIG, 0, 0, 0, 0], { what: 'prctl(PR_SET_PDEATHSIG, 0)' });

  // 7. rlimits.
  for (const r of proc.rlimits ?? []) {
    const res = RLIMITS[r.type];
    if (res === undefined) throw new KeelError(`config.json: /process/rlimits: unknown rlimit type ${JSON.stringify(r.type)}`);
    const lim = p.alloc(16);
    p.setU64(lim, BigInt(r.soft)); p.setU64(lim + 8n, BigInt(r.hard));
    p.sys(S.prlimit64, [0, res, lim, 0], { what: `set ${r.type} to ${r.soft}:${r.hard}` });
  }

  // Scheduling policy, I/O priority, personality (config.md, config-linux.md).
  if (proc.scheduler) {
    const sc = proc.scheduler;
    const policy = SCHED_POLICIES[sc.policy];
    if (policy === undefined) throw new KeelError(`config.json: /process/scheduler/policy: unknown policy ${JSON.stringify(sc.policy)}`);
    let flags = 0n;
    for (const f of sc.flags ?? []) {
      const bit = SCHED_FLAGS[f];
      if (bit === undefined) throw new KeelError(`config.json: /process/scheduler/flags: unknown flag ${JSON.stringify(f)}`);
      flags |= BigInt(bit);
    }
    const attr = p.alloc(56);
    const v = p.arena.view, o = Number(attr - p.arena.base);
    v.setUint32(o, 56, true); v.setUint32(o + 4, policy, true); v.setBigUint64(o + 8, flags, true);
    v.setInt32(o + 16, sc.nice ?? 0, true); v.setUint32(o + 20, sc.priority ?? 0, true);
    v.setBigUint64(o + 24, BigInt(sc.runtime ?? 0), true); v.setBigUint64(o + 32, BigInt(sc.deadline ?? 0), true); v.setBigUint64(o + 40, BigInt(sc.period ?? 0), true);
    p.sys(S.sched_setattr, [0, attr, 0], { what: `set the scheduling policy ${sc.policy}` });
  }
  if (proc.ioPriority) {
    const cls = { IOPRIO_CLASS_RT: 1, IOPRIO_CLASS_BE: 2, IOPRIO_CLASS_IDLE: 3 }[proc.ioPriority.class];
    p.sys(S.ioprio_set, [1 /* IOPRIO_WHO_PROCESS */, 0, (cls << 13) | (proc.ioPriority.priority ?? 0)], { what: `set the I/O priority ${proc.ioPriority.class}` });
  }
  if (linux.personality) {
    const domain = { LINUX: 0, LINUX32: 8 }[linux.personality.domain as 'LINUX' | 'LINUX32'];
    if (domain === undefined) throw new KeelError(`config.json: /linux/personality/domain: unknown domain ${JSON.stringify(linux.personality.domain)}`);
    p.sys(S.personality, [domain], { what: `set the personality ${linux.personality.domain}` });
  }

  // Seccomp: with no_new_privs it is loaded last, right before execve; without, it needs
  // CAP_SYS_ADMIN, so it is loaded now, before the capabilities are dropped (as runc does).
  if (linux.seccomp && !seccompCompiler) throw new Error('internal: prepareSeccomp() was not called before compiling a seccomp filter');
  const seccomp = linux.seccomp ? seccompCompiler!(linux.seccomp) : undefined;
  if (seccomp?.newListener && !opts.seccompListener) throw new KeelError('config.json: /linux/seccomp: SCMP_ACT_NOTIFY (listenerPath) is not supported for this process');
  const loadSeccomp = () => {
    if (!seccomp) return;
    const fprog = p.alloc(16);
    p.arena.view.setUint16(Number(fprog - p.arena.base), seccomp.length, true);
    p.setU64(fprog + 8n, p.bytes(seccomp.filter));
    const listener = p.cell();
    p.sys(S.seccomp, [1 /* SECCOMP_SET_MODE_FILTER */, seccomp.flags, fprog], { what: 'load the seccomp filter', store: listener });
    if (seccomp.newListener && opts.seccompListener) {
      // Send the listener fd (SCM_RIGHTS) with the container process state (config-linux.md,
      // seccomp): the state JSON, which holds the init's pid, comes from the runtime on a pipe.
      const { socket, statePipeFd } = opts.seccompListener;
      const size = 16384;
      const json = p.alloc(size);
      const iov = p.alloc(16);
      p.setU64(iov, json);
      p.sys(S.read, [statePipeFd, json, size], { what: 'read the container process state', store: iov + 8n });
      const cmsg = p.alloc(24);
      p.setU64(cmsg, 20n); p.setU32(cmsg + 8n, 1 /* SOL_SOCKET */); p.setU32(cmsg + 12n, 1 /* SCM_RIGHTS */);
      p.sys(1001 /* STORE */, [cmsg + 16n, { load: listener }], { what: 'prepare the seccomp listener message' });
      const msg = p.alloc(56);
      p.setU64(msg + 16n, iov); p.setU64(msg + 24n, 1n); p.setU64(msg + 32n, cmsg); p.setU64(msg + 40n, 24n);
      p.sys(S.sendmsg, [{ load: socket }, msg, 0], { what: `send the seccomp listener to ${linux.seccomp?.listenerPath}` });
      p.sys(S.close, [{ load: listener }], { what: 'close the seccomp listener' });
      p.sys(S.close, [{ load: socket }], { what: 'close the seccomp agent socket' });
    }
  };
  if (!proc.noNewPrivileges) loadSeccomp();

  // 8. Capabilities, user and groups.
  const caps = proc.capabilities ?? {};
  const last = lastCap();
  const mask = (field: keyof typeof caps) => capabilityMask(caps[field] ?? [], `process.capabilities.${field}`, { lastCap: last });
  const bounding = mask('bounding'), effective = mask('effective'), permitted = mask('permitted');
  const inheritable = mask('inheritable'), ambient = mask('ambient');
  for (let cap = 0; cap <= last; cap++) {
    if (!(bounding & (1n << BigInt(cap)))) p.sys(S.prctl, [PR.CAPBSET_DROP, cap, 0, 0, 0], { what: `drop capability ${cap} from the bounding set`, tolerate: EINVAL });
  }
  const user = proc.user ?? {};
  const uid = user.uid ?? 0, gid = user.gid ?? 0;
  const env = withHome(proc.env ?? [], opts.rootfs, uid);
  p.sys(S.prctl, [PR.SET_KEEPCAPS, 1, 0, 0, 0], { what: 'prctl(PR_SET_KEEPCAPS)' });
  const groups = user.additionalGids ?? [];
  // An unprivileged runtime denies setgroups in the user namespace (it must, to map gids).
  const setgroupsAllowed = !opts.userns || process.getuid?.() === 0 || groups.length > 0;
  if (setgroupsAllowed) {
    const g = p.alloc(Math.max(4, groups.length * 4));
    groups.forEach((x, i) => p.setU32(g + BigInt(i * 4), x));
    p.sys(S.setgroups, [groups.length, g], { what: `setgroups(${groups.join(',')})` });
  }
  p.sys(S.setresgid, [gid, gid, gid], { what: `setresgid(${gid})` });
  p.sys(S.setresuid, [uid, uid, uid], { what: `setresuid(${uid})` });
  p.sys(S.prctl, [PR.SET_KEEPCAPS, 0, 0, 0, 0], { what: 'prctl(PR_SET_KEEPCAPS, 0)' });
  const hdr = p.alloc(8);
  p.setU32(hdr, 0x20080522); // _LINUX_CAPABILITY_VERSION_3
  const data = p.alloc(24);
  const lo = (m: bigint) => Number(m & 0xffffffffn), hi = (m: bigint) => Number(m >> 32n);
  p.setU32(data, lo(effective)); p.setU32(data + 4n, lo(permitted)); p.setU32(data + 8n, lo(inheritable));
  p.setU32(data + 12n, hi(effective)); p.setU32(data + 16n, hi(permitted)); p.setU32(data + 20n, hi(inheritable));
  p.sys(S.capset, [hdr, data], { what: 'capset' });
  for (let cap = 0; cap <= 63; cap++) {
    if (ambient & (1n << BigInt(cap))) p.sys(S.prctl, [PR.CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0], { what: `raise ambient capability ${cap}`, tolerate: 1 /* EPERM: not in permitted and inheritable; runc ignores it too */ });
  }
  p.sys(S.umask, [user.umask ?? 0o022], { what: 'umask' });
  p.sys(S.chdir, [p.cstr(proc.cwd)], { what: `/process/cwd: chdir to ${quoteValue(proc.cwd)}` });

  // 9. Find the executable (as the container user, in the container's PATH), like runc before start.
  const exePath = p.cell();
  compileLookPath(p, proc.args[0]!, env, exePath);

  // AppArmor takes effect at execve; set before the wait for `start`, so a failure is still reported.
  if (proc.apparmorProfile) compileApparmorExec(p, proc.apparmorProfile);
  opts.beforeExec?.();
  // 11. Signals back to defaults, nothing blocked, then exec.
  const sigset = p.alloc(8);
  p.sys(S.rt_sigprocmask, [2 /* SIG_SETMASK */, sigset, 0, 8], { what: 'unblock signals' });
  const dfl = p.alloc(32);
  for (let sig = 1; sig <= 64; sig++) {
    if (sig === 9 || sig === 19) continue;
    p.sys(S.rt_sigaction, [sig, dfl, 0, 8], { what: `reset signal ${sig}`, tolerate: 'any' });
  }
  if (proc.noNewPrivileges) {
    p.sys(S.prctl, [PR.SET_NO_NEW_PRIVS, 1, 0, 0, 0], { what: 'prctl(PR_SET_NO_NEW_PRIVS)' });
    loadSeccomp();
  }

  p.sys(S.execve, [{ load: exePath }, p.cstrArray(proc.args), p.cstrArray(env)], { what: `exec ${proc.args[0]!.length > 64 ? quoteValue(proc.args[0]!) : proc.args[0]}` });
}

/** Reports `mark` to the runtime and waits for its go-ahead byte. */
function syncPoint(p: Program, opts: InitOptions, mark: bigint, name: string): void {
  const rec = p.alloc(16);
  p.setU64(rec, mark);
  p.sys(S.write, [opts.errFd, rec, 16], { what: `report ${name}` });
  p.sys(S.read, [opts.goFd, p.cell(), 1], { what: `wait for ${name}`, onOk: `go-${name}`, notOnZero: true });
  p.fail(EINVAL, `wait for ${name}: the runtime went away`);
  p.label(`go-${name}`);
}

/** `env` with HOME set from the container's /etc/passwd entry for `uid` (else `/`) when it has none, as runc does. */
function withHome(env: string[], rootfs: string | undefined, uid: number): string[] {
  if (rootfs === undefined || env.some((e) => e.startsWith('HOME='))) return env;
  let home = '/';
  try {
    for (const line of readFileSync(secureJoin(rootfs, '/etc/passwd'), 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 7 && f[2] === String(uid) && f[5]) { home = f[5]; break; }
    }
  } catch { /* no passwd file: HOME=/ */ }
  return [...env, `HOME=${home}`];
}


function compileLookPath(p: Program, arg0: string, env: string[], cell: bigint): void {
  const X_OK = 1;
  const candidates: string[] = [];
  if (arg0.includes('/')) candidates.push(arg0);
  else {
    const pathVar = env.filter((e) => e.startsWith('PATH=')).pop()?.slice(5) ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
    for (const dir of pathVar.split(':')) candidates.push(posix.join(dir || '.', arg0));
  }
  candidates.forEach((c, i) => {
    const addr = p.cstr(c);
    p.sys(S.faccessat, [AT_FDCWD, addr, X_OK, 0], { what: `look up ${c}`, tolerate: 'any', onError: `look-${i + 1}`, onOk: `found-${i}` });
    p.label(`look-${i + 1}`);
    if (i === candidates.length - 1) {
      p.fail(ENOENT, arg0.includes('/') ? `exec: ${JSON.stringify(arg0)}: no such file, not executable or a directory` : `exec: ${JSON.stringify(arg0)}: executable file not found in $PATH`);
    }
  });
  candidates.forEach((c, i) => {
    p.label(`found-${i}`);
    // A directory passes the X_OK check: it is skipped, as Go's LookPath (runc) does. (The fd
    // opened to tell is close-on-exec.)
    p.sys(S.openat, [AT_FDCWD, p.cstr(c), O.RDONLY | O.DIRECTORY | O.CLOEXEC, 0], { what: `check that ${c} is no directory`, tolerate: 'any', onOk: `look-${i + 1}` });
    p.store(cell, p.cstr(c), { what: 'choose executable', onOk: 'looked-up' });
  });
  p.label('looked-up');
}

function mkdirAll(p: Program, root: string, dir: string, field?: string, mode = 0o755): void {
  for (const prefix of pathPrefixes(root, dir)) {
    p.sys(S.mkdir, [p.cstr(prefix), mode], { what: `${field ? `${field}: ` : ''}mkdir ${quoteValue(prefix, 128)}`, tolerate: EEXIST });
  }
}

function runningInUserNamespace(): boolean {
  try { return !/^\s*0\s+0\s+4294967295\s*$/.test(readFileSync('/proc/self/uid_map', 'utf8')); } catch { return false; }
}

function compileMount(p: Program, m: Mount, index: number, rootfs: string, bundle: string, userns: boolean, cgroupns: boolean): void {
  const type = m.type ?? (m.options?.some((o) => o === 'bind' || o === 'rbind') ? 'bind' : undefined);
  if (type !== undefined && type !== 'none' && !KNOWN_MOUNT_TYPES.has(type)) {
    throw new KeelError(`config.json: /mounts/${index}/type: unknown mount type ${JSON.stringify(type)}`);
  }
  // A relative destination is relative to the container's / (runtime-spec 1.3, as runc).
  const destination = posix.join('/', m.destination);
  const o = parseMountOptions(m.options, type);
  const dest = secureJoin(rootfs, destination);
  const str = (s: string) => p.cstr(s);
  let source = m.source ?? type ?? 'none';
  let isFile = false;
  if (o.bind) {
    if (!m.source) throw new KeelError(`config.json: /mounts/${index}/source: a bind mount needs a source`);
    // A relative bind source is relative to the bundle.
    source = posix.resolve(bundle, m.source);
    if (!existsSync(source)) throw new KeelError(`config.json: /mounts/${index}/source: ${source} does not exist`);
    isFile = !statSync(source).isDirectory();
  }
  if (isFile) {
    mkdirAll(p, rootfs, posix.dirname(dest), `/mounts/${index}`);
    const fd = p.cell();
    p.sys(S.openat, [AT_FDCWD, str(dest), O.RDONLY | O.CREAT | O.CLOEXEC | O.NOFOLLOW, 0o644], { what: `/mounts/${index}: create mount point ${quoteValue(destination, 128)}`, store: fd, tolerate: 'any', onError: `mp-${index}` });
    p.sys(S.close, [{ load: fd }], { what: 'close' });
    p.label(`mp-${index}`);
  } else {
    mkdirAll(p, rootfs, dest, `/mounts/${index}`);
  }
  const what = `/mounts/${index}: mount ${quoteValue(source, 128)} on ${quoteValue(destination, 128)}${type ? ` (type ${type})` : ''}`;
  // Without a cgroup namespace of its own the container still sees only its own cgroups (runc binds
  // them): the cgroup filesystems are mounted from a cgroup namespace made for the purpose, rooted
  // at the cgroups the init is in by now, which the init then leaves.
  const ownCgroupNs = (type === 'cgroup' || type === 'cgroup2') && !o.bind && !cgroupns && !userns ? p.cell() : undefined;
  if (ownCgroupNs !== undefined) {
    p.sys(S.openat, [AT_FDCWD, str('/proc/self/ns/cgroup'), O.RDONLY | O.CLOEXEC, 0], { what: 'open the cgroup namespace', store: ownCgroupNs });
    p.sys(S.unshare, [CLONE.NEWCGROUP], { what: `unshare a cgroup namespace to mount ${destination}` });
  }
  if (o.bind) {
    p.sys(S.mount, [str(source), str(dest), 0, MS.BIND | (o.recursive ? MS.REC : 0), 0], { what });
    const extra = o.flags & ~(MS.REC);
    if (extra) p.sys(S.mount, [0, str(dest), 0, MS.BIND | MS.REMOUNT | extra | (o.recursive ? MS.REC : 0), 0], { what: `remount ${destination} with ${m.options?.join(',')}` });
  } else if (type === 'cgroup' && !isCgroup2Host()) {
    // cgroup v1 or hybrid host: a tmpfs holding one mount per hierarchy, as runc makes it.
    p.sys(S.mount, [str('tmpfs'), str(dest), str('tmpfs'), o.flags & ~MS.RDONLY, str('mode=755')], { what: `mount tmpfs for cgroups on ${destination}` });
    // In a user namespace cgroup v1 cannot be mounted: the host's hierarchies are bound instead.
    const hierarchies = [...v1Hierarchies(), ...(existsSync('/sys/fs/cgroup/unified') ? [{ name: 'unified', options: '' }] : [])];
    for (const h of hierarchies) {
      const sub = posix.join(dest, h.name);
      const shown = posix.join(destination, h.name);
      p.sys(S.mkdir, [str(sub), 0o755], { what: `mkdir ${sub}`, tolerate: EEXIST });
      if (userns) {
        p.sys(S.mount, [str(`/sys/fs/cgroup/${h.name}`), str(sub), 0, MS.BIND | MS.REC, 0], { what: `bind the host's cgroup ${h.name} on ${shown}` });
        p.sys(S.mount, [0, str(sub), 0, MS.BIND | MS.REMOUNT | MS.REC | o.flags, 0], { what: `remount ${shown}`, tolerate: 'any' });
      } else if (h.name === 'unified') {
        p.sys(S.mount, [str('cgroup2'), str(sub), str('cgroup2'), o.flags, 0], { what: `mount cgroup2 on ${shown}` });
      } else {
        p.sys(S.mount, [str('cgroup'), str(sub), str('cgroup'), o.flags, str(h.options)], { what: `mount cgroup ${h.options} on ${shown}` });
      }
    }
    if (o.flags & MS.RDONLY) p.sys(S.mount, [0, str(dest), 0, MS.REMOUNT | o.flags, str('mode=755')], { what: `remount ${destination} read-only` });
  } else {
    const fstype = type === 'cgroup' ? 'cgroup2' : type;
    const data = o.data.length ? str(o.data.join(',')) : 0;
    p.sys(S.mount, [str(source), str(dest), fstype ? str(fstype) : 0, o.flags, data], { what });
  }
  if (ownCgroupNs !== undefined) {
    p.sys(S.setns, [{ load: ownCgroupNs }, CLONE.NEWCGROUP], { what: 'return to the cgroup namespace' });
    p.sys(S.close, [{ load: ownCgroupNs }], { what: 'close' });
  }
  for (const prop of o.propagation) p.sys(S.mount, [0, str(dest), 0, prop, 0], { what: `set propagation of ${destination}` });
}

function compileDevices(p: Program, config: Spec, rootfs: string, userns: boolean, devMounted: boolean): void {
  const str = (s: string) => p.cstr(s);
  const devices: { path: string; type: string; major: number; minor: number; fileMode: number; uid: number; gid: number; fromConfig?: boolean }[] =
    DEFAULT_DEVICES.map((d) => ({ ...d, type: 'c', fileMode: 0o666, uid: 0, gid: 0 }));
  for (const d of config.linux?.devices ?? []) {
    const i = devices.findIndex((x) => x.path === d.path);
    const dev = { path: d.path, type: d.type, major: d.major ?? 0, minor: d.minor ?? 0, fileMode: d.fileMode ?? 0o666, uid: d.uid ?? 0, gid: d.gid ?? 0, fromConfig: true };
    if (i >= 0) devices[i] = dev; else devices.push(dev);
  }
  const tmpfsDirs = (config.mounts ?? []).filter((m) => m.type === 'tmpfs').map((m) => posix.join('/', m.destination));
  for (const d of devices) {
    const dest = secureJoin(rootfs, d.path);
    // A file already at the path that is not this device is an error (config-linux.md), unless a
    // tmpfs mounted over its directory hides it.
    if (d.fromConfig && !tmpfsDirs.some((t) => d.path.startsWith(t + '/'))) {
      let st: ReturnType<typeof lstatSync> | undefined;
      try { st = lstatSync(dest); } catch { /* absent: fine */ }
      const want = d.type === 'b' ? st?.isBlockDevice() : d.type === 'p' ? st?.isFIFO() : st?.isCharacterDevice();
      if (st && !(want && Number(st.rdev) === Number(makedev(d.major, d.minor)))) {
        throw new KeelError(`config.json: /linux/devices: ${d.path} exists in the rootfs and is not the requested device`);
      }
    }
    mkdirAll(p, rootfs, posix.dirname(dest));
    if (userns) {
      // Device nodes cannot be made in a user namespace: bind the host's node instead.
      const fd = p.cell();
      p.sys(S.openat, [AT_FDCWD, str(dest), O.RDONLY | O.CREAT | O.CLOEXEC, 0o644], { what: `create ${d.path}`, store: fd, tolerate: 'any', onError: `dev-${d.path}` });
      p.sys(S.close, [{ load: fd }], { what: 'close' });
      p.label(`dev-${d.path}`);
      p.sys(S.mount, [str(d.path), str(dest), 0, MS.BIND, 0], { what: `bind device ${d.path}` });
      continue;
    }
    const kind = d.type === 'b' ? S_IFBLK : d.type === 'p' ? S_IFIFO : S_IFCHR;
    if (!['c', 'u', 'b', 'p'].includes(d.type)) throw new KeelError(`config.json: /linux/devices: ${d.path}: unknown device type ${JSON.stringify(d.type)}`);
    p.sys(S.mknod, [str(dest), kind | (d.fileMode & 0o7777), makedev(d.major, d.minor)], { what: `mknod ${d.path}`, tolerate: EEXIST });
    p.sys(S.chmod, [str(dest), d.fileMode & 0o7777], { what: `chmod ${d.path}` });
    p.sys(S.chown, [str(dest), d.uid, d.gid], { what: `chown ${d.path}` });
  }
  if (devMounted) {
    for (const [target, link] of DEFAULT_SYMLINKS) {
      p.sys(S.symlink, [str(target), str(secureJoin(rootfs, link))], { what: `symlink ${link}`, tolerate: EEXIST });
    }
    const ptmx = secureJoin(rootfs, '/dev/ptmx');
    p.sys(S.symlink, [str('pts/ptmx'), str(ptmx)], { what: 'symlink /dev/ptmx', tolerate: EEXIST });
  }
  void parseMode; void ENOTDIR;
}

/** Connects to the --console-socket (a host path: do it before pivot_root or setns into the mount namespace). */
export function compileConsoleConnect(p: Program, socketPath: string): bigint {
  return compileUnixConnect(p, socketPath, 'the console socket');
}

/** A unix stream socket connected to `socketPath`; returns the cell holding its fd. */
function compileUnixConnect(p: Program, socketPath: string, name: string): bigint {
  const fd = p.cell();
  p.sys(S.socket, [AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0], { what: `open ${name}`, store: fd });
  const path = Buffer.from(socketPath);
  if (path.length > 107) throw new KeelError(`${name}: path too long: ${socketPath}`);
  const sun = p.alloc(110);
  p.arena.view.setUint16(Number(sun - p.arena.base), AF_UNIX, true);
  p.arena.bytes.set(path, Number(sun - p.arena.base) + 2);
  p.sys(S.connect, [{ load: fd }, sun, 110], { what: `connect to ${name} ${socketPath}` });
  return fd;
}

/** Which of the init's fds 0-2 (`stdio`, else the runtime's own) are a /dev/null (char 1:3). */
function hostDevNullStdio(stdio: number[] | undefined): number[] {
  const out: number[] = [];
  for (const i of [0, 1, 2]) {
    try {
      const st = fstatSync(stdio?.[i] ?? i);
      if (st.isCharacterDevice() && st.rdev === 0x103) out.push(i);
    } catch { /* closed */ }
  }
  return out;
}

/** Opens the container's /dev/null and puts it on `fds` (a missing /dev/null leaves them alone). */
function compileReopenDevNull(p: Program, fds: number[]): void {
  if (!fds.length) return;
  const fd = p.cell();
  p.sys(S.openat, [AT_FDCWD, p.cstr('/dev/null'), O.RDWR | O.CLOEXEC, 0], { what: 'open the container\'s /dev/null', store: fd, tolerate: 'any', onError: 'devnull-done' });
  for (const i of fds) p.sys(S.dup3, [{ load: fd }, i, 0], { what: `reopen fd ${i} on the container's /dev/null` });
  p.sys(S.close, [{ load: fd }], { what: 'close' });
  p.label('devnull-done');
}

/** A new pty whose master goes to the console socket; its slave becomes stdio and the controlling terminal. */
export function compileConsole(p: Program, socketFd: bigint, size?: { height: number; width: number }, devConsole = false): void {
  const str = (s: string) => p.cstr(s);
  const master = p.cell(), slave = p.cell();
  p.sys(S.openat, [AT_FDCWD, str('/dev/ptmx'), O.RDWR | O.NOCTTY | O.CLOEXEC, 0], { what: 'open /dev/ptmx', store: master });
  const zero = p.alloc(4);
  p.sys(S.ioctl, [{ load: master }, TIOCSPTLCK, zero], { what: 'unlock the pty' });
  p.sys(S.ioctl, [{ load: master }, TIOCGPTPEER, O.RDWR | O.NOCTTY], { what: 'open the pty slave', store: slave });
  if (size) {
    const ws = p.alloc(8);
    p.arena.view.setUint16(Number(ws - p.arena.base), size.height, true);
    p.arena.view.setUint16(Number(ws - p.arena.base) + 2, size.width, true);
    p.sys(S.ioctl, [{ load: slave }, TIOCSWINSZ, ws], { what: 'set the console size' });
  }
  // sendmsg(socket, {iov: "/dev/ptmx", control: SCM_RIGHTS [master]}).
  const name = Buffer.from('/dev/ptmx');
  const iov = p.alloc(16);
  p.setU64(iov, p.bytes(name)); p.setU64(iov + 8n, BigInt(name.length));
  const cmsg = p.alloc(24);
  p.setU64(cmsg, 20n); p.setU32(cmsg + 8n, SOL_SOCKET); p.setU32(cmsg + 12n, SCM_RIGHTS);
  const msg = p.alloc(56);
  p.setU64(msg + 16n, iov); p.setU64(msg + 24n, 1n); p.setU64(msg + 32n, cmsg); p.setU64(msg + 40n, 24n);
  // The fd number goes into the control message: copy it there (low 32 bits; the pad is unused).
  p.sys(1001 /* STORE */, [cmsg + 16n, { load: master }], { what: 'prepare the console message' });
  p.sys(S.sendmsg, [{ load: socketFd }, msg, 0], { what: 'send the pty master to the console socket' });
  p.sys(S.close, [{ load: master }], { what: 'close the pty master' });
  if (devConsole) {
    // /dev/console is the pty slave, bind mounted (config-linux.md, default devices). The slave is
    // reached by a fixed fd number through /proc/self/fd, so the program needs no formatting.
    const fixed = 1023;
    p.sys(S.dup3, [{ load: slave }, fixed, O.CLOEXEC], { what: 'dup the pty slave' });
    const cfd = p.cell();
    p.sys(S.openat, [AT_FDCWD, p.cstr('/dev/console'), O.RDONLY | O.CREAT | O.CLOEXEC | O.NOFOLLOW, 0o600], { what: 'create /dev/console', store: cfd, tolerate: 'any', onError: 'console-mount' });
    p.sys(S.close, [{ load: cfd }], { what: 'close' });
    p.label('console-mount');
    p.sys(S.mount, [p.cstr(`/proc/self/fd/${fixed}`), p.cstr('/dev/console'), 0, MS.BIND, 0], { what: 'bind the pty to /dev/console' });
    p.sys(S.close, [fixed], { what: 'close' });
  }
  for (const fd of [0, 1, 2]) p.sys(S.dup3, [{ load: slave }, fd, 0], { what: `make the pty slave fd ${fd}` });
  p.sys(S.ioctl, [0, TIOCSCTTY, 0], { what: 'make the pty the controlling terminal' });
  p.sys(S.close, [{ load: slave }], { what: 'close the pty slave' });
  p.sys(S.close, [{ load: socketFd }], { what: 'close the console socket' });
}

export { CLONE };
