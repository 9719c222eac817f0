// .dockerignore as docker documents it: one pattern per line, Go filepath.Match syntax (`*`, `?`,
// `[...]`, `\` escapes) plus `**` for any number of directories, `!` exceptions (the last matching
// line wins), comments in column 1, patterns cleaned (`./`, `..`, trailing `/`) and a leading `/`
// dropped. A path is ignored when it or one of its parent directories matches.
// NAME.dockerignore next to a Dockerfile named NAME takes precedence over the context's .dockerignore.
//
// Patterns are matched by a small automaton (no backtracking regular expressions). One deliberate
// difference from moby/patternmatcher: its fast path makes `**/foo` match any path *ending* in
// "foo" (e.g. "xfoo"); keel matches it as documented (foo at any depth).
import { lstat, readdir, readFile } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { DockerignoreError } from './errors.js';
import { cleanPath, goQuote, trimSpace } from './text.js';

const LIT = 0;
const ANY = 1; // `?`: one character but `/`
const STAR = 2; // `*`: any run of characters but `/`
const DSTAR_SLASH = 3; // `**/`: nothing, or anything ending in `/`
const DSTAR_ALL = 4; // `**` at the end: anything
const CLASS = 5; // `[...]`

interface Tok {
  t: number;
  /** LIT: the code point. */
  cp?: number;
  ranges?: [number, number][];
  negated?: boolean;
}

export interface IgnorePattern {
  /** The pattern, cleaned, without its `!`. */
  pattern: string;
  /** A `!` exception: matching paths are included again. */
  exclusion: boolean;
  /** Set when the pattern has no wildcard, class or escape: plain string comparison suffices. */
  literal?: string;
  toks: Tok[];
}

/** Checks a pattern the way Go's filepath.Match does; returns false when it is malformed. */
function validGlob(p: string): boolean {
  const cps = Array.from(p);
  let i = 0;
  const esc = (): boolean => {
    // one class item: not empty, not '-' or ']' first; `\` escapes; something must follow
    if (i >= cps.length || cps[i] === '-' || cps[i] === ']') return false;
    if (cps[i] === '\\') {
      i++;
      if (i >= cps.length) return false;
    }
    i++;
    return i < cps.length;
  };
  while (i < cps.length) {
    const c = cps[i];
    if (c === '\\') {
      i += 2;
      if (i > cps.length) return false;
    } else if (c === '[') {
      i++;
      if (cps[i] === '^') i++;
      let n = 0;
      for (;;) {
        if (i < cps.length && cps[i] === ']' && n > 0) {
          i++;
          break;
        }
        if (!esc()) return false;
        if (cps[i] === '-') {
          i++;
          if (!esc()) return false;
        }
        n++;
      }
    } else i++;
  }
  return true;
}

function compile(p: string): Tok[] {
  const cps = Array.from(p);
  const toks: Tok[] = [];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i];
    if (c === '*') {
      if (cps[i + 1] === '*') {
        i++;
        if (cps[i + 1] === '/') i++;
        toks.push({ t: i + 1 >= cps.length ? DSTAR_ALL : DSTAR_SLASH });
      } else toks.push({ t: STAR });
    } else if (c === '?') {
      toks.push({ t: ANY });
    } else if (c === '\\') {
      if (i + 1 < cps.length) toks.push({ t: LIT, cp: cps[++i].codePointAt(0)! });
      else toks.push({ t: LIT, cp: 0x5c });
    } else if (c === '[') {
      i++;
      const negated = cps[i] === '^';
      if (negated) i++;
      const ranges: [number, number][] = [];
      const item = (): number => {
        if (cps[i] === '\\') i++;
        return cps[i++].codePointAt(0)!;
      };
      while (!(cps[i] === ']' && ranges.length > 0)) {
        const lo = item();
        let hi = lo;
        if (cps[i] === '-') {
          i++;
          hi = item();
        }
        ranges.push([lo, hi]);
      }
      toks.push({ t: CLASS, ranges, negated });
    } else toks.push({ t: LIT, cp: c.codePointAt(0)! });
  }
  return toks;
}

function classMatch(tok: Tok, cp: number): boolean {
  let hit = false;
  for (const [lo, hi] of tok.ranges!) if (lo <= cp && cp <= hi) hit = true;
  return hit !== tok.negated;
}

const SLASH = 0x2f;
const NEWLINE = 0x0a;

/**
 * The automaton of one pattern: states 0..m ("about to match token s"), plus an "inside" state for
 * each `**` followed by a slash (inside its "anything, then a slash" group). Buffers are reused.
 */
class Automaton {
  private readonly m: number;
  private active: Uint8Array;
  private inside: Uint8Array;
  private nActive: Uint8Array;
  private nInside: Uint8Array;

  constructor(private readonly toks: Tok[]) {
    this.m = toks.length;
    this.active = new Uint8Array(this.m + 1);
    this.inside = new Uint8Array(this.m + 1);
    this.nActive = new Uint8Array(this.m + 1);
    this.nInside = new Uint8Array(this.m + 1);
  }

  private close(a: Uint8Array): void {
    const toks = this.toks;
    for (let s = 0; s < this.m; s++) {
      if (a[s] && (toks[s].t === STAR || toks[s].t === DSTAR_SLASH || toks[s].t === DSTAR_ALL)) a[s + 1] = 1;
    }
  }

  /**
   * Runs over `path`. With `parents`, returns true as soon as the path or one of its parent
   * directories matches; otherwise whether the whole path matches. With `below`, returns whether
   * some path below directory `path` could match (any state alive after `path/`).
   */
  run(path: string, mode: 'exact' | 'parents' | 'below'): boolean {
    const { m, toks } = this;
    let active = this.active;
    let inside = this.inside;
    let nActive = this.nActive;
    let nInside = this.nInside;
    active.fill(0);
    inside.fill(0);
    active[0] = 1;
    this.close(active);
    const text = mode === 'below' ? path + '/' : path;
    let result = false;
    for (let i = 0; i < text.length; i++) {
      let c = text.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
        const d = text.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      if (mode === 'parents' && c === SLASH && active[m]) {
        result = true;
        break;
      }
      nActive.fill(0);
      nInside.fill(0);
      let live = false;
      for (let s = 0; s <= m; s++) {
        if (inside[s]) {
          if (c !== NEWLINE) nInside[s] = 1;
          if (c === SLASH) nActive[s + 1] = 1;
          live = true;
        }
        if (!active[s] || s === m) continue;
        const tok = toks[s];
        switch (tok.t) {
          case LIT: if (c === tok.cp) { nActive[s + 1] = 1; live = true; } break;
          case ANY: if (c !== SLASH) { nActive[s + 1] = 1; live = true; } break;
          case CLASS: if (classMatch(tok, c)) { nActive[s + 1] = 1; live = true; } break;
          case STAR: if (c !== SLASH) { nActive[s] = 1; live = true; } break;
          case DSTAR_ALL: if (c !== NEWLINE) { nActive[s] = 1; live = true; } break;
          case DSTAR_SLASH:
            if (c !== NEWLINE) nInside[s] = 1;
            if (c === SLASH) nActive[s + 1] = 1;
            live = true;
            break;
        }
      }
      this.close(nActive);
      [active, nActive] = [nActive, active];
      [inside, nInside] = [nInside, inside];
      if (!live) break;
    }
    if (!result) {
      if (mode === 'below') {
        for (let s = 0; s < m && !result; s++) if (active[s] || inside[s]) result = true;
      } else {
        result = active[m] === 1;
      }
    }
    this.active = active;
    this.inside = inside;
    this.nActive = nActive;
    this.nInside = nInside;
    return result;
  }
}

/** Reads .dockerignore text into normalised patterns (exceptions keep their `!`). */
export function readDockerignore(text: string): string[] {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const out: string[] = [];
  for (let line of body.split('\n')) {
    if (line.endsWith('\r')) line = line.slice(0, -1);
    if (line.startsWith('#')) continue;
    let p = trimSpace(line);
    if (p === '') continue;
    const invert = p[0] === '!';
    if (invert) p = trimSpace(p.slice(1));
    if (p.length > 0) {
      p = cleanPath(p);
      if (p.length > 1 && p[0] === '/') p = p.slice(1);
    }
    out.push(invert ? '!' + p : p);
  }
  return out;
}

/** Normalises a context-relative path: `./a//b/` → `a/b`; the context root is `.`. */
export function normaliseContextPath(p: string): string {
  let c = cleanPath(p);
  while (c.startsWith('/')) c = c.slice(1);
  return c === '' ? '.' : c;
}

/** A .dockerignore matcher. */
export class DockerIgnore {
  readonly patterns: readonly IgnorePattern[];
  /** Where the patterns came from (a file path), if anywhere. */
  readonly source?: string;
  readonly hasExclusions: boolean;
  private readonly automata: Automaton[] = [];

  /** Builds a matcher from patterns (as readDockerignore returns them); throws DockerignoreError. */
  constructor(patterns: readonly string[], source?: string) {
    const list: IgnorePattern[] = [];
    for (const raw of patterns) {
      let p = trimSpace(raw);
      if (p === '') continue;
      p = cleanPath(p);
      let exclusion = false;
      if (p[0] === '!') {
        if (p.length === 1) throw new DockerignoreError(`${source ?? '.dockerignore'}: illegal exclusion pattern: "!"`);
        exclusion = true;
        p = p.slice(1);
      }
      if (!validGlob(p)) throw new DockerignoreError(`${source ?? '.dockerignore'}: syntax error in pattern ${goQuote(p)}`);
      const toks = compile(p);
      const literal = /[*?[\\]/.test(p) ? undefined : p;
      list.push({ pattern: p, exclusion, literal, toks });
      this.automata.push(new Automaton(toks));
    }
    this.patterns = list;
    this.source = source;
    this.hasExclusions = list.some((p) => p.exclusion);
  }

  /** Parses .dockerignore text. */
  static parse(text: string, source?: string): DockerIgnore {
    return new DockerIgnore(readDockerignore(text), source);
  }

  /** A matcher that ignores nothing. */
  static empty(): DockerIgnore {
    return new DockerIgnore([]);
  }

  /**
   * Whether a context path (relative, `/`-separated; leading `/` or `./` accepted) is excluded:
   * the last pattern matching it or one of its parent directories decides.
   */
  ignores(relPath: string): boolean {
    if (this.patterns.length === 0) return false;
    const file = normaliseContextPath(relPath);
    if (file === '.') return false;
    let matched = false;
    for (let i = 0; i < this.patterns.length; i++) {
      const p = this.patterns[i];
      if (p.exclusion !== matched) continue;
      const m = p.literal !== undefined
        ? file === p.literal || (file.startsWith(p.literal) && file.charCodeAt(p.literal.length) === SLASH)
        : this.automata[i].run(file, 'parents');
      if (m) matched = !p.exclusion;
    }
    return matched;
  }

  /**
   * Whether an excluded directory must still be walked because an exception (`!pattern`) may
   * re-include something inside it.
   */
  mustWalk(relDir: string): boolean {
    if (!this.hasExclusions) return false;
    const dir = normaliseContextPath(relDir);
    if (dir === '.') return true;
    return this.patterns.some((p, i) => p.exclusion && this.automata[i].run(dir, 'below'));
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new DockerignoreError(`cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Loads the ignore file for a build: `<dockerfile>.dockerignore` next to the Dockerfile when it
 * exists, else `<contextDir>/.dockerignore`, else a matcher that ignores nothing.
 */
export async function loadDockerignore(contextDir: string, dockerfilePath?: string): Promise<DockerIgnore> {
  const candidates: string[] = [];
  if (dockerfilePath !== undefined && dockerfilePath !== '-') {
    candidates.push((isAbsolute(dockerfilePath) ? dockerfilePath : resolve(dockerfilePath)) + '.dockerignore');
  }
  candidates.push(join(contextDir, '.dockerignore'));
  for (const path of candidates) {
    const text = await readIfExists(path);
    if (text !== undefined) return DockerIgnore.parse(text, path);
  }
  return DockerIgnore.empty();
}

export interface ContextEntry {
  /** Path relative to the context root, `/`-separated. */
  path: string;
  absPath: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  /** lstat of the entry (symlinks are not followed). */
  stats: Stats;
}

function entryType(st: Stats): ContextEntry['type'] {
  if (st.isDirectory()) return 'directory';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

/**
 * Walks a build context depth-first in name order (byte order), yielding every entry the ignore
 * rules keep. Directories come before their contents. An excluded directory is skipped unless an
 * exception may re-include something inside it; it is then walked and yielded only if something
 * inside it is yielded (right before that entry), so parents of included files always appear.
 * Symlinks are reported, never followed.
 */
export async function* walkContext(contextDir: string, ignore: DockerIgnore = DockerIgnore.empty()): AsyncGenerator<ContextEntry> {
  const pending: ContextEntry[] = [];
  async function* walk(absDir: string, relDir: string): AsyncGenerator<ContextEntry> {
    const dirents = await readdir(absDir, { withFileTypes: true });
    const sorted = dirents.map((d) => ({ d, key: Buffer.from(d.name) })).sort((a, b) => Buffer.compare(a.key, b.key));
    for (const { d } of sorted) {
      const rel = relDir === '' ? d.name : relDir + '/' + d.name;
      const abs = join(absDir, d.name);
      if (ignore.ignores(rel)) {
        // Excluded: skipped without even a stat, unless an exception may re-include something inside.
        if (!d.isDirectory() || !ignore.mustWalk(rel)) continue;
        const entry: ContextEntry = { path: rel, absPath: abs, type: 'directory', stats: await lstat(abs) };
        pending.push(entry);
        yield* walk(abs, rel);
        const at = pending.indexOf(entry);
        if (at >= 0) pending.splice(at);
        continue;
      }
      const stats = await lstat(abs);
      const entry: ContextEntry = { path: rel, absPath: abs, type: entryType(stats), stats };
      yield* pending.splice(0);
      yield entry;
      if (entry.type === 'directory') yield* walk(abs, rel);
    }
  }
  yield* walk(contextDir, '');
}
