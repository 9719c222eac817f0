// The syntactic layer of the Dockerfile frontend: lines, parser directives, comments, line
// continuations, heredocs, flags and the per-instruction argument rules of BuildKit's parser. Its
// output (AstNode) carries exactly what BuildKit's parse tree carries, and `dumpAst` prints it in
// the s-expression form of BuildKit's dumper, so the two parsers can be compared line by line.
// Instruction semantics (which flags exist, argument counts...) live in instructions.ts.
import { DockerfileError } from './errors.js';
import { KeelError } from '../util/errors.js';
import { expandWord } from './shell.js';
import {
  goQuote, goQuoteList, isSpaceCode, splitBlank, splitBlankOnce, trimLeftSpace, trimSpace,
} from './text.js';

/** A here-document attached to an instruction (`<<EOF` ... `EOF`). */
export interface Heredoc {
  /** The delimiter word, quotes removed. */
  name: string;
  /** The file descriptor written before `<<` (`3<<EOF`), 0 when none. */
  fileDescriptor: number;
  /** False when any part of the delimiter was quoted: the content is then not expanded. */
  expand: boolean;
  /** `<<-`: leading tabs are stripped from the content lines (see `heredocText`). */
  chomp: boolean;
  /** The lines between the instruction and the delimiter, exactly as written (newlines kept). */
  content: string;
}

/** One instruction of the parse tree. */
export interface AstNode {
  /** The instruction keyword as written (`run`, `RUN`, `Run`...). */
  keyword: string;
  /** The keyword in lower case (what the dumper prints). */
  value: string;
  /** Flags before the arguments, quotes and escapes removed: `--from=build`. */
  flags: string[];
  /** Arguments after BuildKit's per-instruction splitting; ONBUILD's is a nested node. */
  args: AstArg[];
  /** True for the exec (JSON array) form. */
  json: boolean;
  /** The arguments text after the flags, as one string. */
  rest: string;
  /** The logical line: continuation lines joined, comments and escapes-at-end removed. */
  original: string;
  heredocs: Heredoc[];
  /** First and last physical line (1-based), heredoc bodies included. */
  startLine: number;
  endLine: number;
  /** Comment lines right before the instruction (`#` removed). */
  comments: string[];
}

export type AstArg = string | AstNode;

export interface ParserDirective {
  name: 'syntax' | 'escape' | 'check';
  value: string;
  line: number;
}

export interface ParseWarning {
  file: string;
  line: number;
  message: string;
}

export interface DockerfileAst {
  file: string;
  /** `\` or `` ` ``. */
  escapeToken: string;
  directives: ParserDirective[];
  nodes: AstNode[];
  warnings: ParseWarning[];
}

export interface ParseOptions {
  /** Name used in error messages and locations (default `Dockerfile`). */
  file?: string;
}

const VALID_DIRECTIVES = new Set(['syntax', 'escape', 'check']);

/** Go's regexp `\s`: [\t\n\f\r ]. */
function isGoSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d;
}

/**
 * BuildKit's directive syntax after `#` and leading whitespace, `NAME \s* = \s* VALUE \s*`, matched
 * by hand (the equivalent lazy regular expression is quadratic on long runs of spaces).
 */
function matchDirective(s: string): [name: string, value: string] | undefined {
  const key = /^[a-zA-Z][a-zA-Z0-9]*/.exec(s);
  if (!key) return undefined;
  let i = key[0].length;
  while (i < s.length && isGoSpace(s.charCodeAt(i))) i++;
  if (s[i] !== '=') return undefined;
  i++;
  const afterEq = i;
  while (i < s.length && isGoSpace(s.charCodeAt(i))) i++;
  if (s.indexOf('\n', afterEq) >= 0) return undefined; // `.` never matches a newline
  if (i === s.length) return i > afterEq ? [key[0], s[i - 1]] : undefined; // the value is then one space
  let j = s.length;
  while (j > i && isGoSpace(s.charCodeAt(j - 1))) j--;
  return [key[0], s.slice(i, j)];
}

/** BuildKit's heredoc word `^(\d*)<<(-?)\s*([^<]*)$`, matched by hand (linear). */
function matchHeredoc(s: string): [fd: string, chomp: string, rest: string] | undefined {
  const head = /^([0-9]*)<<(-?)/.exec(s);
  if (!head) return undefined;
  let i = head[0].length;
  if (s.indexOf('<', i) >= 0) return undefined;
  while (i < s.length && isGoSpace(s.charCodeAt(i))) i++;
  return [head[1], head[2], s.slice(i)];
}

/** Instructions whose arguments may hold heredocs. */
const HEREDOC_INSTRUCTIONS = new Set(['add', 'copy', 'run']);

/** A syntax error before it gets its location (a KeelError, should it ever escape). */
class ParseFailure extends KeelError {}

/** Tracks parser directives, which are only recognised before anything else. */
class DirectiveState {
  escape = '\\';
  done = false;
  readonly seen = new Set<string>();
  readonly list: ParserDirective[] = [];

  /** Looks at a line (newline and, for first lines, leading space removed) for a directive. */
  check(line: string, lineNo: number): void {
    if (this.done) return;
    const m = line.startsWith('#') ? matchDirective(trimLeftSpace(line.slice(1))) : undefined;
    if (!m) {
      this.done = true;
      return;
    }
    const name = m[0].toLowerCase();
    if (!VALID_DIRECTIVES.has(name)) {
      this.done = true;
      return;
    }
    if (this.seen.has(name)) throw new ParseFailure(`only one ${name} parser directive can be used`);
    this.seen.add(name);
    if (name === 'escape') {
      if (m[1] !== '`' && m[1] !== '\\') throw new ParseFailure(`invalid escape token '${m[1]}' does not match \` or \\`);
      this.escape = m[1];
    }
    this.list.push({ name: name as ParserDirective['name'], value: m[1], line: lineNo });
  }
}

/** Splits text into lines, each keeping its '\n' (like BuildKit's line scanner). */
function splitLines(text: string): string[] {
  const lines: string[] = [];
  let start = 0;
  for (;;) {
    const i = text.indexOf('\n', start);
    if (i < 0) break;
    lines.push(text.slice(start, i + 1));
    start = i + 1;
  }
  if (start < text.length) lines.push(text.slice(start));
  return lines;
}

/** bytes.TrimRight(line, "\r\n") */
function trimNewline(s: string): string {
  let j = s.length;
  while (j > 0) {
    const c = s.charCodeAt(j - 1);
    if (c !== 0x0a && c !== 0x0d) break;
    j--;
  }
  return j === s.length ? s : s.slice(0, j);
}

function isCommentLine(raw: string): boolean {
  const t = trimLeftSpace(trimNewline(raw));
  return t.charCodeAt(0) === 0x23; // '#'
}

/** The escape character at the end of a line (spaces and tabs after it allowed) continues it,
 *  unless it is itself escaped. Returns the line without it and whether the line ends there. */
function trimContinuation(line: string, esc: string): [string, boolean] {
  let j = line.length;
  while (j > 0) {
    const c = line.charCodeAt(j - 1);
    if (c !== 0x20 && c !== 0x09) break;
    j--;
  }
  if (j === 0 || line[j - 1] !== esc) return [line, true];
  if (j === 1) return ['', false];
  if (line[j - 2] === esc) return [line, true];
  return [line.slice(0, j - 1), false];
}

/** Splits leading `--flag` words off an argument string (quotes and backslashes removed from them). */
export function extractBuilderFlags(line: string): [rest: string, flags: string[]] {
  const IN_SPACES = 0;
  const IN_WORD = 1;
  const IN_QUOTE = 2;
  const words: string[] = [];
  let phase = IN_SPACES;
  let word = '';
  let quote = '';
  let blankOK = false;
  const n = line.length;
  for (let pos = 0; pos <= n; pos++) {
    const ch = pos < n ? line[pos] : '';
    if (phase === IN_SPACES) {
      if (pos === n) break;
      if (isSpaceCode(line.charCodeAt(pos))) continue;
      if (ch !== '-' || pos + 1 === n || line[pos + 1] !== '-') return [line.slice(pos), words];
      phase = IN_WORD;
    }
    if (pos === n) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === IN_WORD) {
      if (isSpaceCode(line.charCodeAt(pos))) {
        phase = IN_SPACES;
        if (word === '--') return [line.slice(pos), words];
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = IN_QUOTE;
        continue;
      }
      let c = ch;
      if (c === '\\') {
        if (pos + 1 === n) continue;
        c = line[++pos];
      }
      word += c;
      continue;
    }
    if (ch === quote) {
      phase = IN_WORD;
      continue;
    }
    let c = ch;
    if (c === '\\') {
      if (pos + 1 === n) {
        phase = IN_WORD;
        continue;
      }
      c = line[++pos];
    }
    word += c;
  }
  return ['', words];
}

/**
 * Splits on whitespace keeping quotes and escapes in the words (they are removed later, by
 * expansion). Used for ENV, LABEL and ARG.
 */
export function parseWords(rest: string, esc: string): string[] {
  const IN_SPACES = 0;
  const IN_WORD = 1;
  const IN_QUOTE = 2;
  const words: string[] = [];
  let phase = IN_SPACES;
  let quote = '';
  let blankOK = false;
  let word = '';
  const n = rest.length;
  for (let pos = 0; pos <= n; ) {
    let ch = '';
    let w = 0;
    if (pos < n) {
      const cp = rest.codePointAt(pos)!;
      w = cp > 0xffff ? 2 : 1;
      ch = rest.slice(pos, pos + w);
    }
    if (phase === IN_SPACES) {
      if (pos === n) break;
      if (w === 1 && isSpaceCode(ch.charCodeAt(0))) {
        pos += w;
        continue;
      }
      phase = IN_WORD;
    }
    if (pos === n) {
      if (blankOK || word.length > 0) words.push(word);
      break;
    }
    if (phase === IN_WORD) {
      if (w === 1 && isSpaceCode(ch.charCodeAt(0))) {
        phase = IN_SPACES;
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        pos += w;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
        phase = IN_QUOTE;
      }
      if (ch === esc) {
        if (pos + w === n) {
          pos += w;
          continue; // an escape at the end of the line is dropped
        }
        word += ch;
        pos += w;
        const cp = rest.codePointAt(pos)!;
        w = cp > 0xffff ? 2 : 1;
        ch = rest.slice(pos, pos + w);
      }
      word += ch;
      pos += w;
      continue;
    }
    // IN_QUOTE
    if (ch === quote) phase = IN_WORD;
    if (ch === esc && quote !== "'") {
      if (pos + w === n) {
        phase = IN_WORD;
        pos += w;
        continue;
      }
      pos += w;
      word += ch;
      const cp = rest.codePointAt(pos)!;
      w = cp > 0xffff ? 2 : 1;
      ch = rest.slice(pos, pos + w);
    }
    word += ch;
    pos += w;
  }
  return words;
}

// ---- JSON (exec form) ----

const NOT_JSON = 0;
const NOT_STRINGS = 1;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Parses `rest` as a JSON array of strings the way BuildKit does (Go's encoding/json). */
function parseJSONArray(rest: string): string[] | typeof NOT_JSON | typeof NOT_STRINGS {
  const s = trimLeftSpace(rest);
  if (s[0] !== '[') return NOT_JSON;
  let parsed: unknown;
  try {
    parsed = JSON.parse(s);
  } catch {
    return NOT_JSON;
  }
  if (!Array.isArray(parsed)) return NOT_JSON;
  // Go fails to decode numbers out of float64 range: the text is then not JSON to BuildKit.
  if (parsed.some((v) => typeof v === 'number' && !Number.isFinite(v))) return NOT_JSON;
  if (parsed.some((v) => typeof v !== 'string')) return NOT_STRINGS;
  return (parsed as string[]).map((v) => v.replace(LONE_SURROGATE, '\ufffd'));
}

interface LineResult {
  args: AstArg[];
  json: boolean;
}

const EMPTY: LineResult = { args: [], json: false };

function parseMaybeJSON(rest: string): LineResult {
  if (rest === '') return { args: [], json: false };
  const j = parseJSONArray(rest);
  if (j === NOT_STRINGS) throw new ParseFailure('when using JSON array syntax, arrays must be comprised of strings only');
  if (j !== NOT_JSON) return { args: j, json: true };
  return { args: [rest], json: false };
}

function parseMaybeJSONToList(rest: string): LineResult {
  const j = parseJSONArray(rest);
  if (j === NOT_STRINGS) throw new ParseFailure('when using JSON array syntax, arrays must be comprised of strings only');
  if (j !== NOT_JSON) return { args: j, json: true };
  return parseStringsWhitespaceDelimited(rest);
}

function parseStringsWhitespaceDelimited(rest: string): LineResult {
  if (rest === '') return { args: [], json: false };
  return { args: splitBlank(rest), json: false };
}

function parseString(rest: string): LineResult {
  if (rest === '') return { args: [], json: false };
  return { args: [rest], json: false };
}

function parseNameOrNameVal(rest: string, esc: string): LineResult {
  return { args: parseWords(rest, esc), json: false };
}

/** ENV and LABEL: `KEY=VALUE ...` or the legacy `KEY VALUE`; three nodes per pair (key, value, separator). */
function parseNameVal(rest: string, key: string, esc: string): LineResult {
  const words = parseWords(rest, esc);
  if (words.length === 0) return { args: [], json: false };
  if (!words[0].includes('=')) {
    const parts = splitBlankOnce(rest);
    if (parts.length < 2) throw new ParseFailure(`${key} must have two arguments`);
    return { args: [parts[0], parts[1] as string, ''], json: false };
  }
  const args: string[] = [];
  for (const word of words) {
    const i = word.indexOf('=');
    if (i < 0) throw new ParseFailure(`Syntax error - can't find = in ${goQuote(word)}. Must be of the form: name=value`);
    args.push(word.slice(0, i), word.slice(i + 1), '=');
  }
  return { args, json: false };
}

function parseHealthConfig(rest: string): LineResult {
  let sep = 0;
  while (sep < rest.length && !isSpaceCode(rest.charCodeAt(sep))) sep++;
  let next = sep;
  while (next < rest.length && isSpaceCode(rest.charCodeAt(next))) next++;
  if (sep === 0) return { args: [], json: false };
  const cmd = parseMaybeJSON(rest.slice(next));
  return { args: [rest.slice(0, sep), ...cmd.args], json: cmd.json };
}

function dispatchLine(value: string, rest: string, esc: string): LineResult {
  switch (value) {
    case 'add':
    case 'copy':
    case 'volume':
      return parseMaybeJSONToList(rest);
    case 'arg':
      return parseNameOrNameVal(rest, esc);
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      return parseMaybeJSON(rest);
    case 'env':
      return parseNameVal(rest, 'ENV', esc);
    case 'label':
      return parseNameVal(rest, 'LABEL', esc);
    case 'expose':
    case 'from':
      return parseStringsWhitespaceDelimited(rest);
    case 'healthcheck':
      return parseHealthConfig(rest);
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      return parseString(rest);
    default:
      return EMPTY; // unknown instructions are kept; instructions.ts reports them
  }
}

const MAX_ONBUILD_NESTING = 32;

function newNodeFromLine(line: string, esc: string, comments: string[], depth = 0): AstNode {
  const [keyword, after] = splitBlankOnce(trimSpace(line));
  let rest = '';
  let flags: string[] = [];
  if (after !== undefined) [rest, flags] = extractBuilderFlags(after);
  rest = trimSpace(rest);
  const value = keyword.toLowerCase();
  let result: LineResult;
  if (value === 'onbuild') {
    if (depth >= MAX_ONBUILD_NESTING) throw new ParseFailure('ONBUILD instructions nested too deeply');
    result = rest === '' ? { args: [], json: false } : { args: [newNodeFromLine(rest, esc, [], depth + 1)], json: false };
  } else if (KNOWN_KEYWORDS.has(value)) {
    result = dispatchLine(value, rest, esc);
  } else {
    result = { args: [''], json: false }; // BuildKit keeps an empty argument for unknown instructions
  }
  return {
    keyword, value, flags, args: result.args, json: result.json, rest, original: line,
    heredocs: [], startLine: 0, endLine: 0, comments,
  };
}

const KNOWN_KEYWORDS = new Set([
  'add', 'arg', 'cmd', 'copy', 'entrypoint', 'env', 'expose', 'from', 'healthcheck', 'label',
  'maintainer', 'onbuild', 'run', 'shell', 'stopsignal', 'user', 'volume', 'workdir',
]);

function canContainHeredoc(node: AstNode): boolean {
  let n = node;
  if (n.value === 'onbuild' && n.args.length > 0 && typeof n.args[0] !== 'string') n = n.args[0];
  return HEREDOC_INSTRUCTIONS.has(n.value) && !n.json;
}

/**
 * Recognises a heredoc word (`<<EOF`, `<<-EOF`, `3<<'EOF'`, `<< "E"OF`...). Returns undefined for
 * words that are not heredocs; throws ParseFailure for malformed ones.
 */
function heredocFromWord(src: string): Omit<Heredoc, 'content'> | undefined {
  const m = matchHeredoc(src);
  if (!m) return undefined;
  const fd = m[0] === '' ? 0 : Number(m[0]);
  const chomp = m[1] === '-';
  const rest = m[2];
  if (rest === '') return undefined;
  let words: string[];
  let raw: string[];
  try {
    words = expandWord(rest, [], { skipUnsetEnv: true }).words;
    if (words.length !== 1) return undefined;
    raw = expandWord(rest, [], { skipUnsetEnv: true, rawQuotes: true }).words;
  } catch (err) {
    throw new ParseFailure(`invalid heredoc delimiter ${goQuote(rest)}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (raw.length !== words.length) throw new ParseFailure(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  const quotes = (s: string) => {
    let c = 0;
    for (let i = 0; i < s.length; i++) if (s[i] === "'" || s[i] === '"') c++;
    return c;
  };
  return {
    name: words[0],
    fileDescriptor: Number.isSafeInteger(fd) && fd <= 0xffffffff ? fd : 0,
    expand: quotes(words[0]) === quotes(raw[0]),
    chomp,
  };
}

/** Parses one argument as a heredoc reference; undefined when it is not one (errors ignored). */
export function parseHeredocWord(src: string): Omit<Heredoc, 'content'> | undefined {
  try {
    return heredocFromWord(src);
  } catch {
    return undefined;
  }
}

function heredocsFromLine(line: string): Omit<Heredoc, 'content'>[] {
  let words: string[];
  try {
    words = expandWord(line, [], { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true }).words;
  } catch {
    return []; // BuildKit ignores lexing errors here: such a line has no heredocs
  }
  const docs: Omit<Heredoc, 'content'>[] = [];
  for (const w of words) {
    const h = heredocFromWord(w);
    if (h) docs.push(h);
  }
  return docs;
}

/** A heredoc's content as used: with `<<-`, leading tabs removed from every line. */
export function heredocText(h: Heredoc): string {
  return h.chomp ? chompHeredocContent(h.content) : h.content;
}

export function chompHeredocContent(src: string): string {
  return src.replace(/^\t+/gm, '');
}

/** Parses Dockerfile text into its parse tree. Throws DockerfileError (`file:line: ...`). */
export function parseAst(input: string, options: ParseOptions = {}): DockerfileAst {
  const file = options.file ?? 'Dockerfile';
  const text = input.charCodeAt(0) === 0xfeff ? input.slice(1) : input;
  const lines = splitLines(text);
  const d = new DirectiveState();
  const nodes: AstNode[] = [];
  const warnings: ParseWarning[] = [];
  let comments: string[] = [];
  let idx = 0;
  let lineNo = 0;

  const fail = (err: unknown, start: number, end: number): never => {
    if (err instanceof ParseFailure) throw new DockerfileError(file, start, err.message, end);
    throw err;
  };

  const processLine = (raw: string, stripLeft: boolean, no: number): string => {
    let token = trimNewline(raw);
    if (stripLeft) token = trimLeftSpace(token);
    try {
      d.check(token, no);
    } catch (err) {
      fail(err, no, no);
    }
    return token.charCodeAt(0) === 0x23 ? '' : token;
  };

  while (idx < lines.length) {
    const raw = lines[idx++];
    if (isCommentLine(raw)) {
      const c = trimSpace(trimNewline(raw).slice(1));
      if (c === '') comments = [];
      else comments.push(c);
    }
    const first = processLine(raw, true, lineNo + 1);
    lineNo++;
    const startLine = lineNo;
    let [line, eol] = trimContinuation(first, d.escape);
    if (eol && line === '') continue;

    let emptyContinuation = false;
    while (!eol && idx < lines.length) {
      const raw2 = lines[idx++];
      const p = processLine(raw2, false, lineNo + 1);
      lineNo++;
      if (isCommentLine(raw2)) continue;
      if (trimLeftSpace(trimNewline(p)) === '') {
        emptyContinuation = true;
        continue;
      }
      const [c, end] = trimContinuation(p, d.escape);
      line += c;
      eol = end;
    }
    if (emptyContinuation) {
      warnings.push({ file, line: lineNo, message: `Empty continuation line found in: ${line}` });
    }

    let node: AstNode;
    try {
      node = newNodeFromLine(line, d.escape, comments);
    } catch (err) {
      return fail(err, startLine, lineNo);
    }

    if (canContainHeredoc(node) && line.includes('<<')) {
      let docs: Omit<Heredoc, 'content'>[];
      try {
        docs = heredocsFromLine(line);
      } catch (err) {
        return fail(err, startLine, lineNo);
      }
      for (const doc of docs) {
        let content = '';
        let terminated = false;
        while (idx < lines.length) {
          const body = lines[idx++];
          lineNo++;
          let candidate = trimNewline(body);
          if (doc.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === doc.name) {
            terminated = true;
            break;
          }
          content += body;
        }
        if (!terminated) {
          throw new DockerfileError(file, startLine, `unterminated heredoc: no line ${goQuote(doc.name)} ends the here-document before the end of the file`, lineNo);
        }
        node.heredocs.push({ ...doc, content });
      }
    }

    node.startLine = startLine;
    node.endLine = lineNo;
    nodes.push(node);
    comments = [];
  }

  if (nodes.length === 0) throw new DockerfileError(file, 0, 'file with no instructions');
  return { file, escapeToken: d.escape, directives: d.list, nodes, warnings };
}

/** One node in BuildKit's dump form, without the surrounding parentheses: `copy ["--from=a"] "x" "/y"`. */
export function dumpNode(node: AstNode): string {
  let s = node.value;
  if (node.flags.length > 0) s += ' ' + goQuoteList(node.flags);
  for (const a of node.args) s += typeof a === 'string' ? ' ' + goQuote(a) : ' (' + dumpNode(a) + ')';
  return trimSpace(s);
}

/** The whole parse tree in BuildKit's dump form: one `(instruction ...)` line per instruction. */
export function dumpAst(ast: DockerfileAst): string {
  return ast.nodes.map((n) => '(' + dumpNode(n) + ')').join('\n');
}
