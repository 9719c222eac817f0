/**
 * The `*at` file-system calls, bound with koffi, for code that works relative to directory
 * descriptors it holds (the layer applier: every name it creates or removes is looked up in a
 * directory it resolved inside the root, never through a path the kernel walks again).
 *
 * Calls the caller expects to fail now and then (a name that exists or not) return a negative
 * errno instead of throwing, so the hot path pays for no exception; the others throw an Error with
 * `code` and `errno` like Node's fs errors.
 */
import { errnoError, koffiLibc } from './libc.js';

export { errnoError };

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_EMPTY_PATH = 0x1000;
/** O_CLOEXEC, which Node's fs.constants does not export (O_PATH is in fs.ts). */
export const O_CLOEXEC = 0o2000000;

export interface StatAt {
  /** File type and permission bits (st_mode). */
  mode: number;
  uid: number;
  gid: number;
  ino: bigint;
  nlink: number;
  /** Times in nanoseconds since the epoch. */
  atimeNs: bigint;
  mtimeNs: bigint;
}

export interface FsAtSys {
  /** openat(2): a descriptor, or -errno. */
  openat(dirfd: number, name: string, flags: number, mode: number): number;
  /** mkdirat(2): 0 or -errno. */
  mkdirat(dirfd: number, name: string, mode: number): number;
  unlinkat(dirfd: number, name: string, flags: number): void;
  symlinkat(target: string, dirfd: number, name: string): void;
  linkat(olddirfd: number, oldname: string, newdirfd: number, newname: string, flags: number): void;
  /** mknodat(2): `mode` holds the file type (S_IFCHR, S_IFBLK, S_IFIFO) and permission bits. */
  mknodat(dirfd: number, name: string, mode: number, major: number, minor: number): void;
  fchownat(dirfd: number, name: string, uid: number, gid: number, flags: number): void;
  fchmodat(dirfd: number, name: string, mode: number): void;
  /** utimensat(2) with both times in nanoseconds since the epoch. */
  utimensat(dirfd: number, name: string, atimeNs: bigint, mtimeNs: bigint, flags: number): void;
  readlinkat(dirfd: number, name: string): string;
  /** statx(2) of `name` in `dirfd` (flags: AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH), or -errno. */
  statat(dirfd: number, name: string, flags: number): StatAt | number;
}

let cached: FsAtSys | undefined;

/** The bindings; koffi and libc are loaded on the first call. */
export function fsAt(): FsAtSys {
  if (cached) return cached;
  const { koffi, lib } = koffiLibc();
  const openat = lib.func('int openat(int dirfd, const char *name, int flags, uint32_t mode)');
  const mkdirat = lib.func('int mkdirat(int dirfd, const char *name, uint32_t mode)');
  const unlinkat = lib.func('int unlinkat(int dirfd, const char *name, int flags)');
  const symlinkat = lib.func('int symlinkat(const char *target, int dirfd, const char *name)');
  const linkat = lib.func('int linkat(int olddirfd, const char *oldname, int newdirfd, const char *newname, int flags)');
  const mknodat = lib.func('int mknodat(int dirfd, const char *name, uint32_t mode, uint64_t dev)');
  const fchownat = lib.func('int fchownat(int dirfd, const char *name, uint32_t uid, uint32_t gid, int flags)');
  const fchmodat = lib.func('int fchmodat(int dirfd, const char *name, uint32_t mode, int flags)');
  const utimensat = lib.func('int utimensat(int dirfd, const char *name, const uint8_t *times, int flags)');
  const readlinkat = lib.func('intptr_t readlinkat(int dirfd, const char *name, _Out_ uint8_t *buf, size_t size)');
  const statx = lib.func('int statx(int dirfd, const char *name, int flags, uint32_t mask, _Out_ uint8_t *buf)');
  const errno = (): number => koffi.errno();
  const check = (rc: number, call: string, what: string): void => {
    if (rc < 0) throw errnoError(call, what, errno());
  };
  const times = Buffer.alloc(32);
  const statBuf = Buffer.alloc(256);
  const linkBuf = Buffer.alloc(4097);
  const STATX_BASIC_STATS = 0x7ff;
  const NS = 1_000_000_000n;
  const split = (ns: bigint): [bigint, bigint] => {
    const s = ns >= 0n ? ns / NS : -((-ns + NS - 1n) / NS);
    return [s, ns - s * NS];
  };
  cached = {
    openat(dirfd, name, flags, mode) {
      const fd = openat(dirfd, name, flags, mode) as number;
      return fd < 0 ? -errno() : fd;
    },
    mkdirat(dirfd, name, mode) {
      return (mkdirat(dirfd, name, mode) as number) < 0 ? -errno() : 0;
    },
    unlinkat: (dirfd, name, flags) => check(unlinkat(dirfd, name, flags), 'unlinkat', name),
    symlinkat: (target, dirfd, name) => check(symlinkat(target, dirfd, name), 'symlinkat', name),
    linkat: (od, on, nd, nn, flags) => check(linkat(od, on, nd, nn, flags), 'linkat', `${on} -> ${nn}`),
    mknodat(dirfd, name, mode, major, minor) {
      // glibc's makedev() encoding of a dev_t.
      const dev =
        ((BigInt(major) & 0xfffff000n) << 32n) | ((BigInt(major) & 0xfffn) << 8n) |
        ((BigInt(minor) & 0xffffff00n) << 12n) | (BigInt(minor) & 0xffn);
      check(mknodat(dirfd, name, mode, dev), 'mknodat', name);
    },
    fchownat: (dirfd, name, uid, gid, flags) => check(fchownat(dirfd, name, uid, gid, flags), 'fchownat', name),
    fchmodat: (dirfd, name, mode) => check(fchmodat(dirfd, name, mode, 0), 'fchmodat', name),
    utimensat(dirfd, name, atimeNs, mtimeNs, flags) {
      const [as, an] = split(atimeNs);
      const [ms, mn] = split(mtimeNs);
      times.writeBigInt64LE(as, 0); times.writeBigInt64LE(an, 8);
      times.writeBigInt64LE(ms, 16); times.writeBigInt64LE(mn, 24);
      check(utimensat(dirfd, name, times, flags), 'utimensat', name);
    },
    readlinkat(dirfd, name) {
      const n = Number(readlinkat(dirfd, name, linkBuf, linkBuf.length));
      if (n < 0) throw errnoError('readlinkat', name, errno());
      return linkBuf.toString('utf8', 0, n);
    },
    statat(dirfd, name, flags) {
      if ((statx(dirfd, name, flags, STATX_BASIC_STATS, statBuf) as number) < 0) return -errno();
      const ts = (off: number) => statBuf.readBigInt64LE(off) * NS + BigInt(statBuf.readUInt32LE(off + 8));
      return {
        nlink: statBuf.readUInt32LE(16),
        uid: statBuf.readUInt32LE(20),
        gid: statBuf.readUInt32LE(24),
        mode: statBuf.readUInt16LE(28),
        ino: statBuf.readBigUInt64LE(32),
        atimeNs: ts(64),
        mtimeNs: ts(112),
      };
    },
  };
  return cached;
}
