// Shell-word expansion as BuildKit's Dockerfile frontend does it (its "shell lexer"): $VAR, ${VAR},
// ${VAR:-w} ${VAR-w} ${VAR:+w} ${VAR+w} ${VAR:?m} ${VAR?m}, ${VAR#p} ${VAR##p} ${VAR%p} ${VAR%%p},
// ${VAR/p/r} ${VAR//p/r}, single and double quotes, the escape character, and splitting into words.
//
// Behaviour follows BuildKit's documented rules, including its quirks:
//  - a quoted empty string ("" or '') alone yields no word when splitting;
//  - inside double quotes the escape character only escapes `"`, `$` and itself;
//  - an escape character at the very end of the word is dropped;
//  - `$1`, `$@`, `$$`... are looked up as variables named "1", "@", "$" (normally unset, so empty);
//  - `${VAR#p}` `${VAR%p}` patterns know `*`, `?` and the escapes `\*` `\?` `\\` (no bracket
//    expressions); `${VAR/p/r}` replaces the leftmost longest match, `//` every match, and an unset
//    VAR counts as empty.
// Patterns are matched by a small automaton (linear in the value per start position), not by a
// backtracking regular expression, so hostile patterns cannot make an expansion take forever.
import { ExpansionError } from './errors.js';
import { KeelError } from '../util/errors.js';
import { goQuote, isSpaceCode } from './text.js';

/** Variables for expansion: an object, a Map, `KEY=VALUE` strings (later ones win), or a lookup. */
export type EnvInput =
  | Readonly<Record<string, string>>
  | ReadonlyMap<string, string>
  | readonly string[]
  | ((name: string) => string | undefined);

export interface ShellOptions {
  /** The escape character: `\` (default) or `` ` `` (the Dockerfile `escape` directive). */
  escapeToken?: string;
  /** Keep quote characters in the output (BuildKit's RawQuotes). */
  rawQuotes?: boolean;
  /** Keep escape characters in the output (BuildKit's RawEscapes). */
  rawEscapes?: boolean;
  /** Leave references to unset variables as they are written (BuildKit's SkipUnsetEnv). */
  skipUnsetEnv?: boolean;
  /** Treat quotes as ordinary characters: how heredoc contents are expanded. */
  skipProcessQuotes?: boolean;
}

export interface ExpansionResult {
  /** The expanded word, spaces kept (what `processWord` returns). */
  result: string;
  /** The expansion split into words on unquoted whitespace (what `processWords` returns). */
  words: string[];
  /** Names looked up that were set. */
  matched: Set<string>;
  /** Names looked up that were not set. */
  unmatched: Set<string>;
}

/** Expands variables in `word`; throws ExpansionError where BuildKit reports an error. */
export function processWord(word: string, env: EnvInput, options?: ShellOptions): string {
  return expandWord(word, env, options).result;
}

/** Expands variables in `word` and splits the result into words (quotes keep words together). */
export function processWords(word: string, env: EnvInput, options?: ShellOptions): string[] {
  return expandWord(word, env, options).words;
}

/** Expands `word` and reports the result, its words and which variables were used. */
export function expandWord(word: string, env: EnvInput, options: ShellOptions = {}): ExpansionResult {
  if (!SPECIAL.test(word)) {
    // Nothing to expand, unquote or unescape: the word is itself, split on whitespace.
    const words = new Words();
    words.addString(word);
    return { result: word, words: words.get(), matched: new Set(), unmatched: new Set() };
  }
  const lexer = new Lexer(word, toLookup(env), options);
  try {
    const [result, words] = lexer.processStopOn('', options.rawEscapes === true);
    return { result, words, matched: lexer.matched, unmatched: lexer.unmatched };
  } catch (err) {
    if (err instanceof LexError) {
      throw new ExpansionError(`failed to process ${goQuote(word)}: ${err.message}`, word, err.message);
    }
    throw err;
  }
}

/** Turns any supported variable collection into a lookup function. */
export function toLookup(env: EnvInput): (name: string) => string | undefined {
  if (typeof env === 'function') return env;
  if (Array.isArray(env)) {
    const map = new Map<string, string>();
    for (const e of env as readonly string[]) {
      const i = e.indexOf('=');
      if (i < 0) map.set(e, '');
      else map.set(e.slice(0, i), e.slice(i + 1));
    }
    return (name) => map.get(name);
  }
  if (env instanceof Map) return (name) => env.get(name);
  const obj = env as Readonly<Record<string, string>>;
  return (name) => (Object.prototype.hasOwnProperty.call(obj, name) ? obj[name] : undefined);
}

/** An expansion error before it names its word (a KeelError, should it ever escape). */
const SPECIAL = /[$'"<\\`]/;

class LexError extends KeelError {}

const EOF_CHAR = '\ufffd'; // how Go prints the scanner's EOF rune in messages
const MAX_DEPTH = 500;

const RE_LETTER = /^\p{L}$/u;
const RE_DIGIT = /^\p{Nd}$/u;

function isLetter(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 0x80) return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  return RE_LETTER.test(ch);
}

function isDigit(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 0x80) return c >= 0x30 && c <= 0x39;
  return RE_DIGIT.test(ch);
}

function isSpecialParam(ch: string): boolean {
  return ch === '@' || ch === '*' || ch === '#' || ch === '?' || ch === '-' || ch === '$' || ch === '!' || ch === '0';
}

/** BuildKit's word accumulator: unquoted whitespace ends a word, quoted text never does. */
class Words {
  word = '';
  words: string[] = [];
  inWord = false;
  addChar(ch: string): void {
    if (ch.length === 1 && isSpaceCode(ch.charCodeAt(0))) {
      if (this.inWord && this.word.length !== 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else {
      this.word += ch;
      this.inWord = true;
    }
  }
  addRawChar(ch: string): void {
    this.word += ch;
    this.inWord = true;
  }
  addString(s: string): void {
    for (let i = 0; i < s.length; i++) this.addChar(s[i]);
  }
  addRawString(s: string): void {
    this.word += s;
    this.inWord = true;
  }
  get(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

class Lexer {
  private pos = 0;
  private rawEscapes = false;
  private depth = 0;
  private readonly esc: string;
  private readonly rawQuotes: boolean;
  private readonly skipUnset: boolean;
  private readonly skipQuotes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(private readonly src: string, private readonly lookup: (name: string) => string | undefined, opts: ShellOptions) {
    this.esc = opts.escapeToken ?? '\\';
    this.rawQuotes = opts.rawQuotes === true;
    this.skipUnset = opts.skipUnsetEnv === true;
    this.skipQuotes = opts.skipProcessQuotes === true;
  }

  private peek(): string {
    return this.pos < this.src.length ? this.src[this.pos] : '';
  }

  private getEnv(name: string): string | undefined {
    const v = this.lookup(name);
    if (v === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return v;
  }

  /** Processes until `stop` (consumed) or the end of input when `stop` is ''. */
  processStopOn(stop: string, rawEscapes: boolean): [string, string[]] {
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    try {
      let result = '';
      const words = new Words();
      const src = this.src;
      while (this.pos < src.length) {
        const ch = src[this.pos];
        if (stop !== '' && ch === stop) {
          this.pos++;
          return [result, words.get()];
        }
        if (ch === '$') {
          const t = this.processDollar();
          result += t;
          words.addString(t);
          continue;
        }
        if (ch === '<') {
          const t = this.processPossibleHeredoc();
          result += t;
          words.addRawString(t);
          continue;
        }
        if (!this.skipQuotes && (ch === "'" || ch === '"')) {
          const t = ch === "'" ? this.processSingleQuote() : this.processDoubleQuote();
          result += t;
          words.addRawString(t);
          continue;
        }
        this.pos++;
        let c = ch;
        if (c === this.esc) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          if (this.pos >= src.length) break; // an escape at the end is dropped
          c = src[this.pos++];
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stop !== '') throw new LexError(`unexpected end of statement while looking for matching ${stop}`);
      return [result, words.get()];
    } finally {
      this.rawEscapes = saved;
    }
  }

  private processSingleQuote(): string {
    let result = this.rawQuotes ? "'" : '';
    this.pos++;
    for (;;) {
      if (this.pos >= this.src.length) throw new LexError('unexpected end of statement while looking for matching single-quote');
      const ch = this.src[this.pos++];
      if (ch === "'") return this.rawQuotes ? result + ch : result;
      result += ch;
    }
  }

  private processDoubleQuote(): string {
    let result = this.rawQuotes ? '"' : '';
    this.pos++;
    for (;;) {
      const p = this.peek();
      if (p === '') throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (p === '"') {
        this.pos++;
        return this.rawQuotes ? result + p : result;
      }
      if (p === '$') {
        result += this.processDollar();
        continue;
      }
      let ch = this.src[this.pos++];
      if (ch === this.esc) {
        if (this.rawEscapes) result += ch;
        const n = this.peek();
        if (n === '') continue; // escape at the end: dropped, then the missing quote is reported
        if (n === '"' || n === '$' || n === this.esc) ch = this.src[this.pos++];
      }
      result += ch;
    }
  }

  private processPossibleHeredoc(): string {
    this.pos++;
    if (this.peek() !== '<') return '<';
    this.pos++;
    const start = this.pos;
    while (this.pos < this.src.length) {
      const c = this.src[this.pos];
      if (c !== ' ' && c !== '\t' && c !== '\r' && c !== '\n') break;
      this.pos++;
    }
    return '<<' + this.src.slice(start, this.pos);
  }

  private processName(): string {
    const src = this.src;
    let name = '';
    while (this.pos < src.length) {
      const cp = src.codePointAt(this.pos)!;
      const ch = String.fromCodePoint(cp);
      if (name === '' && isDigit(ch)) {
        while (this.pos < src.length) {
          const d = String.fromCodePoint(src.codePointAt(this.pos)!);
          if (!isDigit(d)) break;
          name += d;
          this.pos += d.length;
        }
        return name;
      }
      if (name === '' && isSpecialParam(ch)) {
        this.pos++;
        return ch;
      }
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      this.pos += ch.length;
      name += ch;
    }
    return name;
  }

  private processDollar(): string {
    if (++this.depth > MAX_DEPTH) throw new LexError('substitutions nested too deeply');
    try {
      return this.dollar();
    } finally {
      this.depth--;
    }
  }

  private dollar(): string {
    this.pos++; // '$'
    if (this.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const v = this.getEnv(name);
      if (v === undefined && this.skipUnset) return '$' + name;
      return v ?? '';
    }
    this.pos++; // '{'
    const first = this.peek();
    if (first === '') throw new LexError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LexError('syntax error: bad substitution');
    const name = this.processName();
    let ch = this.pos < this.src.length ? this.src[this.pos++] : '';
    let chs = ch === '' ? EOF_CHAR : ch;

    if (ch === '}') {
      const v = this.getEnv(name);
      if (v === undefined && this.skipUnset) return '${' + name + '}';
      return v ?? '';
    }

    if (ch === ':' || ch === '+' || ch === '-' || ch === '?' || ch === '#' || ch === '%') {
      let nullIsUnset = false;
      if (ch === ':') {
        nullIsUnset = true;
        ch = this.pos < this.src.length ? this.src[this.pos++] : '';
        chs += ch === '' ? EOF_CHAR : ch;
      }
      const rawEsc = ch === '#' || ch === '%';
      let word: string;
      try {
        [word] = this.processStopOn('}', rawEsc);
      } catch (err) {
        if (err instanceof LexError && this.pos >= this.src.length) throw new LexError("syntax error: missing '}'");
        throw err;
      }
      const value = this.getEnv(name);
      const set = value !== undefined;
      if (this.skipUnset && !set) return '${' + name + chs + word + '}';
      const v = value ?? '';
      switch (ch) {
        case '-':
          return !set || (nullIsUnset && v === '') ? word : v;
        case '+':
          return !set || (nullIsUnset && v === '') ? '' : word;
        case '?':
          if (!set) throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
          if (nullIsUnset && v === '') throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
          return v;
        case '%':
        case '#': {
          let greedy = false;
          if (word.length > 0 && word[0] === ch) {
            greedy = true;
            word = word.slice(1);
          }
          return ch === '%' ? trimSuffix(word, v, greedy) : trimPrefix(word, v, greedy);
        }
        default:
          throw new LexError(`unsupported modifier (${chs}) in substitution`);
      }
    }

    if (ch === '/') {
      const replaceAll = this.peek() === '/';
      if (replaceAll) this.pos++;
      let pattern: string;
      try {
        [pattern] = this.processStopOn('/', true);
      } catch (err) {
        if (err instanceof LexError && this.pos >= this.src.length) throw new LexError("syntax error: missing '/' in ${}");
        throw err;
      }
      let replacement: string;
      try {
        [replacement] = this.processStopOn('}', true);
      } catch (err) {
        if (err instanceof LexError && this.pos >= this.src.length) throw new LexError("syntax error: missing '}'");
        throw err;
      }
      const value = this.getEnv(name);
      if (this.skipUnset && value === undefined) return '${' + name + '/' + pattern + '/' + replacement + '}';
      const toks = compilePattern(pattern);
      return replaceAll ? replaceAllMatches(toks, value ?? '', replacement) : replaceFirst(toks, value ?? '', replacement);
    }

    throw new LexError(`unsupported modifier (${chs}) in substitution`);
  }
}

// ---- patterns of ${VAR#p} ${VAR%p} ${VAR/p/r} ----

const ANY = 1; // `?`: one character other than newline
const STAR = 2; // `*`: any run of characters other than newline
type Tok = string | typeof ANY | typeof STAR;

function compilePattern(pattern: string): Tok[] {
  const cps = Array.from(pattern);
  const toks: Tok[] = [];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i];
    if (c === '*') toks.push(STAR);
    else if (c === '?') toks.push(ANY);
    else if (c === '\\') {
      const n = cps[i + 1];
      if (n === '}' || n === '/') continue; // escaped `}` or `/` of ${}: the escape is not part of the pattern
      i++;
      if (n !== '*' && n !== '?' && n !== '\\') {
        throw new LexError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${n ?? EOF_CHAR}'`);
      }
      toks.push(n);
    } else toks.push(c);
  }
  return toks;
}

/** Calls `onEnd` with every end offset (in code points) of a match of `toks` starting at `start`. */
function matchEnds(toks: Tok[], cps: string[], start: number, onEnd: (end: number) => boolean | void): void {
  const m = toks.length;
  let cur = new Uint8Array(m + 1);
  let nxt = new Uint8Array(m + 1);
  cur[0] = 1;
  const close = (st: Uint8Array): boolean => {
    let any = false;
    for (let s = 0; s <= m; s++) {
      if (!st[s]) continue;
      any = true;
      if (s < m && toks[s] === STAR) st[s + 1] = 1;
    }
    return any;
  };
  close(cur);
  if (cur[m] && onEnd(start) === true) return;
  for (let j = start; j < cps.length; j++) {
    const c = cps[j];
    nxt.fill(0);
    for (let s = 0; s < m; s++) {
      if (!cur[s]) continue;
      const t = toks[s];
      if (t === STAR) {
        if (c !== '\n') nxt[s] = 1;
      } else if (t === ANY) {
        if (c !== '\n') nxt[s + 1] = 1;
      } else if (t === c) {
        nxt[s + 1] = 1;
      }
    }
    if (!close(nxt)) return;
    if (nxt[m] && onEnd(j + 1) === true) return;
    const tmp = cur;
    cur = nxt;
    nxt = tmp;
  }
}

function trimPrefixCps(pattern: string, cps: string[], greedy: boolean): string[] {
  const toks = compilePattern(pattern);
  let end = -1;
  matchEnds(toks, cps, 0, (e) => {
    end = e;
    return !greedy; // the shortest match is the first end found
  });
  return end < 0 ? cps : cps.slice(end);
}

/** The pattern's text when it has no wildcard (then plain string operations give the same result). */
function literalOf(toks: Tok[]): string | undefined {
  let s = '';
  for (const t of toks) {
    if (typeof t !== 'string') return undefined;
    s += t;
  }
  return s;
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const lit = literalOf(compilePattern(pattern));
  if (lit !== undefined) return value.startsWith(lit) ? value.slice(lit.length) : value;
  return trimPrefixCps(pattern, Array.from(value), greedy).join('');
}

/** Reverses a pattern keeping each escape before the character it escapes. */
export function reversePattern(pattern: string): string {
  const r = Array.from(pattern);
  const last = r.length - 1;
  const out = new Array<string>(r.length);
  for (let i = 0; i <= last; ) {
    const o = last - i;
    if (r[i] === '\\' && i !== last) {
      out[o - 1] = '\\';
      out[o] = r[i + 1];
      i += 2;
    } else {
      out[o] = r[i];
      i++;
    }
  }
  return out.join('');
}

function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  const lit = literalOf(compilePattern(pattern));
  if (lit !== undefined) return value.endsWith(lit) ? value.slice(0, value.length - lit.length) : value;
  const rev = Array.from(value).reverse();
  return trimPrefixCps(reversePattern(pattern), rev, greedy).reverse().join('');
}

/**
 * The leftmost match at or after `from`, longest at that position: [start, end] in code points.
 * One pass: every automaton state keeps the smallest start that reaches it (for a given state the
 * future is the same whatever the start, so the smallest start dominates).
 */
function findLeftmostLongest(toks: Tok[], cps: string[], from: number): [number, number] | undefined {
  const m = toks.length;
  const NONE = -1;
  let cur = new Int32Array(m + 1).fill(NONE);
  let nxt = new Int32Array(m + 1).fill(NONE);
  const set = (st: Int32Array, s: number, start: number) => {
    if (st[s] === NONE || start < st[s]) st[s] = start;
  };
  const close = (st: Int32Array) => {
    for (let s = 0; s < m; s++) if (st[s] !== NONE && toks[s] === STAR) set(st, s + 1, st[s]);
  };
  let best: [number, number] | undefined;
  for (let j = from; ; j++) {
    if (!best) {
      set(cur, 0, j);
      close(cur);
    }
    const st = cur[m];
    if (st !== NONE && (!best || st < best[0] || (st === best[0] && j > best[1]))) best = [st, j];
    if (j >= cps.length) break;
    const c = cps[j];
    nxt.fill(NONE);
    let live = false;
    for (let s = 0; s < m; s++) {
      const start = cur[s];
      if (start === NONE || (best && start > best[0])) continue;
      const t = toks[s];
      if (t === STAR) {
        if (c !== '\n') { set(nxt, s, start); live = true; }
      } else if (t === ANY) {
        if (c !== '\n') { set(nxt, s + 1, start); live = true; }
      } else if (t === c) {
        set(nxt, s + 1, start);
        live = true;
      }
    }
    close(nxt);
    [cur, nxt] = [nxt, cur];
    if (!live && best) break;
  }
  return best;
}

function replaceFirst(toks: Tok[], value: string, replacement: string): string {
  const lit = literalOf(toks);
  if (lit) {
    const at = value.indexOf(lit);
    return at < 0 ? value : value.slice(0, at) + replacement + value.slice(at + lit.length);
  }
  const cps = Array.from(value);
  const m = findLeftmostLongest(toks, cps, 0);
  if (!m) return value;
  return cps.slice(0, m[0]).join('') + replacement + cps.slice(m[1]).join('');
}

/** Go's regexp template expansion for a match without groups: `$0`/`${0}` is the match, `$$` a dollar. */
function expandTemplate(template: string, match: string): string {
  let out = '';
  let t = template;
  for (;;) {
    const i = t.indexOf('$');
    if (i < 0) break;
    out += t.slice(0, i);
    t = t.slice(i + 1);
    if (t.startsWith('$')) {
      out += '$';
      t = t.slice(1);
      continue;
    }
    let s = t;
    let brace = false;
    if (s.startsWith('{')) {
      brace = true;
      s = s.slice(1);
    }
    let n = 0;
    for (const ch of s) {
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      n += ch.length;
    }
    if (n === 0 || (brace && s[n] !== '}')) {
      out += '$'; // malformed reference: the dollar is kept as text
      continue;
    }
    const name = s.slice(0, n);
    t = s.slice(n + (brace ? 1 : 0));
    if (name === '0') out += match;
  }
  return out + t;
}

/** Go's Regexp.ReplaceAllString: empty matches right after a match are not replaced. */
function replaceAllMatches(toks: Tok[], value: string, replacement: string): string {
  const lit = literalOf(toks);
  if (lit) return value.includes(lit) ? value.split(lit).join(expandTemplate(replacement, lit)) : value;
  const cps = Array.from(value);
  let out = '';
  let lastEnd = 0;
  let search = 0;
  while (search <= cps.length) {
    const m = findLeftmostLongest(toks, cps, search);
    if (!m) break;
    out += cps.slice(lastEnd, m[0]).join('');
    if (m[1] > lastEnd || m[0] === 0) out += expandTemplate(replacement, cps.slice(m[0], m[1]).join(''));
    lastEnd = m[1];
    search = search + 1 > m[1] ? search + 1 : m[1];
  }
  return out + cps.slice(lastEnd).join('');
}
