/**
 * Applying layers to a directory, safely, whatever the archive says.
 *
 * Entry names are cleaned: absolute names other than "/" itself, and `..` leaving the root, are refused. Every
 * path is then resolved as if the target directory were `/` (Docker's, containerd's and umoci's
 * behaviour): a symlink met on the way is followed, but absolute targets and `..` stop at the
 * target, so a merged-/usr base (`lib -> usr/lib`) works and nothing is ever written outside.
 * Resolution holds directory descriptors: openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) where
 * the kernel has it (5.6+), else a walk that opens one component at a time with O_NOFOLLOW and
 * expands symlinks itself; every name is then created or removed with the `*at` calls relative
 * to the directory resolved, so no path is walked twice. With `parentSymlinks: 'refuse'` a
 * symlink on the way refuses the layer instead.
 *
 * Files are created with O_CREAT|O_EXCL|O_NOFOLLOW after removing what was there; symlinks are
 * created as they are (their targets are never followed); hardlinks must point at an existing
 * non-directory inside the target. Device nodes are created only with CAP_MKNOD (else refused,
 * or skipped on request). Whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`) remove
 * what lower layers put there, never what this layer added. overlayfs' own xattrs
 * (trusted.overlay.*, user.overlay.*) are dropped with a warning. Sparse files are written
 * sparse. Resources are bounded: the uncompressed size (checked while streaming), the number of
 * entries, the length of names and link targets. On failure the target is left part-way:
 * callers discard it (unpackImage does).
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { constants as osConstants } from 'node:os';
import { KeelError } from '../util/errors.js';
import { readTar, type TarEntry, type TarHeader } from './tar.js';
import { decompress } from './compression.js';
import { Hasher, type Digest } from './digest.js';
import { WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from './diff.js';
import type { FsSys } from '../runtime/sys/fs.js';
import type { FsAtSys } from '../runtime/sys/fsat.js';

/** The two binding modules, loaded when a layer is applied (never by merely importing this file). */
type SysModules = typeof import('../runtime/sys/fs.js') & typeof import('../runtime/sys/fsat.js');
import type { OciLayout } from './store.js';

export interface ApplyOptions {
  /**
   * Device nodes: 'create' (needs CAP_MKNOD), 'skip' them, or 'refuse' the layer. Default: create
   * when this process has CAP_MKNOD, refuse otherwise. Fifos are always created.
   */
  devices?: 'create' | 'skip' | 'refuse';
  /** Give files the owners the archive says (default: when running as root). */
  owners?: boolean;
  /** Restore extended attributes (default true). Ones the kernel refuses become warnings. */
  xattrs?: boolean;
  /**
   * A symlink met on the way to an entry (planted by this or a lower layer): 'in-root' (default)
   * follows it as if the target were the root directory (absolute targets and '..' never leave
   * it), as Docker, containerd and umoci do; 'refuse' refuses the layer.
   */
  parentSymlinks?: 'refuse' | 'in-root';
  /**
   * How paths are resolved: 'auto' (openat2 where the kernel has it, else the component walk) or
   * 'walk' (always the O_NOFOLLOW component walk; for tests and old kernels).
   */
  resolver?: 'auto' | 'walk';
  /**
   * Most uncompressed bytes (the tar stream) this layer may have; checked while streaming.
   * Default: what the target's file system has free, less a margin (see defaultUnpackLimit).
   */
  maxSize?: number;
  /** Bytes earlier layers of the same image unpacked: they count against `maxSize` (an image-wide cap). */
  unpackedBefore?: number;
  /** Most entries the layer may have (default 4 194 304). */
  maxEntries?: number;
  /** Called for each warning (also returned in the result). */
  onWarning?: (message: string) => void;
  /** Name of the layer in messages (default "layer"). */
  what?: string;
}

export interface ApplyResult {
  /** sha256 of the uncompressed archive (what an image config lists in rootfs.diff_ids). */
  diffID: Digest;
  /** Size of the uncompressed archive. */
  size: number;
  entries: number;
  warnings: string[];
}

/** Limits on one entry: longer names and link targets than Linux can hold are refused early. */
export const MAX_PATH = 4096;
export const MAX_NAME = 255;
export const DEFAULT_MAX_ENTRIES = 1 << 22;
/** What the names of one layer's entries may add up to: the applier remembers each name it creates. */
export const MAX_NAME_BYTES = 256 << 20;

const CAP_MKNOD = 27;

/** Whether this process holds CAP_MKNOD in its effective set. */
export function hasCapMknod(): boolean {
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    return m ? ((BigInt(`0x${m[1]}`) >> BigInt(CAP_MKNOD)) & 1n) === 1n : false;
  } catch {
    return false;
  }
}

/**
 * The default cap on what may be unpacked into `dir`: its file system's free space less a margin
 * (5 % of the file system, at most 1 GiB), so that a decompression bomb stops before the disk is
 * full.
 */
export function defaultUnpackLimit(dir: string): number {
  const s = fs.statfsSync(dir);
  const free = s.bavail * s.bsize;
  const margin = Math.min(1 << 30, Math.floor(s.blocks * s.bsize * 0.05));
  return Math.max(0, free - margin);
}

/** "1.5 GiB"-style sizes for messages. */
export function formatSize(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${n} bytes` : `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/** Parses a size such as 512M, 1G, 10GiB, 1.5T or 4096 (bytes); binary units. */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text);
  if (!m) throw new KeelError(`${what}: ${JSON.stringify(text)} is not a size (e.g. 512M, 10G, 1T or a number of bytes)`);
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't' | 'p'];
  return Math.floor(Number(m[1]) * mult);
}

const S_IFMT = 0o170000, S_IFDIR = 0o040000, S_IFLNK = 0o120000;
const S_IFCHR = 0o020000, S_IFBLK = 0o060000, S_IFIFO = 0o010000;
const { ENOENT, EEXIST, ENOSYS, EPERM, ENOTDIR, ELOOP } = osConstants.errno;

/** A directory resolved inside the root: a descriptor on it and its real path (no symlinks). */
interface Dir {
  fd: number;
  real: string;
  setgid: boolean;
}

const CACHE = 64;

class Applier {
  private readonly rootfd: number;
  private readonly rootDir: Dir;
  /** Resolved directories by the (cleaned) archive path that named them, least recent first. */
  private readonly cache = new Map<string, Dir>();
  /** Descriptors dropped from the cache while an entry may still use them: closed at the next entry. */
  private retired: number[] = [];
  /** Real paths this layer created. */
  private readonly created = new Set<string>();
  private readonly dirTimes: [string, bigint][] = [];
  /** Times of existing directories whose children this layer changes, to put back: a layer changes only what it lists. */
  private readonly keptTimes = new Map<string, [bigint, bigint]>();
  /** Bytes of names remembered so far (bounded by MAX_NAME_BYTES). */
  private nameBytes = 0;
  readonly warnings: string[] = [];
  private readonly owners: boolean;
  private readonly devices: 'create' | 'skip' | 'refuse';
  private readonly xattrs: boolean;
  private readonly inRoot: boolean;
  private useOpenat2: boolean;
  private readonly proc: boolean;
  private readonly what: string;
  private readonly euid = process.geteuid?.() ?? 0;
  private readonly egid = process.getegid?.() ?? 0;
  private readonly umask = process.umask();

  constructor(private readonly root: string, private readonly sys: FsSys, private readonly at: FsAtSys, private readonly O: SysModules, private readonly opts: ApplyOptions) {
    this.owners = opts.owners ?? this.euid === 0;
    this.devices = opts.devices ?? (hasCapMknod() ? 'create' : 'refuse');
    this.xattrs = opts.xattrs ?? true;
    this.what = opts.what ?? 'layer';
    this.inRoot = (opts.parentSymlinks ?? 'in-root') === 'in-root';
    this.rootfd = fs.openSync(root, O.O_PATH | fs.constants.O_DIRECTORY | O.O_CLOEXEC);
    this.rootDir = { fd: this.rootfd, real: '', setgid: (fs.fstatSync(this.rootfd).mode & 0o2000) !== 0 };
    let proc = false;
    try {
      proc = fs.readlinkSync(`/proc/self/fd/${this.rootfd}`) === root;
    } catch { /* no /proc: real paths come from the walk */ }
    this.proc = proc;
    this.useOpenat2 = opts.resolver !== 'walk';
    if (this.useOpenat2) {
      try {
        fs.closeSync(sys.openat2(this.rootfd, '.', O.O_PATH | O.O_CLOEXEC, 0, O.RESOLVE_IN_ROOT));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).errno;
        if (code === -ENOSYS || code === -EPERM) this.useOpenat2 = false;
        else throw err;
      }
    }
  }

  close(): void {
    this.retire();
    this.closeRetired();
    fs.closeSync(this.rootfd);
  }

  private fail(entry: string, why: string): never {
    throw new KeelError(`${this.what}: ${JSON.stringify(entry)}: ${why}`);
  }

  private warn(msg: string): void {
    this.warnings.push(msg);
    this.opts.onWarning?.(msg);
  }

  /**
   * Cleans an archive path into a relative path of components, lexically as Go's filepath.Clean
   * (so `a/../b` is `b`, as containerd and Docker take it); refuses absolute paths, a `..` that
   * would leave the root, and oversized names.
   */
  clean(raw: string, entry: string, what = 'path'): string {
    if (raw.includes('\0')) this.fail(entry, `${what} contains a NUL byte`);
    if (Buffer.byteLength(raw) >= MAX_PATH) this.fail(entry, `${what} is longer than ${MAX_PATH - 1} bytes`);
    // "/" alone names the root (umoci writes it so); any other absolute name is refused.
    if (raw.startsWith('/') && !/^[/.]+$/.test(raw)) this.fail(entry, `absolute ${what} refused`);
    const out: string[] = [];
    for (const part of raw.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (out.length === 0) this.fail(entry, `${what} with '..' refused (it leaves the root)`);
        out.pop();
        continue;
      }
      if (Buffer.byteLength(part) > MAX_NAME) this.fail(entry, `${what} has a component longer than ${MAX_NAME} bytes`);
      out.push(part);
    }
    return out.join('/');
  }

  // ───────────── resolution ─────────────

  /** Drops every cached directory (something on a cached path was removed or replaced). */
  private retire(): void {
    for (const d of this.cache.values()) this.retired.push(d.fd);
    this.cache.clear();
  }

  private closeRetired(): void {
    for (const fd of this.retired) fs.closeSync(fd);
    this.retired = [];
  }

  /** openat2 of a directory beneath the root (O_PATH): a descriptor, or -errno. */
  private openat2(rel: string, resolve: number): number {
    try {
      return this.sys.openat2(this.rootfd, rel, this.O.O_PATH | fs.constants.O_DIRECTORY | this.O.O_CLOEXEC, 0, resolve);
    } catch (err) {
      return (err as NodeJS.ErrnoException).errno ?? -osConstants.errno.EIO;
    }
  }

  /** The real path (relative to the root) of a directory descriptor, from /proc. */
  private realOf(fd: number, entry: string): string | undefined {
    if (!this.proc) return undefined;
    const p = fs.readlinkSync(`/proc/self/fd/${fd}`);
    if (p === this.root) return '';
    if (!p.startsWith(`${this.root}/`)) this.fail(entry, `resolved outside the target (${p})`);
    return p.slice(this.root.length + 1);
  }

  /**
   * The directory a (clean) archive path names, resolved inside the root; missing directories are
   * created when `create` (else undefined is returned). The result belongs to the cache: valid
   * until the next entry.
   */
  private resolveDir(rel: string, entry: string, create: boolean): Dir | undefined {
    if (rel === '') return this.rootDir;
    const hit = this.cache.get(rel);
    if (hit) {
      this.cache.delete(rel);
      this.cache.set(rel, hit);
      return hit;
    }
    let d: Dir | undefined;
    if (this.useOpenat2) {
      const O = this.O;
      // Most paths have no symlink: resolved without one, the real path is the path itself. Only
      // when one is met (ELOOP) is the path resolved in the root and its real path asked of /proc.
      const plain = O.RESOLVE_BENEATH | O.RESOLVE_NO_SYMLINKS | O.RESOLVE_NO_MAGICLINKS;
      let fd = this.openat2(rel, plain);
      let real: string | undefined = rel;
      if (fd === -ELOOP && this.inRoot) {
        fd = this.openat2(rel, O.RESOLVE_IN_ROOT | O.RESOLVE_NO_MAGICLINKS);
        real = fd >= 0 ? this.realOf(fd, entry) : undefined;
      }
      if (fd >= 0) {
        if (real === undefined) fs.closeSync(fd);
        else d = { fd, real, setgid: (fs.fstatSync(fd).mode & 0o2000) !== 0 };
      } else if (fd === -ENOENT && !create) {
        return undefined;
      } else if (![ENOENT, ENOTDIR, ELOOP, EEXIST, osConstants.errno.EAGAIN, osConstants.errno.EXDEV].includes(-fd)) {
        throw new KeelError(`${this.what}: ${JSON.stringify(entry)}: cannot resolve ${JSON.stringify(rel)}: ${this.O.errnoError('openat2', rel, -fd).code}`);
      }
    }
    d ??= this.walk(rel, entry, create);
    if (!d) return undefined;
    if (this.cache.size >= CACHE) {
      const [oldest, od] = this.cache.entries().next().value as [string, Dir];
      this.cache.delete(oldest);
      this.retired.push(od.fd);
    }
    this.cache.set(rel, d);
    return d;
  }

  /**
   * Component-by-component resolution: each name opened with O_NOFOLLOW relative to the directory
   * before it; symlinks expanded here (in-root: absolute targets restart at the root, '..' stops
   * there) or refused; missing directories created when `create`.
   */
  private walk(rel: string, entry: string, create: boolean): Dir | undefined {
    const at = this.at;
    const stack: { fd: number; name: string; setgid: boolean }[] = [];
    const top = () => stack[stack.length - 1];
    const cur = () => top()?.fd ?? this.rootfd;
    const realPath = (extra?: string) => [...stack.map((s) => s.name), ...(extra === undefined ? [] : [extra])].join('/');
    const release = () => { for (const s of stack) fs.closeSync(s.fd); stack.length = 0; };
    const pending = rel.split('/');
    let links = 0;
    try {
      while (pending.length) {
        const comp = pending.shift()!;
        if (comp === '' || comp === '.') continue;
        if (comp === '..') {
          const s = stack.pop();
          if (s) fs.closeSync(s.fd);
          continue;
        }
        const fd = at.openat(cur(), comp, this.O.O_PATH | fs.constants.O_NOFOLLOW | this.O.O_CLOEXEC, 0);
        if (fd === -ENOENT) {
          if (!create) { release(); return undefined; }
          this.keepTimesOf(cur(), realPath());
          const r = at.mkdirat(cur(), comp, 0o755);
          if (r < 0 && r !== -EEXIST) throw this.O.errnoError('mkdirat', realPath(comp), -r);
          if (r === 0) {
            at.fchmodat(cur(), comp, 0o755); // whatever the umask
            this.created.add(realPath(comp));
          }
          pending.unshift(comp);
          continue;
        }
        if (fd < 0) throw this.O.errnoError('openat', realPath(comp), -fd);
        const mode = fs.fstatSync(fd).mode;
        const type = mode & S_IFMT;
        if (type === S_IFDIR) {
          stack.push({ fd, name: comp, setgid: (mode & 0o2000) !== 0 });
        } else if (type === S_IFLNK) {
          let target: string;
          try {
            if (!this.inRoot) this.fail(entry, `refusing to write through symlink ${JSON.stringify(realPath(comp))}`);
            if (++links > 40) this.fail(entry, `too many levels of symlinks at ${JSON.stringify(realPath(comp))}`);
            target = at.readlinkat(fd, '');
          } finally {
            fs.closeSync(fd);
          }
          if (target.startsWith('/')) release();
          pending.unshift(...target.split('/'));
        } else {
          fs.closeSync(fd);
          this.fail(entry, `${JSON.stringify(realPath(comp))} is not a directory`);
        }
      }
      const last = stack.pop();
      const d: Dir = last ? { fd: last.fd, real: realPath(last.name), setgid: last.setgid } : { fd: fs.openSync(this.root, this.O.O_PATH | fs.constants.O_DIRECTORY | this.O.O_CLOEXEC), real: '', setgid: this.rootDir.setgid };
      release();
      return d;
    } catch (err) {
      release();
      throw err;
    }
  }

  /** A path naming `name` in `dir` that the kernel resolves through the descriptor (for calls that have no `*at` form). */
  private pathAt(dir: Dir, name: string): string {
    if (this.proc) return `/proc/self/fd/${dir.fd}/${name}`;
    return join(this.root, dir.real, name);
  }

  private static child(dir: Dir, name: string): string {
    return dir.real ? `${dir.real}/${name}` : name;
  }

  /** lstat of `name` in `dir`, or undefined when it does not exist. */
  private statAt(dir: Dir, name: string) {
    const st = this.at.statat(dir.fd, name, this.O.AT_SYMLINK_NOFOLLOW);
    if (typeof st === 'number') {
      if (st === -ENOENT) return undefined;
      throw this.O.errnoError('statx', Applier.child(dir, name), -st);
    }
    return st;
  }

  /** Removes whatever is at `name` in `dir` (a directory recursively; symlinks are removed, not followed). */
  private removeAt(dir: Dir, name: string): void {
    const st = this.statAt(dir, name);
    if (!st) return;
    const type = st.mode & S_IFMT;
    if (type === S_IFDIR) {
      this.retire();
      fs.rmSync(this.pathAt(dir, name), { recursive: true, force: true });
    } else {
      if (type === S_IFLNK) this.retire();
      this.at.unlinkat(dir.fd, name, 0);
    }
  }

  /** Removes the children of `dir` that this layer did not create (opaque directory). */
  private prune(dir: Dir): void {
    for (const name of fs.readdirSync(this.pathAt(dir, '.'))) {
      const child = Applier.child(dir, name);
      if (!this.created.has(child)) {
        this.removeAt(dir, name);
        continue;
      }
      const st = this.statAt(dir, name);
      if (st && (st.mode & S_IFMT) === S_IFDIR) {
        const fd = this.at.openat(dir.fd, name, this.O.O_PATH | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW | this.O.O_CLOEXEC, 0);
        if (fd < 0) throw this.O.errnoError('openat', child, -fd);
        try {
          this.prune({ fd, real: child, setgid: false });
        } finally {
          fs.closeSync(fd);
        }
      }
    }
  }

  // ───────────── metadata ─────────────

  private setXattrs(entry: string, xattrs: Record<string, Buffer> | undefined, set: (name: string, value: Buffer) => void): void {
    if (!xattrs || !this.xattrs) return;
    for (const [name, value] of Object.entries(xattrs)) {
      if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) {
        // overlayfs' own bookkeeping (redirects, metacopy, origin): meaningless in a layer and
        // dangerous once the result serves as an overlay lower directory.
        this.warn(`${this.what}: ${entry}: overlayfs xattr ${name} dropped`);
        continue;
      }
      try {
        set(name, value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EACCES' || code === 'EINVAL') {
          this.warn(`${this.what}: ${entry}: xattr ${name} not restored (${code})`);
        } else {
          throw err;
        }
      }
    }
  }

  private chown(entry: string, h: TarHeader, fn: () => void): void {
    if (!this.owners) return;
    try {
      fn();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EPERM' || code === 'EINVAL') this.warn(`${this.what}: ${entry}: owner ${h.uid}:${h.gid} not set (${code})`);
      else throw err;
    }
  }

  /** Owner, mode, xattrs of a node that is not a regular file, set by name in its directory. */
  private metaAt(dir: Dir, name: string, h: TarHeader, entry: string, symlink: boolean): void {
    this.chown(entry, h, () => this.at.fchownat(dir.fd, name, h.uid, h.gid, this.O.AT_SYMLINK_NOFOLLOW));
    if (!symlink) this.at.fchmodat(dir.fd, name, h.mode);
    this.setXattrs(entry, h.xattrs, (n, v) => this.sys.lsetxattr(this.pathAt(dir, name), n, v));
  }

  private keepTimesOf(fd: number, real: string): void {
    if (this.keptTimes.has(real) || this.created.has(real)) return;
    const st = this.at.statat(fd, '', this.O.AT_EMPTY_PATH);
    if (typeof st !== 'number') this.keptTimes.set(real, [st.atimeNs, st.mtimeNs]);
  }

  // ───────────── entries ─────────────

  /** Names of the image's users and groups (its /etc/passwd and /etc/group), read once when an ACL needs them. */
  private ids: { user: Map<string, number>; group: Map<string, number> } | undefined;

  /** The entry's ACLs (text in the archive) as the xattrs the kernel takes, added to its xattrs. */
  private async aclXattrs(h: TarHeader, entry: string): Promise<Record<string, Buffer> | undefined> {
    const { aclNames, encodeAcl } = await import('./acl.js');
    const out = { ...h.xattrs };
    for (const [kind, text] of Object.entries(h.acls ?? {})) {
      if (!text) continue;
      if (aclNames(text) && !this.ids) {
        const { readFileInRoot, parsePasswd, parseGroup } = await import('./user.js');
        this.ids = {
          user: new Map(parsePasswd((await readFileInRoot(this.root, 'etc/passwd')) ?? '').map((u) => [u.name, u.uid])),
          group: new Map(parseGroup((await readFileInRoot(this.root, 'etc/group')) ?? '').map((g) => [g.name, g.gid])),
        };
      }
      const value = encodeAcl(text, (k, name) => this.ids?.[k].get(name));
      if (typeof value === 'string') this.warn(`${this.what}: ${entry}: ${kind} ACL not restored (${value})`);
      else out[`system.posix_acl_${kind}`] = value;
    }
    return out;
  }

  async entry(e: TarEntry): Promise<void> {
    this.closeRetired();
    const h = e.header;
    if (h.acls && this.xattrs) h.xattrs = await this.aclXattrs(h, e.rawPath);
    const cleaned = this.clean(e.rawPath, e.rawPath);
    const slash = cleaned.lastIndexOf('/');
    const base = slash < 0 ? cleaned : cleaned.slice(slash + 1);
    const parentPath = slash < 0 ? '' : cleaned.slice(0, slash);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (h.type === 'dir') this.fail(e.rawPath, 'whiteout must not be a directory');
      if (base === OPAQUE_WHITEOUT) {
        const d = this.resolveDir(parentPath, e.rawPath, true)!;
        this.keepTimesOf(d.fd, d.real);
        this.prune(d);
        return;
      }
      if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return; // other aufs metadata: ignored
      const name = base.slice(WHITEOUT_PREFIX.length);
      if (name === '' || name === '.' || name === '..') this.fail(e.rawPath, 'invalid whiteout');
      const parent = this.resolveDir(parentPath, e.rawPath, false);
      if (parent === undefined) return;
      if (this.created.has(Applier.child(parent, name))) return; // whiteouts only hide lower layers' files
      this.keepTimesOf(parent.fd, parent.real);
      this.removeAt(parent, name);
      return;
    }

    if (cleaned === '') {
      if (h.type !== 'dir') this.fail(e.rawPath, 'the root of a layer can only be a directory');
      this.chown(e.rawPath, h, () => fs.lchownSync(this.root, h.uid, h.gid));
      fs.chmodSync(this.root, h.mode);
      this.setXattrs(e.rawPath, h.xattrs, (n, v) => this.sys.lsetxattr(this.root, n, v));
      this.dirTimes.push(['', mtimeNs(h.mtime)]);
      this.rootDir.setgid = (h.mode & 0o2000) !== 0;
      return;
    }

    const parent = this.resolveDir(parentPath, e.rawPath, true)!;
    this.keepTimesOf(parent.fd, parent.real);
    const rel = Applier.child(parent, base);
    const at = this.at;
    this.nameBytes += rel.length;
    if (this.nameBytes > MAX_NAME_BYTES) throw new KeelError(`${this.what}: the names of its entries add up to more than ${formatSize(MAX_NAME_BYTES)}`);
    this.created.add(rel);

    switch (h.type) {
      case 'dir': {
        const st = this.statAt(parent, base);
        let exists = st !== undefined;
        if (st && (st.mode & S_IFMT) !== S_IFDIR) {
          this.removeAt(parent, base);
          exists = false;
        }
        if (!exists) {
          const r = at.mkdirat(parent.fd, base, 0o700);
          if (r < 0) throw this.O.errnoError('mkdirat', rel, -r);
        }
        this.metaAt(parent, base, h, e.rawPath, false);
        this.dirTimes.push([rel, mtimeNs(h.mtime)]);
        return;
      }
      case 'file': {
        // Create exclusively without following anything; whatever is in the way is removed
        // first (only then: most extractions go to fresh paths and save the lstat).
        const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW | this.O.O_CLOEXEC;
        let fd = at.openat(parent.fd, base, flags, h.mode & 0o777);
        if (fd === -EEXIST) {
          this.removeAt(parent, base);
          fd = at.openat(parent.fd, base, flags, h.mode & 0o777);
        }
        if (fd < 0) throw this.O.errnoError('openat', rel, -fd);
        try {
          await this.writeData(fd, e);
          // A new file already belongs to us (group: ours, or the set-gid parent's) with the
          // requested permissions less the umask: change only what differs.
          if (h.uid !== this.euid || h.gid !== this.egid || parent.setgid) {
            this.chown(e.rawPath, h, () => fs.fchownSync(fd, h.uid, h.gid));
          }
          if ((h.mode & 0o7000) !== 0 || (h.mode & this.umask) !== 0) fs.fchmodSync(fd, h.mode);
          this.setXattrs(e.rawPath, h.xattrs, (n, v) => this.sys.fsetxattr(fd, n, v));
          fs.futimesSync(fd, h.mtime, h.mtime);
        } finally {
          fs.closeSync(fd);
        }
        return;
      }
      case 'symlink': {
        const target = h.linkname ?? '';
        if (target === '' || target.includes('\0')) this.fail(e.rawPath, 'invalid symlink target');
        if (Buffer.byteLength(target) >= MAX_PATH) this.fail(e.rawPath, `symlink target is longer than ${MAX_PATH - 1} bytes`);
        this.removeAt(parent, base);
        at.symlinkat(target, parent.fd, base);
        this.metaAt(parent, base, h, e.rawPath, true);
        at.utimensat(parent.fd, base, mtimeNs(h.mtime), mtimeNs(h.mtime), this.O.AT_SYMLINK_NOFOLLOW);
        return;
      }
      case 'hardlink': {
        const raw = h.linkname ?? '';
        // A hardlink names another archive member; a leading '/' means the archive's root.
        const target = this.clean(raw.replace(/^\/+/, ''), e.rawPath, 'hardlink target');
        if (target === '' || target === cleaned) this.fail(e.rawPath, `invalid hardlink target ${JSON.stringify(raw)}`);
        const tslash = target.lastIndexOf('/');
        const tparent = this.resolveDir(tslash < 0 ? '' : target.slice(0, tslash), e.rawPath, false);
        if (tparent === undefined) this.fail(e.rawPath, `hardlink target ${JSON.stringify(raw)} does not exist`);
        const tbase = target.slice(tslash + 1);
        if (Applier.child(tparent, tbase) === rel) this.fail(e.rawPath, `invalid hardlink target ${JSON.stringify(raw)}`);
        const tst = this.statAt(tparent, tbase);
        if (!tst) this.fail(e.rawPath, `hardlink target ${JSON.stringify(raw)} does not exist`);
        if ((tst.mode & S_IFMT) === S_IFDIR) this.fail(e.rawPath, `hardlink to directory ${JSON.stringify(raw)} refused`);
        // The target's directory stays open while the link's name is cleared (the removal may
        // drop the cache, not the descriptors the entry holds).
        this.removeAt(parent, base);
        at.linkat(tparent.fd, tbase, parent.fd, base, 0);
        return;
      }
      case 'chardev':
      case 'blockdev':
      case 'fifo': {
        if (h.type !== 'fifo') {
          if (this.devices === 'skip') {
            this.created.delete(rel);
            this.warn(`${this.what}: ${e.rawPath}: device node skipped`);
            return;
          }
          if (this.devices === 'refuse') this.fail(e.rawPath, 'device node refused (no CAP_MKNOD)');
        }
        this.removeAt(parent, base);
        const kind = h.type === 'chardev' ? S_IFCHR : h.type === 'blockdev' ? S_IFBLK : S_IFIFO;
        try {
          at.mknodat(parent.fd, base, kind | (h.mode & 0o777), h.devmajor ?? 0, h.devminor ?? 0);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EPERM') this.fail(e.rawPath, 'device node refused (mknod not permitted)');
          throw err;
        }
        this.metaAt(parent, base, h, e.rawPath, false);
        at.utimensat(parent.fd, base, mtimeNs(h.mtime), mtimeNs(h.mtime), this.O.AT_SYMLINK_NOFOLLOW);
        return;
      }
    }
  }

  /** Writes a file's data: in order, or for a sparse entry each segment at its offset (holes stay holes). */
  private async writeData(fd: number, e: TarEntry): Promise<void> {
    const h = e.header;
    const sparse = e.sparse;
    let written = 0;
    if (!sparse) {
      for await (const chunk of e.body()) {
        let off = 0;
        while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
        written += chunk.length;
      }
      if (written !== h.size) this.fail(e.rawPath, 'truncated data');
      return;
    }
    let seg = 0;
    let segDone = 0;
    for await (const chunk of e.body()) {
      let off = 0;
      while (off < chunk.length) {
        while (seg < sparse.length && segDone === sparse[seg]![1]) { seg++; segDone = 0; }
        if (seg >= sparse.length) this.fail(e.rawPath, 'sparse data longer than its map');
        const [segOff, segLen] = sparse[seg]!;
        const n = Math.min(chunk.length - off, segLen - segDone);
        const w = fs.writeSync(fd, chunk, off, n, segOff + segDone);
        off += w;
        segDone += w;
        written += w;
      }
    }
    const expected = sparse.reduce((n, [, len]) => n + len, 0);
    if (written !== expected) this.fail(e.rawPath, 'truncated data');
    fs.ftruncateSync(fd, h.size);
  }

  /** Directory times last: creating children changed them. */
  finish(): void {
    this.closeRetired();
    // Directories still cached are where they were resolved (any removal on the way retired them).
    for (const d of this.cache.values()) this.parents.set(d.real, d.fd);
    try {
      const fromLayer = new Set(this.dirTimes.map(([rel]) => rel));
      for (const [rel, [atime, mtime]] of this.keptTimes) {
        if (!fromLayer.has(rel)) this.setDirTimes(rel, atime, mtime);
      }
      for (let i = this.dirTimes.length - 1; i >= 0; i--) {
        const [rel, mtime] = this.dirTimes[i]!;
        this.setDirTimes(rel, mtime, mtime);
      }
    } finally {
      if (this.lastParent) fs.closeSync(this.lastParent[1]);
      this.lastParent = undefined;
      this.parents.clear();
    }
  }

  /** finish(): cached directories by real path, and the last other parent opened (siblings come together). */
  private readonly parents = new Map<string, number>();
  private lastParent: [string, number] | undefined;

  private parentFd(rel: string): number {
    const cached = this.parents.get(rel);
    if (cached !== undefined) return cached;
    if (this.lastParent?.[0] === rel) return this.lastParent[1];
    const fd = this.openReal(rel);
    if (fd >= 0) {
      if (this.lastParent) fs.closeSync(this.lastParent[1]);
      this.lastParent = [rel, fd];
    }
    return fd;
  }

  /**
   * Sets the times of the directory at real path `rel`, if it is still one there, reached without
   * symlinks (a later entry may have replaced a directory on the way).
   */
  private setDirTimes(rel: string, atime: bigint, mtime: bigint): void {
    if (rel === '') {
      this.at.utimensat(this.rootfd, '.', atime, mtime, 0);
      return;
    }
    const slash = rel.lastIndexOf('/');
    const parent = slash < 0 ? '' : rel.slice(0, slash);
    const name = rel.slice(slash + 1);
    const fd = parent ? this.parentFd(parent) : this.rootfd;
    if (fd < 0) return;
    const st = this.at.statat(fd, name, this.O.AT_SYMLINK_NOFOLLOW);
    if (typeof st !== 'number' && (st.mode & S_IFMT) === S_IFDIR) this.at.utimensat(fd, name, atime, mtime, this.O.AT_SYMLINK_NOFOLLOW);
  }

  /** Opens a real (symlink-free) directory path beneath the root, or -1 when it no longer is one. */
  private openReal(rel: string): number {
    const O = this.O;
    if (this.useOpenat2) return this.openat2(rel, O.RESOLVE_BENEATH | O.RESOLVE_NO_SYMLINKS | O.RESOLVE_NO_MAGICLINKS);
    let fd = this.rootfd;
    for (const comp of rel.split('/')) {
      const next = this.at.openat(fd, comp, O.O_PATH | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW | this.O.O_CLOEXEC, 0);
      if (fd !== this.rootfd) fs.closeSync(fd);
      if (next < 0) return -1;
      fd = next;
    }
    return fd;
  }
}

function mtimeNs(seconds: number): bigint {
  return BigInt(Math.round(seconds * 1e9));
}

/** Counts and hashes the uncompressed stream, refusing it once it is larger than `max`. */
async function* measured(source: AsyncIterable<Buffer>, hasher: Hasher, max: number, before: number, what: string): AsyncGenerator<Buffer> {
  for await (const c of source) {
    hasher.update(c);
    if (before + hasher.size > max) {
      throw new KeelError(`${what}: unpacked size exceeds the limit of ${formatSize(max)} (--max-unpacked-size); stopped after ${formatSize(before + hasher.size)}`);
    }
    yield c;
  }
}

/**
 * Applies one layer (a tar stream, compressed with gzip or zstd or not at all: the magic bytes
 * decide) onto `target`, which must be an existing directory.
 */
export async function applyLayer(target: string, source: AsyncIterable<Uint8Array>, opts: ApplyOptions = {}): Promise<ApplyResult> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KeelError(`apply layer: target ${target} ${code === 'ENOENT' ? 'does not exist' : `is not accessible (${code})`}`);
  }
  if (!st.isDirectory()) throw new KeelError(`apply layer: target ${target} is not a directory`);
  const O: SysModules = { ...(await import('../runtime/sys/fs.js')), ...(await import('../runtime/sys/fsat.js')) };
  const what = opts.what ?? 'layer';
  const root = fs.realpathSync(target);
  const max = opts.maxSize ?? defaultUnpackLimit(root);
  const maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const applier = new Applier(root, await O.loadFsSys(), O.fsAt(), O, opts);
  const hasher = new Hasher('sha256');
  let entries = 0;
  try {
    for await (const entry of readTar(measured(decompress(source, what), hasher, max, opts.unpackedBefore ?? 0, what), { drain: true })) {
      if (++entries > maxEntries) throw new KeelError(`${what}: more than ${maxEntries} entries`);
      await applier.entry(entry);
    }
    applier.finish();
  } finally {
    applier.close();
  }
  return { diffID: hasher.digest(), size: hasher.size, entries, warnings: applier.warnings };
}

/**
 * Applies a layer blob from a store: the blob's digest is verified as it is read, and the
 * uncompressed content against `expectedDiffID` when given. A mismatch throws after the layer has
 * been written: callers discard the target then.
 */
export async function applyLayerBlob(layout: OciLayout, desc: { digest: Digest; size?: number }, target: string, opts: ApplyOptions & { expectedDiffID?: string } = {}): Promise<ApplyResult> {
  const what = opts.what ?? `layer ${desc.digest}`;
  const result = await applyLayer(target, layout.readBlob(desc.digest, desc.size, what), { ...opts, what });
  if (opts.expectedDiffID && opts.expectedDiffID !== result.diffID) {
    throw new KeelError(`${what}: uncompressed content ${result.diffID} does not match the image config's diff_id ${opts.expectedDiffID}`);
  }
  return result;
}
