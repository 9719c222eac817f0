// keel's seccomp support: compiles the OCI `linux.seccomp` object into the classic-BPF program the
// runtime's init installs with seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog) right before execve.
//
//   const c = compileSeccomp(spec.linux.seccomp);
//   // struct sock_fprog { unsigned short len = c.length; struct sock_filter *filter = c.filter; }
//   // prctl(PR_SET_NO_NEW_PRIVS, 1) unless the process may keep privileges (then CAP_SYS_ADMIN is needed)
//   // fd = seccomp(SECCOMP_SET_MODE_FILTER, c.flags, &fprog)   → a listener fd when c.newListener
export {
  compileSeccomp,
  seccompFlagsFor,
  seccompActionValue,
  nativeSeccompArch,
  syscallNumber,
  syscallTable,
  OCI_ARCHES,
  SUPPORTED_ARCHES,
  type CompiledSeccomp,
  type LinuxSeccomp,
  type SeccompCompileOptions,
} from './compile.js';
export * from './constants.js';
export { encodeFilter, decodeFilter, SOCK_FILTER_SIZE, type SockFilter } from './bpf.js';
export type { SyscallTable } from './syscall-tables.js';
