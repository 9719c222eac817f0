/**
 * File-system kernel calls that Node's `fs` lacks, bound with koffi: extended attributes on paths
 * and descriptors (never following symlinks), mknod for device nodes and fifos, flock, and
 * openat2 with RESOLVE_* flags.
 *
 * koffi is loaded on first use: `const sys = await loadFsSys()` once, then every call is
 * synchronous. Failures throw an Error carrying `code` ('EPERM', 'ENODATA'...) and `errno`, like
 * Node's own fs errors, with the call and its path in the message.
 */
import { constants as osConstants } from 'node:os';
import { koffiLibc } from './libc.js';
import { errnoError } from './libc.js';

export interface FsSys {
  /** Names of the extended attributes of a path (symlinks themselves, not their targets). */
  llistxattr(path: string): string[];
  /** One attribute's value, or null when the path does not have it. */
  lgetxattr(path: string, name: string): Buffer | null;
  lsetxattr(path: string, name: string, value: Uint8Array, flags?: number): void;
  lremovexattr(path: string, name: string): void;
  flistxattr(fd: number): string[];
  fgetxattr(fd: number, name: string): Buffer | null;
  fsetxattr(fd: number, name: string, value: Uint8Array, flags?: number): void;
  /** mknod(2): `mode` holds the file type (S_IFCHR, S_IFBLK, S_IFIFO) and permission bits. */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** flock(2) without blocking: true when taken, false when someone else holds a conflicting lock. */
  tryFlock(fd: number, op: 'shared' | 'exclusive' | 'unlock'): boolean;
  /**
   * openat2(2): opens `path` relative to directory `dirfd` with RESOLVE_* flags
   * (RESOLVE_IN_ROOT makes absolute paths, `..` and symlinks stay under dirfd).
   */
  openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number;
}

/** openat2 resolve flags (linux/openat2.h). */
export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;

/** O_PATH, which Node's fs.constants does not export. */
export const O_PATH = 0o10000000;

const XATTR_BUF = 256;

let loaded: Promise<FsSys> | undefined;

/** Loads koffi and libc once and returns the bindings. */
export function loadFsSys(): Promise<FsSys> {
  loaded ??= bind();
  return loaded;
}

const sysError = errnoError;

async function bind(): Promise<FsSys> {
  const { koffi, lib: libc } = koffiLibc();
  const llistxattr = libc.func('intptr_t llistxattr(const char *path, _Out_ uint8_t *list, size_t size)');
  const lgetxattr = libc.func('intptr_t lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)');
  const lsetxattr = libc.func('int lsetxattr(const char *path, const char *name, const uint8_t *value, size_t size, int flags)');
  const lremovexattr = libc.func('int lremovexattr(const char *path, const char *name)');
  const flistxattr = libc.func('intptr_t flistxattr(int fd, _Out_ uint8_t *list, size_t size)');
  const fgetxattr = libc.func('intptr_t fgetxattr(int fd, const char *name, _Out_ uint8_t *value, size_t size)');
  const fsetxattr = libc.func('int fsetxattr(int fd, const char *name, const uint8_t *value, size_t size, int flags)');
  const mknod = libc.func('int mknod(const char *path, uint32_t mode, uint64_t dev)');
  const flock = libc.func('int flock(int fd, int op)');
  const syscall = libc.func('long syscall(long number, ...)');
  const errno = () => koffi.errno();

  // Reads a variable-length result: try a buffer, and on ERANGE ask the size and retry.
  function readSized(call: string, what: string, get: (buf: Buffer | null, size: number) => number): Buffer | null {
    let buf = Buffer.allocUnsafe(XATTR_BUF);
    for (let attempt = 0; attempt < 8; attempt++) {
      const n = Number(get(buf, buf.length));
      if (n >= 0) return buf.subarray(0, n);
      const e = errno();
      if (e === osConstants.errno.ENODATA) return null;
      if (e !== osConstants.errno.ERANGE) throw sysError(call, what, e);
      const need = Number(get(null, 0));
      if (need < 0) throw sysError(call, what, errno());
      buf = Buffer.allocUnsafe(Math.max(need, 1));
    }
    throw sysError(call, what, osConstants.errno.ERANGE);
  }

  function splitNames(list: Buffer | null): string[] {
    if (!list || list.length === 0) return [];
    const names: string[] = [];
    let start = 0;
    for (let i = 0; i < list.length; i++) {
      if (list[i] === 0) {
        if (i > start) names.push(list.toString('utf8', start, i));
        start = i + 1;
      }
    }
    return names;
  }

  function check(rc: number | bigint, call: string, what: string): void {
    if (Number(rc) < 0) throw sysError(call, what, errno());
  }

  const SYS_openat2 = 437; // the same number on every architecture (new syscalls are unified)
  const openHow = Buffer.alloc(24);

  return {
    llistxattr: (path) => splitNames(readSized('llistxattr', path, (b, n) => llistxattr(path, b, n))),
    lgetxattr: (path, name) => readSized('lgetxattr', `${path} ${name}`, (b, n) => lgetxattr(path, name, b, n)),
    lsetxattr: (path, name, value, flags = 0) =>
      check(lsetxattr(path, name, value, value.length, flags), 'lsetxattr', `${path} ${name}`),
    lremovexattr: (path, name) => check(lremovexattr(path, name), 'lremovexattr', `${path} ${name}`),
    flistxattr: (fd) => splitNames(readSized('flistxattr', `fd ${fd}`, (b, n) => flistxattr(fd, b, n))),
    fgetxattr: (fd, name) => readSized('fgetxattr', `fd ${fd} ${name}`, (b, n) => fgetxattr(fd, name, b, n)),
    fsetxattr: (fd, name, value, flags = 0) =>
      check(fsetxattr(fd, name, value, value.length, flags), 'fsetxattr', `fd ${fd} ${name}`),
    mknod(path, mode, major, minor) {
      // glibc's makedev() encoding of a dev_t.
      const dev =
        ((BigInt(major) & 0xfffff000n) << 32n) | ((BigInt(major) & 0xfffn) << 8n) |
        ((BigInt(minor) & 0xffffff00n) << 12n) | (BigInt(minor) & 0xffn);
      check(mknod(path, mode, dev), 'mknod', path);
    },
    tryFlock(fd, op) {
      const LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;
      const code = op === 'shared' ? LOCK_SH | LOCK_NB : op === 'exclusive' ? LOCK_EX | LOCK_NB : LOCK_UN;
      if (Number(flock(fd, code)) === 0) return true;
      const e = errno();
      if (e === osConstants.errno.EWOULDBLOCK || e === osConstants.errno.EINTR) return false;
      throw sysError('flock', `fd ${fd}`, e);
    },
    openat2(dirfd, path, flags, mode, resolve) {
      openHow.writeBigUInt64LE(BigInt(flags), 0);
      openHow.writeBigUInt64LE(BigInt(mode), 8);
      openHow.writeBigUInt64LE(BigInt(resolve), 16);
      const fd = Number(syscall(SYS_openat2, 'int', dirfd, 'const char *', path, 'void *', openHow, 'size_t', 24));
      if (fd < 0) throw sysError('openat2', path, errno());
      return fd;
    },
  };
}
