// The build context: a local directory filtered by .dockerignore, read where COPY/ADD and RUN
// --mount=type=bind ask, with the content digest of every file read. Digests are computed once:
// a memo in the store maps each file's stat (inode, size, change and modification times) to its
// digest, so an unchanged file is not read again; cache keys use the digests only, never times.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { KeelError } from '../util/errors.js';
import type { DockerIgnore } from '../dockerfile/index.js';
import type { BuildStore } from './store.js';
import { resolveInRoot } from './rootpath.js';

export interface ContextEntry {
  /** Path relative to the context root, '/'-separated ('' for the root itself). */
  rel: string;
  abs: string;
  st: fs.Stats;
}

/** Go filepath.Match on one path component (`*`, `?`, `[...]`, `\` escapes); false when malformed. */
export function matchComponent(pattern: string, name: string): boolean {
  const p = Array.from(pattern);
  const s = Array.from(name);
  const memo = new Map<number, boolean>();
  const go = (i: number, j: number): boolean => {
    const key = i * (s.length + 1) + j;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let r: boolean;
    if (i === p.length) r = j === s.length;
    else if (p[i] === '*') r = go(i + 1, j) || (j < s.length && go(i, j + 1));
    else if (j === s.length) r = false;
    else if (p[i] === '?') r = go(i + 1, j + 1);
    else if (p[i] === '[') {
      let k = i + 1;
      const neg = p[k] === '^';
      if (neg) k++;
      let ok = false;
      let first = true;
      while (k < p.length && (p[k] !== ']' || first)) {
        first = false;
        let lo = p[k]!;
        if (lo === '\\') lo = p[++k] ?? '';
        let hi = lo;
        if (p[k + 1] === '-' && p[k + 2] !== undefined && p[k + 2] !== ']') {
          hi = p[k + 2]!;
          if (hi === '\\') { hi = p[k + 3] ?? ''; k++; }
          k += 2;
        }
        if (s[j]! >= lo && s[j]! <= hi) ok = true;
        k++;
      }
      if (k >= p.length) r = false; // unterminated class
      else r = ok !== neg && go(k + 1, j + 1);
    } else if (p[i] === '\\') r = p[i + 1] === s[j] && go(i + 2, j + 1);
    else r = p[i] === s[j] && go(i + 1, j + 1);
    memo.set(key, r);
    return r;
  };
  return go(0, 0);
}

export function hasMeta(s: string): boolean {
  return /[*?[\\]/.test(s);
}

/** sha256 of a file's content, read in 1 MiB pieces. */
export function fileDigest(abs: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return `sha256:${h.digest('hex')}`;
}

function statKey(st: fs.Stats): string {
  return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export class BuildContext {
  private memo: Record<string, [string, string]> | undefined;
  private memoDirty = false;
  private readonly digests = new Map<string, string>();
  private readonly startedAt = Date.now();

  constructor(readonly dir: string, readonly ignore: DockerIgnore, private readonly store: BuildStore | undefined, readonly name = 'context') {}

  /** Whether a context path is excluded by .dockerignore. */
  ignored(rel: string): boolean {
    return rel !== '' && this.ignore.ignores(rel);
  }

  /**
   * The entry at a context path, or undefined when absent or ignored. Symlinks on the way are
   * followed inside the context only (as if it were the root directory); a final one is not.
   */
  entry(rel: string): ContextEntry | undefined {
    if (this.ignored(rel)) return undefined;
    let abs: string;
    try {
      abs = resolveInRoot(this.dir, `/${rel}`, { followLast: false });
    } catch {
      return undefined;
    }
    const real = abs === this.dir ? '' : abs.slice(this.dir.length + 1);
    if (real !== rel && this.ignored(real)) return undefined;
    try {
      return { rel: real, abs, st: fs.lstatSync(abs) };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  /** Children of a context directory that .dockerignore keeps, sorted by name (bytewise). */
  children(rel: string): ContextEntry[] {
    const abs = rel === '' ? this.dir : join(this.dir, rel);
    const names = fs.readdirSync(abs).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    const out: ContextEntry[] = [];
    for (const name of names) {
      const r = rel === '' ? name : `${rel}/${name}`;
      if (this.ignore.ignores(r)) {
        // An excluded directory may hold re-included (`!`) entries.
        if (!this.ignore.mustWalk(r)) continue;
        const a = join(abs, name);
        const st = fs.lstatSync(a);
        if (!st.isDirectory()) continue;
        if (this.children(r).length === 0) continue;
        out.push({ rel: r, abs: a, st });
        continue;
      }
      const a = join(abs, name);
      out.push({ rel: r, abs: a, st: fs.lstatSync(a) });
    }
    return out;
  }

  /**
   * Context paths a COPY/ADD source names: the path itself, or every match of its wildcards
   * (component by component, as Go's filepath.Match). Paths are cleaned; `..` cannot leave the
   * context. Returns [] when nothing matches.
   */
  match(source: string): ContextEntry[] {
    const parts: string[] = [];
    for (const c of source.split('/')) {
      if (c === '' || c === '.') continue;
      if (c === '..') { parts.pop(); continue; }
      parts.push(c);
    }
    if (!parts.some(hasMeta)) {
      const rel = parts.join('/');
      const e = this.entry(rel);
      return e ? [e] : [];
    }
    let level: ContextEntry[] = [{ rel: '', abs: this.dir, st: fs.lstatSync(this.dir) }];
    for (const part of parts) {
      const next: ContextEntry[] = [];
      for (const d of level) {
        if (!d.st.isDirectory()) continue;
        if (!hasMeta(part)) {
          const literal = part.replace(/\\(.)/g, '$1');
          const e = this.entry(d.rel === '' ? literal : `${d.rel}/${literal}`);
          if (e) next.push(e);
          continue;
        }
        for (const c of this.children(d.rel)) {
          const name = c.rel.slice(c.rel.lastIndexOf('/') + 1);
          if (matchComponent(part, name)) next.push(c);
        }
      }
      level = next;
    }
    return level;
  }

  /** Every entry under a directory (depth-first, sorted), the directory itself not included. */
  *walk(rel: string): Generator<ContextEntry> {
    for (const c of this.children(rel)) {
      yield c;
      if (c.st.isDirectory()) yield* this.walk(c.rel);
    }
  }

  /** Content digest of a regular file of the context (memoised by stat). */
  digest(e: ContextEntry): string {
    const known = this.digests.get(e.rel);
    if (known) return known;
    this.memo ??= this.store ? this.store.readContextMemo(this.dir) : {};
    const key = statKey(e.st);
    const m = this.memo[e.rel];
    let d: string;
    if (m && m[0] === key) d = m[1];
    else {
      d = fileDigest(e.abs);
      // A file changed in the last seconds may change again within the same timestamp tick:
      // do not trust its stat next time (git's "racy" rule).
      if (this.startedAt - Math.max(e.st.mtimeMs, e.st.ctimeMs) > 2000) {
        this.memo[e.rel] = [key, d];
        this.memoDirty = true;
      }
    }
    this.digests.set(e.rel, d);
    return d;
  }

  /**
   * A digest of everything a source entry holds (for cache keys): for a file its content, for a
   * directory every entry below it with its relative path, type, permission bits, and content
   * digest or link target. Times and owners are not part of it. `exclude` filters relative paths.
   */
  treeDigest(e: ContextEntry, exclude?: (rel: string, isDir: boolean) => boolean): string {
    const h = createHash('sha256');
    const add = (x: ContextEntry, name: string) => {
      const st = x.st;
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isFile()) h.update(`f ${name} ${mode} ${this.digest(x)}\n`);
      else if (st.isDirectory()) h.update(`d ${name} ${mode}\n`);
      else if (st.isSymbolicLink()) h.update(`l ${name} ${fs.readlinkSync(x.abs)}\n`);
      else h.update(`o ${name} ${mode} ${st.rdev}\n`);
    };
    add(e, '.');
    if (e.st.isDirectory()) {
      const base = e.rel === '' ? 0 : e.rel.length + 1;
      const walk = (rel: string) => {
        for (const c of this.children(rel)) {
          const r = c.rel.slice(base);
          if (exclude?.(r, c.st.isDirectory())) continue;
          add(c, r);
          if (c.st.isDirectory()) walk(c.rel);
        }
      };
      walk(e.rel);
    }
    return `sha256:${h.digest('hex')}`;
  }

  /** Saves the digest memo (when something new was learnt). */
  save(): void {
    if (!this.memoDirty || !this.store || !this.memo) return;
    // Forget files that no longer exist only when the memo grows large.
    this.store.writeContextMemo(this.dir, this.memo);
    this.memoDirty = false;
  }
}

/** Checks a context directory; returns its real path. */
export function checkContextDir(dir: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new KeelError(`build context ${dir}: no such directory`);
  }
  if (!st.isDirectory()) throw new KeelError(`build context ${dir}: not a directory`);
  return fs.realpathSync(dir);
}
