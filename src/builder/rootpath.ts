// Paths inside a root filesystem, resolved the way the container sees them: symlinks are followed
// as if `root` were `/` (absolute targets and `..` never leave it), so a hostile image cannot make
// the builder read or write outside its root.
import * as fs from 'node:fs';
import { KeelError } from '../util/errors.js';

export interface ResolveOptions {
  /** Follow a symlink in the last component (default true). */
  followLast?: boolean;
  /** Create missing directories on the way (not the last component unless `createLast`). */
  create?: { mode: number; uid: number; gid: number; onCreate?: (abs: string) => void };
  createLast?: boolean;
}

/** Splits a container path into its components (`.` and empty ones dropped; `..` kept). */
export function components(path: string): string[] {
  return path.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * The host path of container path `path` under `root`, with symlinks resolved inside the root.
 * Missing components are kept as they are (the result may not exist), unless `create` says to make
 * directories. A non-directory met on the way is an error (ENOTDIR), as for the kernel.
 */
export function resolveInRoot(root: string, path: string, opts: ResolveOptions = {}): string {
  const followLast = opts.followLast ?? true;
  const pending = components(path);
  const cur: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const comp = pending.shift()!;
    if (comp === '..') {
      cur.pop();
      continue;
    }
    const last = pending.length === 0;
    const abs = `${root}/${[...cur, comp].join('/')}`;
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') throw err;
    }
    if (!st) {
      if (opts.create && (!last || opts.createLast)) {
        fs.mkdirSync(abs, { mode: opts.create.mode });
        fs.chmodSync(abs, opts.create.mode);
        if (opts.create.uid !== 0 || opts.create.gid !== 0) fs.lchownSync(abs, opts.create.uid, opts.create.gid);
        opts.create.onCreate?.(abs);
        cur.push(comp);
        continue;
      }
      // The rest does not exist: keep it literally.
      cur.push(comp, ...pending.filter((c) => c !== '..'));
      pending.length = 0;
      break;
    }
    if (st.isSymbolicLink() && (!last || followLast)) {
      if (++links > 40) throw new KeelError(`${path}: too many levels of symbolic links`);
      const target = fs.readlinkSync(abs);
      if (target.startsWith('/')) cur.length = 0;
      pending.unshift(...components(target));
      continue;
    }
    if (!last && !st.isDirectory()) {
      const err = new KeelError(`${path}: ${[...cur, comp].join('/')} is not a directory`);
      (err as unknown as { code: string }).code = 'ENOTDIR';
      throw err;
    }
    cur.push(comp);
  }
  return cur.length ? `${root}/${cur.join('/')}` : root;
}

/** lstat that returns undefined for a missing path. */
export function lstatOrUndefined(path: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}
