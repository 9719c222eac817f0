// The file operations of COPY and ADD: copying files, directories and symlinks into a root
// filesystem with the owners, modes and times Docker gives them, hardlinks kept, and nothing ever
// written through a symlink of the image (destinations are resolved inside the root).
import * as fs from 'node:fs';
import { basename, dirname } from 'node:path';
import { KeelError } from '../util/errors.js';
import { resolveInRoot, lstatOrUndefined, components } from './rootpath.js';

export interface Owner {
  uid: number;
  gid: number;
}

export interface CopyOptions {
  /** Owner of everything copied; undefined keeps the source's owners. */
  owner?: Owner;
  /** Permission bits for everything copied (--chmod); undefined keeps the source's. */
  chmod?: number;
  /** Paths (relative to the copied source, '/'-separated) to leave out. */
  exclude?: (rel: string, isDir: boolean) => boolean;
  /** Called for each regular file copied (size), for progress. */
  onFile?: (bytes: number) => void;
}

/** Hardlinked sources: `dev:ino` of a copied file → where its first copy went. */
export type LinkMap = Map<string, string>;

function applyMeta(dest: string, st: fs.Stats, opts: CopyOptions, isLink: boolean): void {
  const uid = opts.owner ? opts.owner.uid : st.uid;
  const gid = opts.owner ? opts.owner.gid : st.gid;
  fs.lchownSync(dest, uid, gid);
  if (!isLink) {
    // chown clears set-id bits: the mode comes after it.
    fs.chmodSync(dest, opts.chmod ?? (st.mode & 0o7777));
  }
  fs.lutimesSync(dest, st.atime, st.mtime);
}

/** Removes whatever is at `dest` unless it is a directory (returns whether a directory is there). */
function clearForNonDir(dest: string): void {
  const st = lstatOrUndefined(dest);
  if (!st) return;
  if (st.isDirectory()) {
    if (fs.readdirSync(dest).length > 0) throw new KeelError(`cannot replace non-empty directory ${dest} with a file`);
    fs.rmdirSync(dest);
    return;
  }
  fs.unlinkSync(dest);
}

/**
 * Copies one entry (not following `src` if it is a symlink) to host path `dest`, whose parent
 * exists. Directories are merged into an existing directory at `dest`.
 */
export function copyEntry(src: string, st: fs.Stats, dest: string, opts: CopyOptions, links: LinkMap = new Map(), rel = ''): void {
  if (st.isDirectory()) {
    const existing = lstatOrUndefined(dest);
    if (existing && !existing.isDirectory()) fs.unlinkSync(dest);
    if (!existing || !existing.isDirectory()) fs.mkdirSync(dest, { mode: 0o700 });
    copyChildren(src, dest, opts, links, rel);
    applyMeta(dest, st, opts, false);
    return;
  }
  if (st.isFile()) {
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const first = links.get(key);
      if (first) {
        clearForNonDir(dest);
        fs.linkSync(first, dest);
        return;
      }
      links.set(key, dest);
    }
    clearForNonDir(dest);
    fs.copyFileSync(src, dest, fs.constants.COPYFILE_EXCL);
    applyMeta(dest, st, opts, false);
    opts.onFile?.(st.size);
    return;
  }
  if (st.isSymbolicLink()) {
    clearForNonDir(dest);
    fs.symlinkSync(fs.readlinkSync(src), dest);
    applyMeta(dest, st, opts, true);
    return;
  }
  if (st.isFIFO()) {
    clearForNonDir(dest);
    // Node has no mkfifo; fifos in a build context are rare enough to refuse clearly.
    throw new KeelError(`${src}: named pipes cannot be copied`);
  }
  throw new KeelError(`${src}: cannot copy a ${st.isSocket() ? 'socket' : 'device node'}`);
}

/** Copies the children of directory `src` into existing directory `dest`. */
export function copyChildren(src: string, dest: string, opts: CopyOptions, links: LinkMap = new Map(), rel = ''): void {
  const names = fs.readdirSync(src).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    const s = `${src}/${name}`;
    const cst = fs.lstatSync(s);
    if (opts.exclude?.(r, cst.isDirectory())) {
      // An excluded directory may still hold entries an exception keeps: the filter decides per path.
      if (!cst.isDirectory() || !hasIncluded(s, r, opts)) continue;
    }
    copyEntry(s, cst, `${dest}/${name}`, opts, links, r);
  }
}

function hasIncluded(src: string, rel: string, opts: CopyOptions): boolean {
  for (const name of fs.readdirSync(src)) {
    const r = `${rel}/${name}`;
    const st = fs.lstatSync(`${src}/${name}`);
    if (!opts.exclude?.(r, st.isDirectory())) return true;
    if (st.isDirectory() && hasIncluded(`${src}/${name}`, r, opts)) return true;
  }
  return false;
}

/**
 * Makes sure directory `path` (a container path) exists in `root`, creating what is missing with
 * mode 0755 and the given owner; returns its host path.
 */
export function ensureDir(root: string, path: string, owner: Owner = { uid: 0, gid: 0 }): string {
  const abs = resolveInRoot(root, path, { create: { mode: 0o755, uid: owner.uid, gid: owner.gid }, createLast: true });
  const st = fs.statSync(abs);
  if (!st.isDirectory()) throw new KeelError(`${path} exists and is not a directory`);
  return abs;
}

/**
 * Where a non-directory source goes: container path `path` (its parent made as needed); a
 * symlink already at the last component is replaced, not followed.
 */
export function fileTarget(root: string, path: string, owner: Owner): string {
  const parts = components(path);
  if (parts.length === 0) throw new KeelError(`cannot copy a file to /`);
  const parent = ensureDir(root, `/${parts.slice(0, -1).join('/')}`, owner);
  return `${parent}/${parts[parts.length - 1]}`;
}

/** Whether container path `path` is an existing directory in `root` (symlinks followed in the root). */
export function isDirInRoot(root: string, path: string): boolean {
  try {
    const abs = resolveInRoot(root, path);
    return fs.statSync(abs).isDirectory();
  } catch {
    return false;
  }
}

/** Writes a file with the given content (heredoc sources, downloads). */
export function writeFileEntry(dest: string, data: string | Buffer, mode: number, owner: Owner, mtime: Date): void {
  clearForNonDir(dest);
  fs.writeFileSync(dest, data, { mode: 0o600, flag: 'wx' });
  fs.lchownSync(dest, owner.uid, owner.gid);
  fs.chmodSync(dest, mode);
  fs.utimesSync(dest, mtime, mtime);
}

export { basename, dirname };
