/**
 * Applying layers to a directory, safely, whatever the archive says.
 *
 * Every entry name is cleaned (absolute names other than "/" itself, and `..`, are refused) and every directory on the
 * way to it is checked with lstat (a cache remembers directories already checked, and forgets
 * when anything is replaced): a symlink or a non-directory on the way is refused, so nothing is
 * ever written through a symlink, whether planted earlier in the same layer or in a lower one.
 * Files are created with O_CREAT|O_EXCL|O_NOFOLLOW after removing what was there; symlinks are
 * created as they are (their targets are never followed); hardlinks must point at an existing
 * non-directory inside the target, reached the same checked way. Device nodes are created only
 * with CAP_MKNOD (else refused, or skipped on request). Whiteouts (`.wh.NAME`) and opaque
 * directories (`.wh..wh..opq`) remove what lower layers put there, never what this layer added.
 * overlayfs' own xattrs (trusted.overlay.*, user.overlay.*) are dropped with a warning.
 * On failure the target is left part-way: callers discard it (unpackImage does).
 *
 * The threat model is the archive: the target directory must not be modified by anyone else
 * while a layer is applied.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { KeelError } from '../util/errors.js';
import { readTar, type TarEntry, type TarHeader } from './tar.js';
import { decompress } from './compression.js';
import { Hasher, type Digest } from './digest.js';
import { WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from './diff.js';
import type { FsSys } from '../runtime/sys/fs.js';
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
   * A symlink met on the way to an entry (planted by this or a lower layer): 'refuse' the layer
   * (default), or 'in-root': follow it as if the target were the root directory (absolute targets
   * and '..' never leave it), which is what Docker's and containerd's chrooted extraction does.
   */
  parentSymlinks?: 'refuse' | 'in-root';
  /** Called for each warning (also returned in the result). */
  onWarning?: (message: string) => void;
  /** Name of the layer in messages (default "layer"). */
  what?: string;
}

export interface ApplyResult {
  /** sha256 of the uncompressed archive (what an image config lists in rootfs.diff_ids). */
  diffID: Digest;
  entries: number;
  warnings: string[];
}

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

const S_IFCHR = 0o020000, S_IFBLK = 0o060000, S_IFIFO = 0o010000;

class Applier {
  /** Directories known to be real (not symlinks), with whether they are set-gid (new files then take their group). */
  private readonly dirs = new Map<string, boolean>();
  private readonly created = new Set<string>();
  private readonly dirTimes: [string, number][] = [];
  /** Times of existing directories whose children this layer changes, to put back: a layer changes only what it lists. */
  private readonly keptTimes = new Map<string, { atime: Date; mtime: Date }>();
  readonly warnings: string[] = [];
  private readonly owners: boolean;
  private readonly devices: 'create' | 'skip' | 'refuse';
  private readonly xattrs: boolean;
  private readonly what: string;
  private readonly uid = process.getuid?.() ?? 0;
  private readonly euid = process.geteuid?.() ?? 0;
  private readonly egid = process.getegid?.() ?? 0;
  private readonly umask = process.umask();

  constructor(private readonly root: string, private readonly sys: FsSys, private readonly opts: ApplyOptions) {
    this.dirs.set('', (fs.statSync(root).mode & 0o2000) !== 0);
    this.owners = opts.owners ?? this.uid === 0;
    this.devices = opts.devices ?? (hasCapMknod() ? 'create' : 'refuse');
    this.xattrs = opts.xattrs ?? true;
    this.what = opts.what ?? 'layer';
  }

  private fail(entry: string, why: string): never {
    throw new KeelError(`${this.what}: ${JSON.stringify(entry)}: ${why}`);
  }

  private warn(msg: string): void {
    this.warnings.push(msg);
    this.opts.onWarning?.(msg);
  }

  /** Cleans an archive path into a relative path of components; refuses absolute paths and '..'. */
  clean(raw: string, entry: string, what = 'path'): string {
    if (raw.includes('\0')) this.fail(entry, `${what} contains a NUL byte`);
    // "/" alone names the root (umoci writes it so); any other absolute name is refused.
    if (raw.startsWith('/') && !/^[/.]+$/.test(raw)) this.fail(entry, `absolute ${what} refused`);
    const out: string[] = [];
    for (const part of raw.split('/')) {
      if (part === '' || part === '.') continue;
      if (part === '..') this.fail(entry, `${what} with '..' refused`);
      out.push(part);
    }
    return out.join('/');
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  /**
   * The real directory a (clean) directory path names: checked component by component, missing
   * directories created when `create` (else undefined). A symlink on the way is refused, or in
   * 'in-root' mode followed inside the root.
   */
  private resolveDir(rel: string, entry: string, create: boolean): string | undefined {
    if (this.opts.parentSymlinks !== 'in-root') return this.ensureDir(rel, entry, create) ? rel : undefined;
    const pending = rel === '' ? [] : rel.split('/');
    const cur: string[] = [];
    let links = 0;
    while (pending.length) {
      const comp = pending.shift()!;
      if (comp === '' || comp === '.') continue;
      if (comp === '..') { cur.pop(); continue; } // '..' stops at the root
      const cand = cur.length ? `${cur.join('/')}/${comp}` : comp;
      if (this.dirs.has(cand)) { cur.push(comp); continue; }
      const abs = this.abs(cand);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(abs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        if (!create) return undefined;
        fs.mkdirSync(abs, 0o755);
        fs.chmodSync(abs, 0o755);
        this.created.add(cand);
        this.dirs.set(cand, false);
        cur.push(comp);
        continue;
      }
      if (st.isDirectory()) {
        this.dirs.set(cand, (st.mode & 0o2000) !== 0);
        cur.push(comp);
      } else if (st.isSymbolicLink()) {
        if (++links > 40) this.fail(entry, `too many levels of symlinks at ${JSON.stringify(cand)}`);
        const target = fs.readlinkSync(abs);
        if (target.startsWith('/')) cur.length = 0;
        pending.unshift(...target.split('/'));
      } else {
        this.fail(entry, `${JSON.stringify(cand)} is not a directory`);
      }
    }
    return cur.join('/');
  }

  /**
   * Makes sure `rel` is a real directory inside the root, reached without symlinks; creates
   * missing directories when `create`, else returns false when something is missing.
   */
  private ensureDir(rel: string, entry: string, create: boolean): boolean {
    if (rel === '' || this.dirs.has(rel)) return true;
    const slash = rel.lastIndexOf('/');
    if (!this.ensureDir(slash < 0 ? '' : rel.slice(0, slash), entry, create)) return false;
    const abs = this.abs(rel);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (!create) return false;
      fs.mkdirSync(abs, 0o755);
      fs.chmodSync(abs, 0o755); // whatever the umask
      this.created.add(rel);
      this.dirs.set(rel, false);
      return true;
    }
    if (st.isDirectory()) {
      this.dirs.set(rel, (st.mode & 0o2000) !== 0);
      return true;
    }
    if (st.isSymbolicLink()) this.fail(entry, `refusing to write through symlink ${JSON.stringify(rel)}`);
    this.fail(entry, `${JSON.stringify(rel)} is not a directory`);
  }

  private parentOf(rel: string): string {
    const slash = rel.lastIndexOf('/');
    return slash < 0 ? '' : rel.slice(0, slash);
  }

  /** Removes whatever is at `rel` (recursively for a directory; symlinks are removed, not followed). */
  private remove(rel: string): void {
    const abs = this.abs(rel);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    if (st.isDirectory()) {
      fs.rmSync(abs, { recursive: true, force: true });
      const rootSetgid = this.dirs.get('')!;
      this.dirs.clear();
      this.dirs.set('', rootSetgid);
    } else {
      fs.unlinkSync(abs);
      this.dirs.delete(rel);
    }
  }

  /** Removes the children of directory `rel` that this layer did not create (opaque directory). */
  private prune(rel: string): void {
    const abs = this.abs(rel);
    for (const name of fs.readdirSync(abs)) {
      const child = rel ? `${rel}/${name}` : name;
      if (!this.created.has(child)) {
        this.remove(child);
        continue;
      }
      const st = fs.lstatSync(this.abs(child));
      if (st.isDirectory()) this.prune(child);
    }
  }

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

  async entry(e: TarEntry): Promise<void> {
    const h = e.header;
    const cleaned = this.clean(e.rawPath, e.rawPath);
    const slash = cleaned.lastIndexOf('/');
    const base = slash < 0 ? cleaned : cleaned.slice(slash + 1);
    const parentPath = this.parentOf(cleaned);
    this.keepTimes(parentPath);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (h.type === 'dir') this.fail(e.rawPath, 'whiteout must not be a directory');
      if (base === OPAQUE_WHITEOUT) {
        this.prune(this.resolveDir(parentPath, e.rawPath, true)!);
        return;
      }
      if (base.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) return; // other aufs metadata: ignored
      const name = base.slice(WHITEOUT_PREFIX.length);
      if (name === '' || name === '.' || name === '..') this.fail(e.rawPath, 'invalid whiteout');
      const parent = this.resolveDir(parentPath, e.rawPath, false);
      if (parent === undefined) return;
      const victim = parent ? `${parent}/${name}` : name;
      if (this.created.has(victim)) return; // whiteouts only hide lower layers' files
      this.remove(victim);
      return;
    }

    if (cleaned === '') {
      if (h.type !== 'dir') this.fail(e.rawPath, 'the root of a layer can only be a directory');
      this.directoryMeta('', h, e.rawPath);
      this.dirs.set('', (h.mode & 0o2000) !== 0);
      return;
    }

    const parent = this.resolveDir(parentPath, e.rawPath, true)!;
    const rel = parent ? `${parent}/${base}` : base;
    const abs = this.abs(rel);
    this.created.add(rel);

    switch (h.type) {
      case 'dir': {
        let st: fs.Stats | undefined;
        try {
          st = fs.lstatSync(abs);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        if (st && !st.isDirectory()) {
          this.remove(rel);
          st = undefined;
        }
        if (!st) fs.mkdirSync(abs, 0o700);
        this.directoryMeta(rel, h, e.rawPath);
        this.dirs.set(rel, (h.mode & 0o2000) !== 0);
        return;
      }
      case 'file': {
        // Create exclusively without following anything; whatever is in the way is removed
        // first (only then: most extractions go to fresh paths and save the lstat).
        const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;
        let fd: number;
        try {
          fd = fs.openSync(abs, flags, h.mode & 0o777);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
          this.remove(rel);
          fd = fs.openSync(abs, flags, h.mode & 0o777);
        }
        try {
          let written = 0;
          for await (const chunk of e.body()) {
            let off = 0;
            while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
            written += chunk.length;
          }
          if (written !== h.size) this.fail(e.rawPath, 'truncated data');
          // A new file already belongs to us (group: ours, or the set-gid parent's) with the
          // requested permissions less the umask: change only what differs.
          if (h.uid !== this.euid || h.gid !== this.egid || this.dirs.get(parent) !== false) {
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
        this.remove(rel);
        fs.symlinkSync(target, abs);
        this.chown(e.rawPath, h, () => fs.lchownSync(abs, h.uid, h.gid));
        this.setXattrs(e.rawPath, h.xattrs, (n, v) => this.sys.lsetxattr(abs, n, v));
        fs.lutimesSync(abs, h.mtime, h.mtime);
        return;
      }
      case 'hardlink': {
        const raw = h.linkname ?? '';
        // A hardlink names another archive member; a leading '/' means the archive's root.
        const target = this.clean(raw.replace(/^\/+/, ''), e.rawPath, 'hardlink target');
        if (target === '' || target === rel) this.fail(e.rawPath, `invalid hardlink target ${JSON.stringify(raw)}`);
        const tparent = this.resolveDir(this.parentOf(target), e.rawPath, false);
        if (tparent === undefined) this.fail(e.rawPath, `hardlink target ${JSON.stringify(raw)} does not exist`);
        const tbase = target.slice(target.lastIndexOf('/') + 1);
        const tabs = this.abs(tparent ? `${tparent}/${tbase}` : tbase);
        if (tabs === abs) this.fail(e.rawPath, `invalid hardlink target ${JSON.stringify(raw)}`);
        let tst: fs.Stats;
        try {
          tst = fs.lstatSync(tabs);
        } catch {
          this.fail(e.rawPath, `hardlink target ${JSON.stringify(raw)} does not exist`);
        }
        if (tst.isDirectory()) this.fail(e.rawPath, `hardlink to directory ${JSON.stringify(raw)} refused`);
        this.remove(rel);
        fs.linkSync(tabs, abs);
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
        this.remove(rel);
        const kind = h.type === 'chardev' ? S_IFCHR : h.type === 'blockdev' ? S_IFBLK : S_IFIFO;
        try {
          this.sys.mknod(abs, kind | (h.mode & 0o777), h.devmajor ?? 0, h.devminor ?? 0);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EPERM') this.fail(e.rawPath, 'device node refused (mknod not permitted)');
          throw err;
        }
        this.chown(e.rawPath, h, () => fs.lchownSync(abs, h.uid, h.gid));
        fs.chmodSync(abs, h.mode);
        this.setXattrs(e.rawPath, h.xattrs, (n, v) => this.sys.lsetxattr(abs, n, v));
        fs.lutimesSync(abs, h.mtime, h.mtime);
        return;
      }
    }
  }

  private directoryMeta(rel: string, h: TarHeader, entry: string): void {
    const abs = this.abs(rel);
    this.chown(entry, h, () => fs.lchownSync(abs, h.uid, h.gid));
    fs.chmodSync(abs, h.mode);
    this.setXattrs(entry, h.xattrs, (n, v) => this.sys.lsetxattr(abs, n, v));
    this.dirTimes.push([rel, h.mtime]);
  }

  /** Whether `rel` is a real directory reached without a symlink on the way (never one leading out). */
  private isPlainDir(rel: string): boolean {
    try {
      return this.resolveDir(rel, rel, false) === rel && fs.lstatSync(this.abs(rel)).isDirectory();
    } catch {
      return false;
    }
  }

  private keepTimes(rel: string): void {
    if (this.keptTimes.has(rel) || !this.isPlainDir(rel)) return;
    const st = fs.lstatSync(this.abs(rel));
    this.keptTimes.set(rel, { atime: st.atime, mtime: st.mtime });
  }

  /** Directory times last: creating children changed them. */
  finish(): void {
    const fromLayer = new Set(this.dirTimes.map(([rel]) => rel));
    for (const [rel, t] of this.keptTimes) {
      if (fromLayer.has(rel) || !this.isPlainDir(rel)) continue;
      fs.utimesSync(this.abs(rel), t.atime, t.mtime);
    }
    for (let i = this.dirTimes.length - 1; i >= 0; i--) {
      const [rel, mtime] = this.dirTimes[i]!;
      // The path is real (resolved when the entry was applied); skip it if that changed since
      // (a later entry of the layer replaced a directory on the way with something else).
      let same: boolean;
      try {
        same = this.resolveDir(this.parentOf(rel), rel, false) === this.parentOf(rel);
      } catch (err) {
        if (!(err instanceof KeelError)) throw err;
        same = false;
      }
      if (!same) continue;
      try {
        const st = fs.lstatSync(this.abs(rel));
        if (st.isDirectory()) fs.lutimesSync(this.abs(rel), mtime, mtime);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
  }
}

async function* hashing(source: AsyncIterable<Buffer>, hasher: Hasher): AsyncGenerator<Buffer> {
  for await (const c of source) {
    hasher.update(c);
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
  const { loadFsSys } = await import('../runtime/sys/fs.js');
  const sys = await loadFsSys();
  const applier = new Applier(fs.realpathSync(target), sys, opts);
  const hasher = new Hasher('sha256');
  let entries = 0;
  for await (const entry of readTar(hashing(decompress(source, opts.what ?? 'layer'), hasher), { drain: true })) {
    entries++;
    await applier.entry(entry);
  }
  applier.finish();
  return { diffID: hasher.digest(), entries, warnings: applier.warnings };
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
