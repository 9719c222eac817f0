// Linux ABI numbers the runtime uses: syscall numbers (per architecture) and flag values.

const X86_64 = {
  read: 0, write: 1, open: 2, close: 3, poll: 7, munmap: 11, brk: 12, ioctl: 16, access: 21, dup2: 33, getpid: 39, sendmsg: 46, socket: 41, connect: 42,
  clone: 56, fork: 57, execve: 59, exit: 60, wait4: 61, kill: 62, fcntl: 72, chdir: 80, fchdir: 81, mkdir: 83,
  symlink: 88, chmod: 90, fchown: 93, chown: 92, umask: 95, setuid: 105, setgid: 106, setpgid: 109, setsid: 112,
  setgroups: 116, setresuid: 117, setresgid: 119, capget: 125, capset: 126, rt_sigprocmask: 14, rt_sigaction: 13,
  mknod: 133, personality: 135, prctl: 157, chroot: 161, mount: 165, umount2: 166, pivot_root: 155, sethostname: 170,
  setdomainname: 171, ioprio_set: 251, openat: 257, mkdirat: 258, mknodat: 259, fchownat: 260, symlinkat: 266,
  faccessat: 269, dup3: 292, prlimit64: 302, setns: 308, sched_setattr: 314, seccomp: 317, execveat: 322,
  pidfd_open: 434, clone3: 435, close_range: 436, openat2: 437, pidfd_getfd: 438, faccessat2: 439,
  mount_setattr: 442, open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, pidfd_send_signal: 424,
  alarm: 37, unshare: 272, memfd_create: 319, exit_group: 231, keyctl: 250, sched_setaffinity: 203,
} as const;

export type SyscallName = keyof typeof X86_64;

/** Syscall numbers of the machine keel runs on. */
export function syscalls(): Record<SyscallName, number> {
  if (process.arch === 'x64') return X86_64;
  throw new Error(`keel's runtime does not support the ${process.arch} architecture yet`);
}

export const CLONE = {
  NEWTIME: 0x80, VM: 0x100, FS: 0x200, FILES: 0x400, SIGHAND: 0x800, PIDFD: 0x1000, VFORK: 0x4000, PARENT: 0x8000,
  NEWNS: 0x20000, NEWCGROUP: 0x02000000, NEWUTS: 0x04000000, NEWIPC: 0x08000000, NEWUSER: 0x10000000,
  NEWPID: 0x20000000, NEWNET: 0x40000000,
} as const;

/** OCI namespace type → clone flag and /proc/PID/ns file name. */
export const NAMESPACES: Record<string, { flag: number; file: string }> = {
  pid: { flag: CLONE.NEWPID, file: 'pid' },
  network: { flag: CLONE.NEWNET, file: 'net' },
  mount: { flag: CLONE.NEWNS, file: 'mnt' },
  ipc: { flag: CLONE.NEWIPC, file: 'ipc' },
  uts: { flag: CLONE.NEWUTS, file: 'uts' },
  user: { flag: CLONE.NEWUSER, file: 'user' },
  cgroup: { flag: CLONE.NEWCGROUP, file: 'cgroup' },
  time: { flag: CLONE.NEWTIME, file: 'time' },
};

export const O = {
  RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, EXCL: 0o200, NOCTTY: 0o400, TRUNC: 0o1000, NONBLOCK: 0o4000,
  DIRECTORY: 0o200000, NOFOLLOW: 0o400000, CLOEXEC: 0o2000000, PATH: 0o10000000,
} as const;

export const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, REMOUNT: 32, MANDLOCK: 64, DIRSYNC: 128,
  NOSYMFOLLOW: 256, NOATIME: 1024, NODIRATIME: 2048, BIND: 4096, MOVE: 8192, REC: 16384, SILENT: 32768,
  POSIXACL: 1 << 16, UNBINDABLE: 1 << 17, PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20, RELATIME: 1 << 21,
  KERNMOUNT: 1 << 22, I_VERSION: 1 << 23, STRICTATIME: 1 << 24, LAZYTIME: 1 << 25,
} as const;

export const AT_FDCWD = -100;
export const MNT_DETACH = 2;
export const SIGCHLD = 17;
export const PR = {
  SET_PDEATHSIG: 1, SET_DUMPABLE: 4, SET_KEEPCAPS: 8, CAPBSET_DROP: 24, SET_NO_NEW_PRIVS: 38, CAP_AMBIENT: 47,
} as const;
export const PR_CAP_AMBIENT_RAISE = 2;
export const PR_CAP_AMBIENT_CLEAR_ALL = 4;

export const SIGNALS: Record<string, number> = {
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, IOT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11, USR2: 12,
  PIPE: 13, ALRM: 14, TERM: 15, STKFLT: 16, CHLD: 17, CLD: 17, CONT: 18, STOP: 19, TSTP: 20, TTIN: 21, TTOU: 22,
  URG: 23, XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27, WINCH: 28, IO: 29, POLL: 29, PWR: 30, SYS: 31,
};

export const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0, RLIMIT_FSIZE: 1, RLIMIT_DATA: 2, RLIMIT_STACK: 3, RLIMIT_CORE: 4, RLIMIT_RSS: 5, RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7, RLIMIT_MEMLOCK: 8, RLIMIT_AS: 9, RLIMIT_LOCKS: 10, RLIMIT_SIGPENDING: 11, RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13, RLIMIT_RTPRIO: 14, RLIMIT_RTTIME: 15,
};
