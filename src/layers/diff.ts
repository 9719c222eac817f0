/**
 * Where layer contents come from: a sequence of changes (tar headers plus the file that holds
 * each regular file's data), made from
 * - an overlayfs upper directory (whiteout devices and opaque-directory xattrs → OCI whiteouts),
 * - the difference between two plain directory trees,
 * - a whole directory tree (everything in it is an addition).
 * Entries come out in a fixed order: depth-first, each directory's opaque marker first, then its
 * children sorted by their archive name. Hardlinked files become one file and hardlinks to it.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { KeelError } from '../util/errors.js';
import type { TarHeader, EntryType } from './tar.js';
import type { FsSys } from '../runtime/sys/fs.js';

export interface LayerChange {
  header: TarHeader;
  /** Absolute path holding a regular file's data. */
  source?: string;
}

export interface WalkOptions {
  /**
   * Clamp modification times to this (seconds since the epoch). Default: the SOURCE_DATE_EPOCH
   * environment variable when set.
   */
  sourceDateEpoch?: number;
  /**
   * Which extended attributes to archive: false for none, a predicate, or (default) all but
   * overlayfs' own (trusted.overlay.*, user.overlay.*) and security.selinux (a host label).
   */
  xattrs?: boolean | ((name: string) => boolean);
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

/** SOURCE_DATE_EPOCH from the environment, checked. */
export function sourceDateEpochFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new KeelError(`SOURCE_DATE_EPOCH must be a whole number of seconds, not ${JSON.stringify(v)}`);
  return Number(v);
}

function defaultXattrFilter(name: string): boolean {
  return !name.startsWith('trusted.overlay.') && !name.startsWith('user.overlay.') && name !== 'security.selinux';
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000, S_IFDIR = 0o040000, S_IFLNK = 0o120000, S_IFCHR = 0o020000, S_IFBLK = 0o060000, S_IFIFO = 0o010000;

function typeOf(mode: number): EntryType | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG: return 'file';
    case S_IFDIR: return 'dir';
    case S_IFLNK: return 'symlink';
    case S_IFCHR: return 'chardev';
    case S_IFBLK: return 'blockdev';
    case S_IFIFO: return 'fifo';
    default: return undefined; // sockets and the like cannot be archived
  }
}

export function devMajor(rdev: number): number {
  return Number(((BigInt(rdev) >> 8n) & 0xfffn) | ((BigInt(rdev) >> 32n) & ~0xfffn));
}
export function devMinor(rdev: number): number {
  return Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & ~0xffn));
}

/** lstat that names the problem when a file name is not UTF-8 (Node cannot address it by string). */
function lstatChecked(abs: string): fs.Stats {
  try {
    return fs.lstatSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && abs.includes('\uFFFD')) {
      throw new KeelError(`${abs}: file name is not valid UTF-8; keel cannot archive it`);
    }
    throw err;
  }
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

class Walker {
  readonly epoch: number | undefined;
  private readonly filter: ((name: string) => boolean) | undefined;
  private readonly links = new Map<string, string>();
  /** Files left out of a diff (unchanged) that have other links: possible hardlink targets. */
  private readonly unchangedLinks = new Map<string, string>();

  constructor(private readonly sys: FsSys | undefined, opts: WalkOptions) {
    this.epoch = opts.sourceDateEpoch ?? sourceDateEpochFromEnv();
    this.filter = opts.xattrs === false ? undefined : typeof opts.xattrs === 'function' ? opts.xattrs : defaultXattrFilter;
  }

  clamp(mtime: number): number {
    return this.epoch !== undefined && mtime > this.epoch ? this.epoch : mtime;
  }

  /** All xattrs of a path (unfiltered), or undefined when it has none. */
  rawXattrs(abs: string): Record<string, Buffer> | undefined {
    if (!this.sys) return undefined;
    let names: string[];
    try {
      names = this.sys.llistxattr(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return undefined;
      throw err;
    }
    if (names.length === 0) return undefined;
    const out: Record<string, Buffer> = {};
    for (const n of names.sort(byName)) {
      const v = this.sys.lgetxattr(abs, n);
      if (v) out[n] = Buffer.from(v);
    }
    return out;
  }

  kept(raw: Record<string, Buffer> | undefined): Record<string, Buffer> | undefined {
    if (!raw || !this.filter) return undefined;
    let out: Record<string, Buffer> | undefined;
    for (const [k, v] of Object.entries(raw)) {
      if (this.filter(k)) (out ??= {})[k] = v;
    }
    return out;
  }

  /** The change for one path as it is on disk (a file, or a hardlink to one already archived). */
  entry(rel: string, abs: string, st: fs.Stats, xattrs: Record<string, Buffer> | undefined): LayerChange | undefined {
    const type = typeOf(st.mode);
    if (!type) return undefined;
    const header: TarHeader = {
      path: rel,
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: 0,
      mtime: this.clamp(Math.floor(st.mtimeMs / 1000)),
    };
    if (xattrs) header.xattrs = xattrs;
    if (type === 'file') {
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        const first = this.links.get(key) ?? this.unchangedLinks.get(key);
        if (first !== undefined) {
          header.type = 'hardlink';
          header.linkname = first;
          return { header };
        }
        this.links.set(key, rel);
      }
      header.size = st.size;
      return { header, source: abs };
    }
    if (type === 'symlink') header.linkname = fs.readlinkSync(abs);
    if (type === 'chardev' || type === 'blockdev') {
      header.devmajor = devMajor(st.rdev);
      header.devminor = devMinor(st.rdev);
    }
    return { header };
  }

  /**
   * A file a diff leaves out because it did not change: if it shares its inode with a file this
   * layer already holds, it becomes a hardlink to it (else applying the layer would split the
   * pair); otherwise it is remembered as a target for links met later.
   */
  unchanged(rel: string, st: fs.Stats): LayerChange | undefined {
    if (!st.isFile() || st.nlink < 2) return undefined;
    const key = `${st.dev}:${st.ino}`;
    const first = this.links.get(key);
    if (first !== undefined) {
      return { header: { path: rel, type: 'hardlink', linkname: first, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0, mtime: this.clamp(Math.floor(st.mtimeMs / 1000)) } };
    }
    if (!this.unchangedLinks.has(key)) this.unchangedLinks.set(key, rel);
    return undefined;
  }

  whiteout(rel: string): LayerChange {
    const slash = rel.lastIndexOf('/');
    const path = slash < 0 ? `${WHITEOUT_PREFIX}${rel}` : `${rel.slice(0, slash + 1)}${WHITEOUT_PREFIX}${rel.slice(slash + 1)}`;
    return { header: { path, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 } };
  }

  opaque(dirRel: string): LayerChange {
    return { header: { path: dirRel ? `${dirRel}/${OPAQUE_WHITEOUT}` : OPAQUE_WHITEOUT, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 } };
  }

  /** Everything under a directory (not the directory itself), all as additions. */
  *tree(rel: string, abs: string): Generator<LayerChange> {
    for (const name of fs.readdirSync(abs).sort(byName)) {
      const r = rel ? `${rel}/${name}` : name;
      const a = join(abs, name);
      const st = lstatChecked(a);
      const change = this.entry(r, a, st, this.kept(this.rawXattrs(a)));
      if (!change) continue;
      yield change;
      if (change.header.type === 'dir') yield* this.tree(r, a);
    }
  }
}

async function sysFor(opts: WalkOptions): Promise<FsSys | undefined> {
  if (opts.xattrs === false) return undefined;
  const { loadFsSys } = await import('../runtime/sys/fs.js');
  return loadFsSys();
}

function checkDir(dir: string, what: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new KeelError(`${what} ${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw new KeelError(`${what} ${dir}: not a directory`);
}

/** Every file under `dir` as an addition (the directory itself is not an entry). */
export async function* changesFromTree(dir: string, opts: WalkOptions = {}): AsyncGenerator<LayerChange> {
  checkDir(dir, 'layer source');
  const w = new Walker(await sysFor(opts), opts);
  yield* w.tree('', dir);
}

function overlayXattr(raw: Record<string, Buffer> | undefined, key: string): Buffer | undefined {
  return raw?.[`trusted.overlay.${key}`] ?? raw?.[`user.overlay.${key}`];
}

/**
 * The changes an overlayfs upper directory records: whiteout character devices (0/0) and files
 * marked with the overlay.whiteout xattr become `.wh.NAME`, directories marked opaque get
 * `.wh..wh..opq`. Mount the overlay with redirect_dir=off and metacopy=off: an upper directory
 * that relies on either (data or directories kept in the lower layers) is refused.
 */
export async function* changesFromUpper(upper: string, opts: WalkOptions = {}): AsyncGenerator<LayerChange> {
  checkDir(upper, 'overlay upper directory');
  const sys = await sysFor({ ...opts, xattrs: true });
  const w = new Walker(sys, opts);
  function* dir(rel: string, abs: string): Generator<LayerChange> {
    const items: { name: string; key: string; st: fs.Stats; raw: Record<string, Buffer> | undefined; whiteout: boolean }[] = [];
    for (const name of fs.readdirSync(abs)) {
      const a = join(abs, name);
      const st = lstatChecked(a);
      const raw = w.rawXattrs(a);
      const isWhiteoutDev = st.isCharacterDevice() && st.rdev === 0;
      const isXattrWhiteout = st.isFile() && overlayXattr(raw, 'whiteout') !== undefined;
      const whiteout = isWhiteoutDev || isXattrWhiteout;
      if (!whiteout) {
        const where = rel ? `${rel}/${name}` : name;
        if (overlayXattr(raw, 'metacopy') !== undefined) {
          throw new KeelError(`${join(upper, where)}: metacopy file (its data is in a lower layer); mount the overlay with metacopy=off`);
        }
        if (overlayXattr(raw, 'redirect') !== undefined) {
          throw new KeelError(`${join(upper, where)}: redirected directory (renamed from a lower layer); mount the overlay with redirect_dir=off`);
        }
      }
      items.push({ name, key: whiteout ? `${WHITEOUT_PREFIX}${name}` : name, st, raw, whiteout });
    }
    items.sort((a, b) => byName(a.key, b.key));
    for (const it of items) {
      const r = rel ? `${rel}/${it.name}` : it.name;
      const a = join(abs, it.name);
      if (it.whiteout) {
        yield w.whiteout(r);
        continue;
      }
      const change = w.entry(r, a, it.st, w.kept(it.raw));
      if (!change) continue;
      yield change;
      if (change.header.type === 'dir') {
        if (overlayXattr(it.raw, 'opaque')?.toString() === 'y') yield w.opaque(r);
        yield* dir(r, a);
      }
    }
  }
  yield* dir('', upper);
}

function sameXattrs(a: Record<string, Buffer> | undefined, b: Record<string, Buffer> | undefined): boolean {
  const ka = a ? Object.keys(a) : [];
  const kb = b ? Object.keys(b) : [];
  if (ka.length !== kb.length) return false;
  for (const k of ka) if (!b![k] || !a![k]!.equals(b![k]!)) return false;
  return true;
}

/**
 * The changes that turn tree `lower` into tree `upper`: additions, modifications (type, mode,
 * owner, size, mtime, xattrs, device numbers or symlink target differ) and deletions (whiteouts).
 * A directory whose own metadata did not change is not an entry, though its children may be.
 */
export async function* changesFromDiff(lower: string, upper: string, opts: WalkOptions = {}): AsyncGenerator<LayerChange> {
  checkDir(lower, 'lower directory');
  checkDir(upper, 'upper directory');
  const w = new Walker(await sysFor(opts), opts);
  function changed(la: string, ls: fs.BigIntStats, ua: string, us: fs.BigIntStats, lx: Record<string, Buffer> | undefined, ux: Record<string, Buffer> | undefined): boolean {
    if ((ls.mode & BigInt(S_IFMT)) !== (us.mode & BigInt(S_IFMT))) return true;
    if (ls.mode !== us.mode || ls.uid !== us.uid || ls.gid !== us.gid || ls.mtimeNs !== us.mtimeNs) return true;
    const t = typeOf(Number(us.mode));
    if (t === 'file' && ls.size !== us.size) return true;
    if ((t === 'chardev' || t === 'blockdev') && ls.rdev !== us.rdev) return true;
    if (t === 'symlink' && fs.readlinkSync(la) !== fs.readlinkSync(ua)) return true;
    return !sameXattrs(lx, ux);
  }
  function* dir(rel: string, labs: string, uabs: string): Generator<LayerChange> {
    const lnames = new Set(fs.readdirSync(labs));
    const unames = fs.readdirSync(uabs);
    const items: { name: string; key: string; gone: boolean }[] = [];
    for (const n of unames) items.push({ name: n, key: n, gone: false });
    const uset = new Set(unames);
    for (const n of lnames) if (!uset.has(n)) items.push({ name: n, key: `${WHITEOUT_PREFIX}${n}`, gone: true });
    items.sort((a, b) => byName(a.key, b.key));
    for (const it of items) {
      const r = rel ? `${rel}/${it.name}` : it.name;
      if (it.gone) {
        yield w.whiteout(r);
        continue;
      }
      const ua = join(uabs, it.name);
      const us = lstatChecked(ua);
      const ux = w.kept(w.rawXattrs(ua));
      if (!lnames.has(it.name)) {
        const change = w.entry(r, ua, us, ux);
        if (!change) continue;
        yield change;
        if (change.header.type === 'dir') yield* w.tree(r, ua);
        continue;
      }
      const la = join(labs, it.name);
      const ls = fs.lstatSync(la, { bigint: true });
      const usb = fs.lstatSync(ua, { bigint: true });
      const lx = w.kept(w.rawXattrs(la));
      const bothDirs = ls.isDirectory() && us.isDirectory();
      if (changed(la, ls, ua, usb, lx, ux)) {
        const change = w.entry(r, ua, us, ux);
        if (change) yield change;
        if (!change || change.header.type !== 'dir') continue;
        if (bothDirs) yield* dir(r, la, ua);
        else yield* w.tree(r, ua);
      } else if (bothDirs) {
        yield* dir(r, la, ua);
      } else {
        const link = w.unchanged(r, us);
        if (link) yield link;
      }
    }
  }
  yield* dir('', lower, upper);
}
