// What a process keel starts must shed before it enters a container (CVE-2019-5736 class).
//
// Every process keel puts in a container starts as a fork of this Node.js process (clone3 without
// CLONE_VM), so until it execs, its /proc/self/exe is the host's node binary and its command line
// and environment are the runtime's. Were the container's program a script starting with
// `#!/proc/self/exe`, the kernel would run the host's node inside the container, which could then
// reopen that binary for writing through /proc/self/fd and replace it for the next runtime call.
//
// So the first steps of every such program (init, exec, hooks in the container's namespaces):
//   - not dumpable (its /proc files belong to host root, ptrace and /proc/PID/exe need privilege),
//   - killed with its parent (PR_SET_PDEATHSIG), and gone at once if the parent died before that,
//   - every mapping of node's executable unmapped, then prctl(PR_SET_MM_MAP) points its exe at an
//     empty, sealed memfd, its command line at "keel init" and its environment at nothing.
// Executing /proc/self/exe from such a process fails with ENOEXEC, and no container process ever
// holds the host's binary as its exe. runc re-executes itself from a sealed memfd copy instead; node
// is ~100 MB, this costs a few syscalls.
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import type { Program } from './program.js';
import { PSEUDO_CHECK32 } from './program.js';
import { libc } from '../sys/libc.js';
import { syscalls, PR, O } from '../linux/constants.js';

/** The name every not-yet-exec'd container process shows (comm, /proc/PID/cmdline), as runc shows "runc init". */
export const CLOAK_NAME = 'keel init';

const SIGKILL = 9;
const PR_SET_NAME = 15, PR_SET_MM = 35, PR_SET_MM_MAP = 14, PR_SET_MM_EXE_FILE = 13;
const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2, MFD_EXEC = 0x10;
const F_ADD_SEALS = 1033;
const F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8;
const EINVAL = 22;

interface CloakInfo {
  /** A read-only fd of an empty sealed memfd: the exe the child takes. */
  exeFd: number;
  /** [start, end) of every mapping of node's executable in this process (and so in a fork of it). */
  ranges: [bigint, bigint][];
  /** struct prctl_mm_map's fields from /proc/self/stat, in order (brk and the arg/env bounds are set per program). */
  stat: { startCode: bigint; endCode: bigint; startData: bigint; endData: bigint; startBrk: bigint; startStack: bigint };
}

let info: CloakInfo | undefined;
let cloaks = 0;

function fail(what: string, errno: number): never {
  const c = libc();
  throw new Error(`${what}: ${c.strerror(errno)}`);
}

/** An empty memfd, sealed against every change, reopened read-only (the kernel refuses an exe open for writing). */
function sealedEmptyFile(): number {
  const c = libc();
  let fd = Number(c.syscall(syscalls().memfd_create, 'const char *', CLOAK_NAME, 'uint', MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC));
  // Kernels before 6.3 do not know MFD_EXEC (their memfds are executable anyway).
  if (fd < 0 && c.errno() === EINVAL) fd = Number(c.syscall(syscalls().memfd_create, 'const char *', CLOAK_NAME, 'uint', MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd < 0) fail('memfd_create', c.errno());
  try {
    if (c.fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) !== 0) fail('sealing the memfd', c.errno());
    const ro = c.open(`/proc/self/fd/${fd}`, O.RDONLY | O.CLOEXEC, 0);
    if (ro < 0) fail('reopening the memfd read-only', c.errno());
    return ro;
  } finally {
    c.close(fd);
  }
}

/** Mappings of node's executable, from /proc/self/maps (matched by inode and path). */
function executableRanges(): [bigint, bigint][] {
  const exe = readlinkSync('/proc/self/exe');
  const ino = String(statSync('/proc/self/exe').ino);
  const out: [bigint, bigint][] = [];
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s+(.*)$/.exec(line);
    if (!m || m[3] !== ino || m[4] !== exe) continue;
    const start = BigInt(`0x${m[1]}`), end = BigInt(`0x${m[2]}`);
    const last = out[out.length - 1];
    if (last && last[1] === start) last[1] = end; else out.push([start, end]);
  }
  return out;
}

function loadInfo(): CloakInfo {
  if (info) return info;
  const text = readFileSync('/proc/self/stat', 'utf8');
  // Fields after the command name, which may hold spaces: field 3 (state) is f[0].
  const f = text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
  const field = (n: number) => BigInt(f[n - 3]!);
  info = {
    exeFd: sealedEmptyFile(),
    ranges: executableRanges(),
    stat: {
      startCode: field(26), endCode: field(27), startStack: field(28),
      startData: field(45), endData: field(46), startBrk: field(47),
    },
  };
  return info;
}

/**
 * Steps that make the child not dumpable (unless `dumpable`) and bound to its parent's life: PR_SET_PDEATHSIG, then a
 * check that the parent still holds the read end of `errFd` (it dies with its parent otherwise:
 * the signal is not sent when the parent was gone before it was asked for).
 */
export function compileParentBond(p: Program, errFd: number, opts: { dumpable?: boolean } = {}): void {
  const S = syscalls();
  if (!opts.dumpable) p.sys(S.prctl, [PR.SET_DUMPABLE, 0, 0, 0, 0], { what: 'prctl(PR_SET_DUMPABLE)' });
  p.sys(S.prctl, [PR.SET_PDEATHSIG, SIGKILL, 0, 0, 0], { what: 'prctl(PR_SET_PDEATHSIG)' });
  compileParentAlive(p, errFd);
}

/** Fails (the runtime went away) unless the read end of pipe `errFd` is still open somewhere. */
export function compileParentAlive(p: Program, errFd: number): void {
  const S = syscalls();
  // poll({errFd, events 0}, 1, 0): a write end whose readers are gone reports POLLERR in revents,
  // which CHECK32 sees in the upper half of the word {events, revents}.
  const pfd = p.alloc(8);
  p.setU32(pfd, errFd);
  p.sys(S.poll, [pfd, 1, 0], { what: 'check that the runtime is alive' });
  p.sys(PSEUDO_CHECK32, [pfd + 4n], { what: 'the runtime went away' });
}

/**
 * Steps that drop the child's mappings of node's executable and give it an empty sealed memfd as
 * exe, "keel init" as command line and name, and an empty environment. Needs CAP_SYS_ADMIN (or
 * CAP_CHECKPOINT_RESTORE) in the child's user namespace: a rootless runtime's child has it once it
 * is in the container's user namespace, so place this after that join.
 */
export function compileCloak(p: Program): void {
  const S = syscalls();
  const { exeFd, ranges, stat } = loadInfo();
  for (const [start, end] of ranges) {
    p.sys(S.munmap, [start, end - start], { what: "unmap the runtime's executable" });
  }
  const name = p.cstr(CLOAK_NAME);
  const nameEnd = name + BigInt(Buffer.byteLength(CLOAK_NAME) + 1);
  const map = p.alloc(104);
  const fields = [stat.startCode, stat.endCode, stat.startData, stat.endData, stat.startBrk, 0n /* brk */, stat.startStack, name, nameEnd, nameEnd, nameEnd, 0n /* auxv */];
  fields.forEach((v, i) => p.setU64(map + BigInt(i * 8), v));
  p.setU32(map + 96n, 0); // auxv_size: keep the saved auxv
  p.setU32(map + 100n, exeFd);
  p.sys(S.brk, [0], { what: 'read the program break', store: map + 40n });
  // Kernels built without CONFIG_CHECKPOINT_RESTORE lack PR_SET_MM_MAP (EINVAL): the exe alone
  // is replaced there, which needs CAP_SYS_RESOURCE.
  const n = cloaks++;
  p.sys(S.prctl, [PR_SET_MM, PR_SET_MM_MAP, map, 104, 0], {
    what: "replace the runtime's executable, command line and environment (prctl PR_SET_MM_MAP)", tolerate: EINVAL, onError: `cloak-exe-${n}`, onOk: `cloak-done-${n}`,
  });
  p.label(`cloak-exe-${n}`);
  p.sys(S.prctl, [PR_SET_MM, PR_SET_MM_EXE_FILE, exeFd, 0, 0], { what: "replace the runtime's executable (prctl PR_SET_MM_EXE_FILE)" });
  p.label(`cloak-done-${n}`);
  p.sys(S.prctl, [PR_SET_NAME, name, 0, 0, 0], { what: 'prctl(PR_SET_NAME)' });
}
