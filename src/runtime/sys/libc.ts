// koffi bindings to libc used by the runtime core. Loaded on first use, so commands that never
// touch the kernel this way (state, list, spec, --version) do not pay for koffi.
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

const require = createRequire(import.meta.url);

type Fn = any;

export interface Libc {
  koffi: any;
  mmap: Fn; mprotect: Fn; munmap: Fn;
  syscall: Fn;
  pipe2: Fn; close: Fn; read: Fn; write: Fn;
  mkfifo: Fn; kill: Fn; waitpid: Fn; setns: Fn; unshare: Fn; open: Fn; flock: Fn; fcntl: Fn; socketpair: Fn; recvmsg: Fn;
  errno: () => number;
  strerror: (errno: number) => string;
}

let cached: Libc | undefined;
let shared: { koffi: any; lib: any } | undefined;

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** An Error like Node's fs errors for a failed call (`errno` positive, as koffi.errno() gives it). */
export function errnoError(call: string, what: string, errno: number): NodeJS.ErrnoException {
  const code = errnoNames.get(errno) ?? `E${errno}`;
  const err = new Error(`${call} ${what}: ${code}`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = -errno;
  err.syscall = call;
  return err;
}

/** koffi and the libc library handle, loaded once for every binding file of this folder. */
export function koffiLibc(): { koffi: any; lib: any } {
  if (!shared) {
    const koffi = require('koffi');
    shared = { koffi, lib: koffi.load('libc.so.6') };
  }
  return shared;
}

/** The libc bindings; koffi is loaded on the first call. */
export function libc(): Libc {
  if (cached) return cached;
  const { koffi, lib } = koffiLibc();
  const strerror = lib.func('const char *strerror(int errnum)');
  cached = {
    koffi,
    mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    mprotect: lib.func('int mprotect(void *addr, size_t len, int prot)'),
    munmap: lib.func('int munmap(void *addr, size_t length)'),
    syscall: lib.func('long syscall(long number, ...)'),
    pipe2: lib.func('int pipe2(_Out_ int *pipefd, int flags)'),
    close: lib.func('int close(int fd)'),
    read: lib.func('long read(int fd, _Out_ uint8_t *buf, size_t count)'),
    write: lib.func('long write(int fd, const uint8_t *buf, size_t count)'),
    mkfifo: lib.func('int mkfifo(const char *path, uint32_t mode)'),
    kill: lib.func('int kill(int pid, int sig)'),
    waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)'),
    setns: lib.func('int setns(int fd, int nstype)'),
    unshare: lib.func('int unshare(int flags)'),
    open: lib.func('int open(const char *path, int flags, uint32_t mode)'),
    flock: lib.func('int flock(int fd, int operation)'),
    fcntl: lib.func('int fcntl(int fd, int cmd, int arg)'),
    socketpair: lib.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)'),
    recvmsg: lib.func('long recvmsg(int fd, void *msg, int flags)'),
    errno: () => koffi.errno(),
    strerror: (e: number) => strerror(e) as string,
  };
  return cached;
}

/**
 * Receives one file descriptor sent with SCM_RIGHTS on a unix socket (blocking), or -1.
 * The message layout is x86-64/aarch64 struct msghdr with one iovec and one cmsg.
 */
export function receiveFd(sock: number): number {
  const c = libc();
  const data = Buffer.alloc(256);
  const iov = Buffer.alloc(16);
  const control = Buffer.alloc(24);
  const msg = Buffer.alloc(56);
  const addr = (b: Buffer) => BigInt(c.koffi.address(b));
  iov.writeBigUInt64LE(addr(data), 0); iov.writeBigUInt64LE(BigInt(data.length), 8);
  msg.writeBigUInt64LE(addr(iov), 16); msg.writeBigUInt64LE(1n, 24);
  msg.writeBigUInt64LE(addr(control), 32); msg.writeBigUInt64LE(BigInt(control.length), 40);
  const n = Number(c.recvmsg(sock, msg, 0x40000000 /* MSG_CMSG_CLOEXEC */));
  if (n < 0) return -1;
  if (control.readUInt32LE(8) !== 1 /* SOL_SOCKET */ || control.readUInt32LE(12) !== 1 /* SCM_RIGHTS */) return -1;
  return control.readInt32LE(16);
}

/** Error names for errno values (Linux, x86-64 and generic), for one-line messages. */
export const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 6: 'ENXIO', 7: 'E2BIG', 8: 'ENOEXEC', 9: 'EBADF',
  10: 'ECHILD', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 15: 'ENOTBLK', 16: 'EBUSY', 17: 'EEXIST',
  18: 'EXDEV', 19: 'ENODEV', 20: 'ENOTDIR', 21: 'EISDIR', 22: 'EINVAL', 23: 'ENFILE', 24: 'EMFILE', 25: 'ENOTTY',
  26: 'ETXTBSY', 27: 'EFBIG', 28: 'ENOSPC', 29: 'ESPIPE', 30: 'EROFS', 31: 'EMLINK', 32: 'EPIPE', 36: 'ENAMETOOLONG',
  38: 'ENOSYS', 39: 'ENOTEMPTY', 40: 'ELOOP', 95: 'EOPNOTSUPP', 110: 'ETIMEDOUT', 111: 'ECONNREFUSED',
};

/** "EPERM: Operation not permitted" for an errno value. */
export function describeErrno(errno: number): string {
  let text = `errno ${errno}`;
  try { text = libc().strerror(errno); } catch { /* koffi unavailable */ }
  return ERRNO_NAMES[errno] ? `${ERRNO_NAMES[errno]}: ${text}` : text;
}

/** A close-on-exec pipe: [read end, write end]. */
export function pipeCloexec(): [number, number] {
  const c = libc();
  const fds = new Int32Array(2);
  if (c.pipe2(fds, 0o2000000) !== 0) throw new Error(`pipe2: ${c.strerror(c.errno())}`);
  return [fds[0]!, fds[1]!];
}

/** A shell-style exit code from a wait status: the exit status, or 128+n when killed by signal n. */
export function exitCodeOf(status: number): number {
  return (status & 0x7f) === 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
}

const FORWARDED: NodeJS.Signals[] = ['SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGCONT', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGALRM', 'SIGPIPE'];

/**
 * Waits (on a worker thread, so the event loop keeps running) for child `pid` to exit, forwarding
 * the signals keel receives meanwhile, as runc does; returns its exit code.
 */
export async function waitForwarding(pid: number): Promise<number> {
  const c = libc();
  const handlers = FORWARDED.map((sig) => {
    const h = () => { try { process.kill(pid, sig); } catch { /* exited */ } };
    process.on(sig, h);
    return [sig, h] as const;
  });
  const status = new Int32Array(1);
  try {
    await new Promise<void>((res, rej) => c.waitpid.async(pid, status, 0, (err: unknown, r: number) => (err ? rej(err) : r < 0 ? rej(new Error(`waitpid ${pid} failed`)) : res())));
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
  }
  return exitCodeOf(status[0]!);
}
