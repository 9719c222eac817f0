// Typed instructions: turns the parse tree into one typed node per instruction, checking flags and
// arguments the way BuildKit's instruction parser does. Values are kept as written (unexpanded);
// semantics.ts expands them.
import { DockerfileError } from './errors.js';
import {
  parseAst, parseHeredocWord, heredocText, type AstNode, type DockerfileAst, type Heredoc, type ParseOptions,
  type ParseWarning, type ParserDirective,
} from './parser.js';
import { goQuote, suggest, trimSpace } from './text.js';
import { KeelError } from '../util/errors.js';

export type InstructionKind =
  | 'ADD' | 'ARG' | 'CMD' | 'COPY' | 'ENTRYPOINT' | 'ENV' | 'EXPOSE' | 'FROM' | 'HEALTHCHECK' | 'LABEL'
  | 'MAINTAINER' | 'ONBUILD' | 'RUN' | 'SHELL' | 'STOPSIGNAL' | 'USER' | 'VOLUME' | 'WORKDIR';

export const INSTRUCTION_KINDS: readonly InstructionKind[] = [
  'ADD', 'ARG', 'CMD', 'COPY', 'ENTRYPOINT', 'ENV', 'EXPOSE', 'FROM', 'HEALTHCHECK', 'LABEL',
  'MAINTAINER', 'ONBUILD', 'RUN', 'SHELL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
];

/** What every instruction carries. */
export interface InstructionBase<K extends InstructionKind = InstructionKind> {
  kind: K;
  /** The keyword as written. */
  keyword: string;
  /** The instruction's logical line (continuations joined), trimmed; heredoc bodies not included. */
  original: string;
  /** Raw flags as the parser extracted them: `--from=build`. */
  flags: string[];
  /** Raw arguments (BuildKit's node arguments), unexpanded. */
  args: string[];
  /** Exec (JSON array) form. */
  json: boolean;
  heredocs: Heredoc[];
  file: string;
  startLine: number;
  endLine: number;
  /** Comment lines right above the instruction. */
  comments: string[];
}

/** A heredoc given to RUN/CMD-like instructions as an inline file. */
export interface InlineFile {
  name: string;
  /** Content as written; apply `chomp` (strip leading tabs) with heredocText semantics. */
  data: string;
  chomp: boolean;
}

/** The command of RUN, CMD, ENTRYPOINT and HEALTHCHECK CMD. */
export interface CommandLine {
  /** Exec form (JSON array) runs `args` as they are; shell form runs `[...shell, args[0]]`. */
  form: 'exec' | 'shell';
  /** Exec form: the argv. Shell form: one string (the command text), or none when empty. */
  args: string[];
  /** Heredocs of the instruction. */
  files: InlineFile[];
}

export interface KeyValue {
  key: string;
  value: string;
}

/** A heredoc used as a COPY/ADD source: a file with this content. */
export interface SourceContent {
  /** The heredoc name, used as the file name. */
  path: string;
  /** The content (tabs already stripped for `<<-`). */
  data: string;
  /** Whether variables in `data` are expanded (delimiter not quoted). */
  expand: boolean;
}

export interface FromInstruction extends InstructionBase<'FROM'> {
  /** The base: image reference, stage name or `scratch`, unexpanded. */
  image: string;
  /** `AS name`, lower-cased as BuildKit does. */
  stageName?: string;
  /** `--platform`, unexpanded. */
  platform?: string;
}

export interface RunInstruction extends InstructionBase<'RUN'> {
  command: CommandLine;
  /** `--mount` values, unexpanded (parse them with parseMount). */
  mounts: string[];
  /** The mounts parsed; values holding variables stay as written until the scope expands them. */
  mountSpecs: MountSpec[];
  network?: 'default' | 'none' | 'host';
  security?: 'sandbox' | 'insecure';
  devices: string[];
}

export interface CmdInstruction extends InstructionBase<'CMD'> {
  command: CommandLine;
}

export interface EntrypointInstruction extends InstructionBase<'ENTRYPOINT'> {
  /** An empty exec form (`ENTRYPOINT []`) resets the entrypoint: `args` is then empty. */
  command: CommandLine;
}

export interface ShellInstruction extends InstructionBase<'SHELL'> {
  shell: string[];
}

export interface HealthcheckInstruction extends InstructionBase<'HEALTHCHECK'> {
  /** `["NONE"]`, `["CMD", ...argv]` or `["CMD-SHELL", command]` (the image config form). */
  test: string[];
  /** Durations in nanoseconds, as the image config stores them; undefined when not given. */
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}

export interface EnvInstruction extends InstructionBase<'ENV'> {
  pairs: KeyValue[];
  /** Written in the legacy `ENV key value` form. */
  legacy: boolean;
}

export interface LabelInstruction extends InstructionBase<'LABEL'> {
  pairs: KeyValue[];
  legacy: boolean;
}

export interface ArgDefinition {
  key: string;
  /** Undefined when declared without a default (`ARG NAME`). */
  value?: string;
}

export interface ArgInstruction extends InstructionBase<'ARG'> {
  definitions: ArgDefinition[];
}

interface CopyLike {
  /** Source paths (context paths, URLs, git refs, stage paths), unexpanded. */
  sources: string[];
  /** Heredoc sources. */
  contents: SourceContent[];
  dest: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  exclude: string[];
}

export interface AddInstruction extends InstructionBase<'ADD'>, CopyLike {
  keepGitDir?: boolean;
  checksum?: string;
  unpack?: boolean;
}

export interface CopyInstruction extends InstructionBase<'COPY'>, CopyLike {
  /** `--from`: a stage name, a stage index or an image reference. */
  from?: string;
  parents: boolean;
}

export interface ExposeInstruction extends InstructionBase<'EXPOSE'> {
  /** Sorted, as BuildKit sorts them; each may still hold variables (and expand to several). */
  ports: string[];
}

export interface VolumeInstruction extends InstructionBase<'VOLUME'> {
  paths: string[];
}

export interface UserInstruction extends InstructionBase<'USER'> {
  user: string;
}

export interface WorkdirInstruction extends InstructionBase<'WORKDIR'> {
  path: string;
}

export interface StopsignalInstruction extends InstructionBase<'STOPSIGNAL'> {
  signal: string;
}

export interface MaintainerInstruction extends InstructionBase<'MAINTAINER'> {
  maintainer: string;
}

export interface OnbuildInstruction extends InstructionBase<'ONBUILD'> {
  /** The trigger as stored in the image config's OnBuild list. */
  expression: string;
  /** The trigger, parsed (it runs in the downstream build, not this one). */
  trigger: Instruction;
}

export type Instruction =
  | AddInstruction | ArgInstruction | CmdInstruction | CopyInstruction | EntrypointInstruction | EnvInstruction
  | ExposeInstruction | FromInstruction | HealthcheckInstruction | LabelInstruction | MaintainerInstruction
  | OnbuildInstruction | RunInstruction | ShellInstruction | StopsignalInstruction | UserInstruction
  | VolumeInstruction | WorkdirInstruction;

/** A parsed Dockerfile: directives, typed instructions in order, and the parse tree under them. */
export interface Dockerfile {
  file: string;
  escapeToken: string;
  directives: ParserDirective[];
  /** The `# syntax=` directive, if any (keel uses its own frontend whatever it says). */
  syntax?: string;
  /** The `# check=` directive, parsed. */
  checks: { skip: string[]; error: boolean };
  instructions: Instruction[];
  ast: DockerfileAst;
  warnings: ParseWarning[];
}

// ---- flags ----

type FlagType = 'bool' | 'string' | 'strings';
type FlagSpec = Readonly<Record<string, FlagType>>;
type FlagValues = Map<string, string | string[] | boolean>;

/** An instruction error before it gets its location (a KeelError, should it ever escape). */
class Failure extends KeelError {}

const FLAGS: Readonly<Partial<Record<InstructionKind, FlagSpec>>> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'strings', network: 'string', security: 'string', device: 'strings' },
  COPY: { chown: 'string', from: 'string', chmod: 'string', link: 'bool', parents: 'bool', exclude: 'strings' },
  ADD: {
    chown: 'string', chmod: 'string', link: 'bool', 'keep-git-dir': 'bool', checksum: 'string',
    exclude: 'strings', unpack: 'bool',
  },
  HEALTHCHECK: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

/** BuildKit's BFlags rules: `--name=value`, booleans as `--name` or `--name=true|false`. */
function parseFlags(raw: readonly string[], spec: FlagSpec): FlagValues {
  const values: FlagValues = new Map();
  for (const arg of raw) {
    if (!arg.startsWith('--')) throw new Failure(`arg should start with -- : ${arg}`);
    if (arg === '--') break;
    let name = arg.slice(2);
    let value = '';
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const type = Object.prototype.hasOwnProperty.call(spec, name) ? spec[name] : undefined;
    if (type === undefined) {
      const s = suggest(name, Object.keys(spec));
      throw new Failure(`unknown flag: ${name}${s ? ` (did you mean ${s}?)` : ''}`);
    }
    if (values.has(name) && type !== 'strings') throw new Failure(`duplicate flag specified: ${name}`);
    if (type === 'bool') {
      if (eq >= 0 && value === '') throw new Failure(`missing a value on flag: ${name}`);
      const v = value.toLowerCase();
      if (v === 'true' || v === '') values.set(name, true);
      else if (v === 'false') values.set(name, false);
      else throw new Failure(`expecting boolean value for flag ${name}, not: ${value}`);
    } else {
      if (eq < 0) throw new Failure(`missing a value on flag: ${name}`);
      if (type === 'string') values.set(name, value);
      else values.set(name, [...((values.get(name) as string[] | undefined) ?? []), value]);
    }
  }
  return values;
}

const str = (v: FlagValues, k: string) => v.get(k) as string | undefined;
const bool = (v: FlagValues, k: string) => v.get(k) as boolean | undefined;
const strs = (v: FlagValues, k: string) => (v.get(k) as string[] | undefined) ?? [];

// ---- exec forms cut short ----

const NUMBER_PREFIX = /-?(?:0|[1-9][0-9]*)?(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?/y;

/** Whether `s` is complete JSON, a prefix of JSON cut short, or not JSON at all. */
export function jsonPrefixState(s: string): 'complete' | 'incomplete' | 'invalid' {
  const n = s.length;
  let i = 0;
  const stack: string[] = [];
  // expect: v = value, vc = value or close (after '['), cc = comma or close, k = key, kc = key or close, c = colon, e = end
  let expect = 'v';
  const ws = () => {
    while (i < n && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++;
  };
  const afterValue = () => {
    expect = stack.length === 0 ? 'e' : 'cc';
  };
  for (;;) {
    ws();
    if (i >= n) return expect === 'e' ? 'complete' : 'incomplete';
    const c = s[i];
    if (expect === 'e') return 'invalid';
    if (expect === 'cc') {
      const top = stack[stack.length - 1];
      if (c === ',') {
        expect = top === '[' ? 'v' : 'k';
        i++;
      } else if ((c === ']' && top === '[') || (c === '}' && top === '{')) {
        stack.pop();
        i++;
        afterValue();
      } else return 'invalid';
      continue;
    }
    if (expect === 'c') {
      if (c !== ':') return 'invalid';
      i++;
      expect = 'v';
      continue;
    }
    if ((expect === 'vc' && c === ']') || (expect === 'kc' && c === '}')) {
      stack.pop();
      i++;
      afterValue();
      continue;
    }
    if (expect === 'k' || expect === 'kc') {
      if (c !== '"') return 'invalid';
    }
    // a value (or a key string)
    if (c === '"') {
      i++;
      for (;;) {
        if (i >= n) return 'incomplete';
        const d = s.charCodeAt(i);
        if (d === 0x22) break;
        if (d < 0x20) return 'invalid';
        if (d === 0x5c) {
          i++;
          if (i >= n) return 'incomplete';
          const e = s[i];
          if (e === 'u') {
            for (let k = 1; k <= 4; k++) {
              if (i + k >= n) return 'incomplete';
              if (!/[0-9a-fA-F]/.test(s[i + k])) return 'invalid';
            }
            i += 4;
          } else if (!'"\\/bfnrt'.includes(e)) return 'invalid';
        }
        i++;
      }
      i++;
      if (expect === 'k' || expect === 'kc') expect = 'c';
      else afterValue();
      continue;
    }
    if (c === '[' || c === '{') {
      stack.push(c);
      i++;
      expect = c === '[' ? 'vc' : 'kc';
      continue;
    }
    if (c === '-' || (c >= '0' && c <= '9')) {
      NUMBER_PREFIX.lastIndex = i;
      const tok = NUMBER_PREFIX.exec(s)![0];
      i += tok.length;
      if (i >= n) return 'incomplete';
      if (!/^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/.test(tok)) return 'invalid';
      afterValue();
      continue;
    }
    for (const lit of ['true', 'false', 'null']) {
      if (lit[0] !== c) continue;
      const part = s.slice(i, i + lit.length);
      if (part === lit) {
        i += lit.length;
        afterValue();
        break;
      }
      return lit.startsWith(part) && i + part.length >= n ? 'incomplete' : 'invalid';
    }
    if (c !== 't' && c !== 'f' && c !== 'n') return 'invalid';
  }
}

/**
 * An exec form cut short (`RUN ["echo", "hi"`) is shell form, as in BuildKit: the line runs through
 * the shell as it is written. Since that is rarely what was meant, it is reported as a warning.
 */
function checkExecForm(node: AstNode, rest: string, kind: string, warn: (message: string) => void): void {
  if (node.json || !rest.startsWith('[')) return;
  if (jsonPrefixState(rest) === 'incomplete') {
    warn(`${kind}: unterminated JSON array, so this is shell form (as in BuildKit): ${rest}`);
  }
}

// ---- per-instruction parsing ----

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

function exactlyOne(args: string[], kind: string): string {
  if (args.length !== 1) throw new Failure(`${kind} requires exactly one argument`);
  return args[0];
}

function atLeastOne(args: string[], kind: string): void {
  if (args.length === 0) throw new Failure(`${kind} requires at least one argument`);
}

function handleJSONArgs(args: string[], json: boolean): string[] {
  if (args.length === 0) return [];
  if (json) return args;
  return [args.join(' ')];
}

function commandLine(args: string[], json: boolean, heredocs: Heredoc[]): CommandLine {
  return {
    form: json ? 'exec' : 'shell',
    args: handleJSONArgs(args, json),
    files: heredocs.map((h) => ({ name: h.name, data: h.content, chomp: h.chomp })),
  };
}

function keyValues(args: string[], kind: string): { pairs: KeyValue[]; legacy: boolean } {
  atLeastOne(args, kind);
  if (args.length % 3 !== 0) throw new Failure(`Bad input to ${kind}, too many arguments`);
  const pairs: KeyValue[] = [];
  let legacy = false;
  for (let j = 0; j < args.length; j += 3) {
    if (args[j].length === 0) throw new Failure(`${kind} names can not be blank`);
    pairs.push({ key: args[j], value: args[j + 1] });
    if (args[j + 2] === '') legacy = true;
  }
  return { pairs, legacy };
}

function sourcesAndDest(args: string[], heredocs: Heredoc[], kind: string): Pick<CopyLike, 'sources' | 'contents' | 'dest'> {
  if (args.length < 2) {
    throw new Failure(`${kind} requires at least two arguments, but only one was provided. Destination could not be determined`);
  }
  const dest = args[args.length - 1];
  if (parseHeredocWord(dest)) throw new Failure(`${kind} cannot accept a heredoc as a destination`);
  const byName = new Map(heredocs.map((h) => [h.name, h]));
  const sources: string[] = [];
  const contents: SourceContent[] = [];
  for (const src of args.slice(0, -1)) {
    const h = parseHeredocWord(src);
    if (h) {
      const doc = byName.get(h.name);
      const data = doc ? heredocText({ ...doc, chomp: h.chomp }) : '';
      contents.push({ path: h.name, data, expand: h.expand });
    } else {
      sources.push(src);
    }
  }
  return { sources, contents, dest };
}

/** Go's time.ParseDuration, in nanoseconds. */
export function parseGoDuration(s: string): number {
  const bad = () => new Failure(`time: invalid duration ${goQuote(s)}`);
  let i = 0;
  let neg = false;
  if (s[0] === '-' || s[0] === '+') {
    neg = s[0] === '-';
    i++;
  }
  if (s.slice(i) === '0') return 0;
  if (i >= s.length) throw bad();
  const units: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, 'μs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  let total = 0;
  while (i < s.length) {
    const m = /^([0-9]*)(\.([0-9]*))?/.exec(s.slice(i))!;
    if (m[1] === '' && (m[3] === undefined || m[3] === '')) throw bad();
    i += m[0].length;
    const u = /^[^0-9.]*/.exec(s.slice(i))![0];
    if (u === '') throw new Failure(`time: missing unit in duration ${goQuote(s)}`);
    const scale = units[u];
    if (scale === undefined) throw new Failure(`time: unknown unit ${goQuote(u)} in duration ${goQuote(s)}`);
    i += u.length;
    total += Number(`${m[1] || '0'}.${m[3] || '0'}`) * scale;
  }
  if (total > 2 ** 63) throw bad();
  return Math.round(neg ? -total : total);
}

function healthDuration(v: FlagValues, name: string): number | undefined {
  const s = str(v, name);
  if (s === undefined || s === '') return undefined;
  const d = parseGoDuration(s);
  if (d === 0) return 0;
  if (d < 1e6) throw new Failure(`Interval ${goQuote(name)} cannot be less than 1ms`);
  return d;
}

function nodeArgs(node: AstNode): string[] {
  const out: string[] = [];
  for (const a of node.args) {
    if (typeof a === 'string') out.push(a);
    else out.push(a.keyword, ...nodeArgs(a));
  }
  return out;
}

/** Completes an instruction object in place (see build). */
function make<T extends Instruction>(base: InstructionBase, extra: Omit<T, keyof InstructionBase>): T {
  return Object.assign(base, extra) as unknown as T;
}

interface Ctx {
  file: string;
  warnings: ParseWarning[];
}

function build(node: AstNode, ctx: Ctx, heredocs: Heredoc[]): Instruction {
  const kind = node.value.toUpperCase() as InstructionKind;
  if (!INSTRUCTION_KINDS.includes(kind)) {
    const s = suggest(node.keyword, INSTRUCTION_KINDS);
    throw new Failure(`unknown instruction: ${node.keyword}${s ? ` (did you mean ${s}?)` : ''}`);
  }
  const args = nodeArgs(node);
  // One object built in place (kind first): spreading it into new literals per kind would put
  // V8 on its slow dictionary-object path.
  const base: InstructionBase = {
    kind,
    keyword: node.keyword,
    original: trimSpace(node.original),
    flags: node.flags,
    args,
    json: node.json,
    heredocs,
    file: ctx.file,
    startLine: node.startLine,
    endLine: node.endLine,
    comments: node.comments,
  };
  const flags = parseFlags(node.flags, FLAGS[kind] ?? {});
  const warn = (message: string) => ctx.warnings.push({ file: ctx.file, line: node.startLine, message });

  switch (kind) {
    case 'FROM': {
      let stageName: string | undefined;
      if (args.length === 3 && args[1].toLowerCase() === 'as') {
        stageName = args[2].toLowerCase();
        if (!STAGE_NAME.test(stageName)) {
          throw new Failure(`invalid name for build stage: ${goQuote(args[2])}, name can't start with a number or contain symbols`);
        }
        if (args[2] !== stageName) warn(`Stage name '${args[2]}' should be lowercase`);
      } else if (args.length !== 1) {
        throw new Failure('FROM requires either one or three arguments');
      }
      return make<FromInstruction>(base, { image: args[0], stageName, platform: str(flags, 'platform') });
    }
    case 'RUN': {
      checkExecForm(node, node.rest, 'RUN', warn);
      const network = str(flags, 'network');
      if (network !== undefined && network !== 'default' && network !== 'none' && network !== 'host') {
        throw new Failure(`unsupported network mode ${goQuote(network)} (use default, none or host)`);
      }
      const security = str(flags, 'security');
      if (security !== undefined && security !== 'sandbox' && security !== 'insecure') {
        throw new Failure(`unsupported security mode ${goQuote(security)} (use sandbox or insecure)`);
      }
      const mounts = strs(flags, 'mount');
      const mountSpecs = mounts.map((m) => parseMountSpec(m, undefined));
      return make<RunInstruction>(base, {
        command: commandLine(args, node.json, heredocs), mounts, mountSpecs, network: network as RunInstruction['network'],
        security: security as RunInstruction['security'], devices: strs(flags, 'device'),
      });
    }
    case 'CMD':
      checkExecForm(node, node.rest, 'CMD', warn);
      return make<CmdInstruction>(base, { command: commandLine(args, node.json, heredocs) });
    case 'ENTRYPOINT':
      checkExecForm(node, node.rest, 'ENTRYPOINT', warn);
      return make<EntrypointInstruction>(base, { command: commandLine(args, node.json, heredocs) });
    case 'SHELL': {
      checkExecForm(node, node.rest, 'SHELL', warn);
      const shell = handleJSONArgs(args, node.json);
      if (shell.length === 0) throw new Failure('SHELL requires at least one argument');
      if (!node.json) throw new Failure('SHELL requires the arguments to be in JSON form');
      return make<ShellInstruction>(base, { shell });
    }
    case 'HEALTHCHECK': {
      atLeastOne(args, 'HEALTHCHECK');
      const type = args[0].toUpperCase();
      const rest = args.slice(1);
      if (type === 'NONE') {
        if (rest.length !== 0) throw new Failure('HEALTHCHECK NONE takes no arguments');
        return make<HealthcheckInstruction>(base, { test: ['NONE'] });
      }
      if (type !== 'CMD') throw new Failure(`Unknown type ${goQuote(type)} in HEALTHCHECK (try CMD)`);
      const cmdRest = node.rest.replace(/^\S+\s*/, '');
      checkExecForm(node, cmdRest, 'HEALTHCHECK CMD', warn);
      const cmd = handleJSONArgs(rest, node.json);
      if (cmd.length === 0) throw new Failure('Missing command after HEALTHCHECK CMD');
      let retries: number | undefined;
      const r = str(flags, 'retries');
      if (r !== undefined && r !== '') {
        if (!/^[+-]?[0-9]+$/.test(r) || Math.abs(Number(r)) > 2 ** 31 - 1) {
          throw new Failure(`strconv.ParseInt: parsing ${goQuote(r)}: invalid syntax`);
        }
        retries = Number(r);
        if (retries < 0) throw new Failure(`--retries cannot be negative (${retries})`);
      }
      return make<HealthcheckInstruction>(base, {
        test: [node.json ? 'CMD' : 'CMD-SHELL', ...cmd],
        interval: healthDuration(flags, 'interval'), timeout: healthDuration(flags, 'timeout'),
        startPeriod: healthDuration(flags, 'start-period'), startInterval: healthDuration(flags, 'start-interval'),
        retries,
      });
    }
    case 'ENV':
    case 'LABEL': {
      const kv = keyValues(args, kind);
      if (kv.legacy) warn(`"${kind} key value" is a legacy form; use "${kind} key=value"`);
      return make<EnvInstruction | LabelInstruction>(base, { pairs: kv.pairs, legacy: kv.legacy } as Omit<EnvInstruction, keyof InstructionBase>);
    }
    case 'ARG': {
      atLeastOne(args, 'ARG');
      const definitions: ArgDefinition[] = args.map((a) => {
        const i = a.indexOf('=');
        if (i < 0) return { key: a };
        if (i === 0) throw new Failure('ARG names can not be blank');
        return { key: a.slice(0, i), value: a.slice(i + 1) };
      });
      return make<ArgInstruction>(base, { definitions });
    }
    case 'ADD': {
      checkExecForm(node, node.rest, 'ADD', warn);
      const sd = sourcesAndDest(args, heredocs, 'ADD');
      return make<AddInstruction>(base, {
        sources: sd.sources, contents: sd.contents, dest: sd.dest, chown: str(flags, 'chown'), chmod: str(flags, 'chmod'),
        link: bool(flags, 'link') ?? false, keepGitDir: bool(flags, 'keep-git-dir'), checksum: str(flags, 'checksum'),
        exclude: strs(flags, 'exclude'), unpack: bool(flags, 'unpack'),
      });
    }
    case 'COPY': {
      checkExecForm(node, node.rest, 'COPY', warn);
      const sd = sourcesAndDest(args, heredocs, 'COPY');
      return make<CopyInstruction>(base, {
        sources: sd.sources, contents: sd.contents, dest: sd.dest, from: str(flags, 'from'), chown: str(flags, 'chown'),
        chmod: str(flags, 'chmod'), link: bool(flags, 'link') ?? false, parents: bool(flags, 'parents') ?? false,
        exclude: strs(flags, 'exclude'),
      });
    }
    case 'EXPOSE':
      atLeastOne(args, 'EXPOSE');
      return make<ExposeInstruction>(base, { ports: [...args].sort() });
    case 'VOLUME': {
      checkExecForm(node, node.rest, 'VOLUME', warn);
      atLeastOne(args, 'VOLUME');
      const paths = args.map((v) => trimSpace(v));
      if (paths.some((p) => p === '')) throw new Failure('VOLUME specified can not be an empty string');
      return make<VolumeInstruction>(base, { paths });
    }
    case 'USER':
      return make<UserInstruction>(base, { user: exactlyOne(args, 'USER') });
    case 'WORKDIR':
      return make<WorkdirInstruction>(base, { path: exactlyOne(args, 'WORKDIR') });
    case 'STOPSIGNAL':
      return make<StopsignalInstruction>(base, { signal: exactlyOne(args, 'STOPSIGNAL') });
    case 'MAINTAINER':
      warn('MAINTAINER is deprecated; use LABEL org.opencontainers.image.authors=...');
      return make<MaintainerInstruction>(base, { maintainer: exactlyOne(args, 'MAINTAINER') });
    case 'ONBUILD': {
      atLeastOne(args, 'ONBUILD');
      const child = node.args[0];
      const trigger = trimSpace(args[0]).toUpperCase();
      if (trigger === 'ONBUILD') throw new Failure("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (trigger === 'MAINTAINER' || trigger === 'FROM') throw new Failure(`${trigger} isn't allowed as an ONBUILD trigger`);
      let expression = node.original.replace(/^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*/i, '');
      for (const h of heredocs) expression += '\n' + h.content + h.name;
      const childNode = typeof child === 'string' ? undefined : child;
      if (!childNode) throw new Failure('ONBUILD requires at least one argument');
      const triggerInstr = build({ ...childNode, startLine: node.startLine, endLine: node.endLine }, ctx, heredocs);
      return make<OnbuildInstruction>(base, { expression, trigger: triggerInstr });
    }
  }
}

/** Turns one parse-tree node into a typed instruction; throws DockerfileError at its line. */
export function instructionFromNode(node: AstNode, options: { file?: string; warnings?: ParseWarning[] } = {}): Instruction {
  const ctx: Ctx = { file: options.file ?? 'Dockerfile', warnings: options.warnings ?? [] };
  try {
    return build(node, ctx, node.heredocs);
  } catch (err) {
    if (err instanceof Failure) throw new DockerfileError(ctx.file, node.startLine, err.message, node.endLine);
    throw err;
  }
}

/** The `# check=` directive: `skip=A,B|all`, `error=BOOL`, `experimental=...`, `;`-separated. */
function parseCheckDirective(value: string | undefined, file: string, line: number) {
  const checks = { skip: [] as string[], error: false };
  const v = trimSpace(value ?? '');
  if (v === '') return checks;
  for (const part of v.split(';').slice(0, 3)) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new DockerfileError(file, line, `invalid check option ${goQuote(part)}`);
    const key = trimSpace(part.slice(0, eq));
    const val = trimSpace(part.slice(eq + 1));
    if (key === 'skip') checks.skip.push(...(val === 'all' ? ['all'] : val.split(',').map(trimSpace)));
    else if (key === 'error') {
      const b = ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(val) ? true : ['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(val) ? false : undefined;
      if (b === undefined) throw new DockerfileError(file, line, `failed to parse check option ${goQuote(part)}: invalid syntax`);
      checks.error = b;
    } else if (key !== 'experimental') {
      throw new DockerfileError(file, line, `invalid check option ${goQuote(key)}`);
    }
  }
  return checks;
}

/**
 * Parses a Dockerfile: syntax (parseAst) then typed instructions. Throws DockerfileError with
 * `file:line` for any error, including instructions before the first FROM (other than ARG) and a
 * file without FROM.
 */
export function parseDockerfile(text: string, options: ParseOptions = {}): Dockerfile {
  const ast = parseAst(text, options);
  const file = ast.file;
  const warnings = [...ast.warnings];
  const instructions: Instruction[] = [];
  let seenFrom = false;
  for (const node of ast.nodes) {
    const instr = instructionFromNode(node, { file, warnings });
    if (instr.kind === 'FROM') seenFrom = true;
    else if (!seenFrom && instr.kind !== 'ARG') {
      throw new DockerfileError(file, node.startLine, `no build stage in current context: ${instr.kind} comes before the first FROM`, node.endLine);
    }
    instructions.push(instr);
  }
  if (!seenFrom) {
    const last = ast.nodes[ast.nodes.length - 1];
    throw new DockerfileError(file, last.startLine, 'the Dockerfile has no FROM instruction: no stages to build');
  }
  const check = ast.directives.find((d) => d.name === 'check');
  return {
    file,
    escapeToken: ast.escapeToken,
    directives: ast.directives,
    syntax: ast.directives.find((d) => d.name === 'syntax')?.value,
    checks: parseCheckDirective(check?.value, file, check?.line ?? 0),
    instructions,
    ast,
    warnings,
  };
}

/**
 * Parses an ONBUILD trigger stored in a base image's config (`OnBuild` entries) into the
 * instruction the downstream build runs right after its FROM.
 */
export function parseOnbuildTrigger(expression: string, options: { file?: string } = {}): Instruction {
  const file = options.file ?? 'ONBUILD trigger';
  const ast = parseAst(expression, { file });
  if (ast.nodes.length !== 1) throw new DockerfileError(file, 0, 'an ONBUILD trigger must be a single instruction');
  const instr = instructionFromNode(ast.nodes[0], { file });
  if (instr.kind === 'ONBUILD' || instr.kind === 'FROM' || instr.kind === 'MAINTAINER') {
    throw new DockerfileError(file, 0, `${instr.kind} isn't allowed as an ONBUILD trigger`);
  }
  return instr;
}

// ---- RUN --mount ----

export interface MountSpec {
  type: 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
  target?: string;
  source?: string;
  /** A stage name or index, an image, or a named context; the build context when undefined. */
  from?: string;
  readonly: boolean;
  id?: string;
  sharing?: 'shared' | 'private' | 'locked';
  mode?: number;
  uid?: number;
  gid?: number;
  required?: boolean;
  size?: number;
  env?: string;
}

/** Splits one CSV record the way Go's encoding/csv reads it (quotes, `""` inside quotes). */
function csvFields(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new Failure(`extraneous or missing " in quoted-field of ${goQuote(s)}`);
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        field += s[i++];
      }
      if (i < s.length && s[i] !== ',') throw new Failure(`extraneous or missing " in quoted-field of ${goQuote(s)}`);
    } else {
      const j = s.indexOf(',', i);
      field = j < 0 ? s.slice(i) : s.slice(i, j);
      if (field.includes('"')) throw new Failure(`bare " in non-quoted-field of ${goQuote(s)}`);
      i = j < 0 ? s.length : j;
    }
    out.push(field);
    if (i >= s.length) break;
    i++; // ','
  }
  return out;
}

function parseBool(v: string): boolean | undefined {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return undefined;
}

function parseSize(v: string): number | undefined {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(i?b?)$/i.exec(v.trim());
  if (!m) return undefined;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 }[m[2].toLowerCase()]!;
  return Math.floor(Number(m[1]) * mult);
}

/**
 * Parses a `RUN --mount=` value. With `expand`, each value is expanded (BuildKit expands mount
 * values with the stage's variables); without it, values are only checked for syntax.
 */
function parseMountSpec(spec: string, expand: ((word: string) => string) | undefined): MountSpec {
  const m: MountSpec = { type: 'bind', readonly: true };
  let roAuto = true;
  for (const field of csvFields(spec)) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      if (key === 'readonly' || key === 'ro') {
        m.readonly = true;
        roAuto = false;
      } else if (key === 'readwrite' || key === 'rw') {
        m.readonly = false;
        roAuto = false;
      } else if (key === 'required' && (m.type === 'secret' || m.type === 'ssh')) {
        m.required = true;
      } else if (key === 'required') {
        throw new Failure(`unexpected key 'required' for mount type '${m.type}'`);
      } else {
        throw new Failure(`invalid field '${field}' must be a key=value pair`);
      }
      continue;
    }
    const raw = field.slice(eq + 1);
    if (key === 'from' && /\$./.test(raw)) {
      throw new Failure(`'from' doesn't support variable expansion, define alias stage instead`);
    }
    // Values are expanded with the stage's variables when the instruction runs; before that,
    // a value holding a variable can only be kept as written.
    const deferred = !expand && raw.includes('$');
    const value = expand && key !== 'from' ? expand(raw) : raw;
    const num = (base: number): number | undefined => {
      if (deferred) return undefined;
      const re = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
      if (!re.test(value) || parseInt(value, base) > 0xffffffff) throw new Failure(`invalid value ${value} for ${key}`);
      return parseInt(value, base);
    };
    const flag = (): boolean | undefined => {
      if (deferred) return undefined;
      const b = parseBool(value);
      if (b === undefined) throw new Failure(`invalid value for ${key}: ${value}`);
      return b;
    };
    switch (key) {
      case 'type': {
        if (deferred) break;
        const t = value.toLowerCase();
        if (!['bind', 'cache', 'tmpfs', 'secret', 'ssh'].includes(t)) {
          const s = suggest(t, ['bind', 'cache', 'tmpfs', 'secret', 'ssh']);
          throw new Failure(`unsupported mount type ${goQuote(value)}${s ? ` (did you mean ${s}?)` : ''}`);
        }
        m.type = t as MountSpec['type'];
        break;
      }
      case 'from': m.from = value; break;
      case 'source': case 'src': m.source = value; break;
      case 'target': case 'dst': case 'destination': m.target = value; break;
      case 'readonly': case 'ro': {
        const b = flag();
        if (b !== undefined) m.readonly = b;
        roAuto = false;
        break;
      }
      case 'readwrite': case 'rw': {
        const b = flag();
        if (b !== undefined) m.readonly = !b;
        roAuto = false;
        break;
      }
      case 'required': m.required = flag(); break;
      case 'id': m.id = value; break;
      case 'sharing':
        if (deferred) break;
        if (value !== 'shared' && value !== 'private' && value !== 'locked') throw new Failure(`unsupported sharing value ${goQuote(value)}`);
        m.sharing = value;
        break;
      case 'mode': m.mode = num(8); break;
      case 'uid': m.uid = num(10); break;
      case 'gid': m.gid = num(10); break;
      case 'size': {
        if (deferred) break;
        const n = parseSize(value);
        if (n === undefined) throw new Failure(`invalid size value ${value}`);
        m.size = n;
        break;
      }
      case 'env': m.env = value; break;
      default: throw new Failure(`unexpected key '${key}' in '${field}'`);
    }
  }
  if (roAuto) m.readonly = m.type === 'bind';
  for (const k of Object.keys(m) as (keyof MountSpec)[]) if (m[k] === undefined) delete m[k];
  if (expand) {
    if ((m.type === 'bind' || m.type === 'cache' || m.type === 'tmpfs') && !m.target) throw new Failure(`mount type ${m.type} requires a target`);
    if (m.type === 'secret' && m.target === undefined && m.env === undefined) {
      if (m.id === undefined) throw new Failure('one of target or id is required for a secret mount');
      m.target = '/run/secrets/' + m.id;
    }
    if (m.type === 'secret' && m.id === undefined && m.target !== undefined) m.id = m.target.split('/').filter(Boolean).pop() ?? m.target;
    if (m.type === 'cache' && m.id === undefined) m.id = m.target;
  }
  return m;
}

/** Parses a `RUN --mount=` value (see parseMountSpec); throws MountError on bad input. */
export function parseMount(spec: string, expand?: (word: string) => string): MountSpec {
  try {
    return parseMountSpec(spec, expand);
  } catch (err) {
    if (err instanceof Failure) throw new MountError(err.message);
    throw err;
  }
}

/** An invalid `--mount` value. */
export class MountError extends KeelError {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}
