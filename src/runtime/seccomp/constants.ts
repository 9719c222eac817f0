// Kernel constants for seccomp (linux/seccomp.h, linux/audit.h, linux/filter.h).

/** seccomp(2) operations. */
export const SECCOMP_SET_MODE_STRICT = 0;
export const SECCOMP_SET_MODE_FILTER = 1;
export const SECCOMP_GET_ACTION_AVAIL = 2;
export const SECCOMP_GET_NOTIF_SIZES = 3;

/** prctl(2) options used around seccomp. */
export const PR_SET_NO_NEW_PRIVS = 38;
export const PR_SET_SECCOMP = 22;
export const SECCOMP_MODE_FILTER = 2;

/** Flags for seccomp(SECCOMP_SET_MODE_FILTER, flags, prog). */
export const SECCOMP_FILTER_FLAG_TSYNC = 1 << 0;
export const SECCOMP_FILTER_FLAG_LOG = 1 << 1;
export const SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2;
export const SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3;
export const SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4;
export const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5;

/** Filter return values (the high 16 bits select the action, the low 16 carry data). */
export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_KILL_THREAD = 0x00000000;
export const SECCOMP_RET_KILL = SECCOMP_RET_KILL_THREAD;
export const SECCOMP_RET_TRAP = 0x00030000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
export const SECCOMP_RET_TRACE = 0x7ff00000;
export const SECCOMP_RET_LOG = 0x7ffc0000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_ACTION_FULL = 0xffff0000;
export const SECCOMP_RET_DATA = 0x0000ffff;

/** Offsets in struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }. */
export const SECCOMP_DATA_NR = 0;
export const SECCOMP_DATA_ARCH = 4;
export const SECCOMP_DATA_IP = 8;
export const SECCOMP_DATA_ARGS = 16;
export const SECCOMP_DATA_SIZE = 64;

/** AUDIT_ARCH_* values the kernel reports in seccomp_data.arch. */
export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const AUDIT_ARCH_I386 = 0x40000003;
export const AUDIT_ARCH_AARCH64 = 0xc00000b7;
export const AUDIT_ARCH_ARM = 0x40000028;

/** x32 system calls are x86_64 calls with this bit set in the number. */
export const X32_SYSCALL_BIT = 0x40000000;

/** The kernel's limit on the length of a classic BPF program. */
export const BPF_MAXINSNS = 4096;

/** errno values the compiler uses. */
export const EPERM = 1;
export const ENOSYS = 38;
