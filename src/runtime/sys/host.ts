/**
 * Kernel calls for programs that host containers (containerd's shim): a listening unix socket
 * that receives a container's pty master (SCM_RIGHTS, which Node's net module cannot receive),
 * the terminal size of a pty, and mount(2)/umount2(2) for a root filesystem an engine hands over.
 *
 * Loaded on first use with the shared koffi and libc handle. Failures throw an Error carrying
 * `code` ('EAGAIN', 'EINVAL'...) with the call and its object in the message.
 */
import { constants as osConstants } from 'node:os';
import { errnoError, koffiLibc } from './libc.js';

export interface HostSys {
  /** A non-blocking, close-on-exec AF_UNIX stream socket bound to `path` and listening. */
  listenUnix(path: string): number;
  /** accept4(2) on a non-blocking listening socket: the connection (blocking, close-on-exec), or -1 when none waits. */
  acceptPending(fd: number): number;
  /** TIOCSWINSZ on a terminal fd. */
  setWinsize(fd: number, cols: number, rows: number): void;
  mount(source: string, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags: number): void;
  close(fd: number): void;
}

let cached: HostSys | undefined;

export function hostSys(): HostSys {
  if (cached) return cached;
  const { koffi, lib } = koffiLibc();
  const socket = lib.func('int socket(int domain, int type, int protocol)');
  const bind = lib.func('int bind(int fd, const uint8_t *addr, uint32_t len)');
  const listen = lib.func('int listen(int fd, int backlog)');
  const accept4 = lib.func('int accept4(int fd, void *addr, void *len, int flags)');
  const ioctl = lib.func('int ioctl(int fd, unsigned long request, const uint8_t *arg)');
  const mount = lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)');
  const umount2 = lib.func('int umount2(const char *target, int flags)');
  const close = lib.func('int close(int fd)');
  const errno = () => koffi.errno() as number;
  const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_NONBLOCK = 0o4000, SOCK_CLOEXEC = 0o2000000;
  const TIOCSWINSZ = 0x5414;
  cached = {
    listenUnix(path) {
      const name = Buffer.from(path);
      if (name.length >= 108) throw errnoError('bind', path, osConstants.errno.ENAMETOOLONG);
      const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) throw errnoError('socket', path, errno());
      const addr = Buffer.alloc(110);
      addr.writeUInt16LE(AF_UNIX, 0);
      name.copy(addr, 2);
      if (bind(fd, addr, 2 + name.length + 1) !== 0 || listen(fd, 4) !== 0) {
        const e = errno();
        close(fd);
        throw errnoError('bind', path, e);
      }
      return fd;
    },
    acceptPending(fd) {
      const conn = accept4(fd, null, null, SOCK_CLOEXEC);
      if (conn >= 0) return conn;
      const e = errno();
      if (e === osConstants.errno.EAGAIN) return -1;
      throw errnoError('accept4', `fd ${fd}`, e);
    },
    setWinsize(fd, cols, rows) {
      const ws = Buffer.alloc(8);
      ws.writeUInt16LE(rows, 0);
      ws.writeUInt16LE(cols, 2);
      if (ioctl(fd, TIOCSWINSZ, ws) !== 0) throw errnoError('ioctl(TIOCSWINSZ)', `fd ${fd}`, errno());
    },
    mount(source, target, fstype, flags, data) {
      if (mount(source, target, fstype, flags, data) !== 0) throw errnoError('mount', `${fstype ?? ''} ${source} on ${target}`, errno());
    },
    umount2(target, flags) {
      if (umount2(target, flags) !== 0) throw errnoError('umount2', target, errno());
    },
    close(fd) { close(fd); },
  };
  return cached;
}
