// Semantics of a parsed Dockerfile, as BuildKit gives them:
//  - ARGs before the first FROM form the global scope; only FROM (image and --platform) and
//    COPY --from see it directly, a stage sees a global ARG only after re-declaring it (`ARG NAME`);
//  - build args (--build-arg) override ARG defaults, global or in a stage;
//  - in a stage, ENV and ARG values are variables of the stage, later ones win (ENV after ARG of the
//    same name overrides it and vice versa); ENV values also go to the image config;
//  - a stage based on another stage inherits its variables, ARGs included;
//  - stages are referred to by name (case-insensitive) or, in COPY --from, by index;
//  - variables are expanded in exactly the instructions BuildKit expands them in: ADD, ARG, COPY,
//    ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and RUN --mount values; never in
//    RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands (their shell does it) nor in ONBUILD triggers.
import { DockerfileError, ExpansionError } from './errors.js';
import {
  parseMount, MountError,
  type ArgDefinition, type ArgInstruction, type CommandLine, type Dockerfile,
  type FromInstruction, type Instruction, type KeyValue, type RunInstruction, type SourceContent,
} from './instructions.js';
import { chompHeredocContent, parseHeredocWord } from './parser.js';
import { expandWord, type EnvInput } from './shell.js';
import { cleanPath, goQuote } from './text.js';
import { KeelError } from '../util/errors.js';

/** Instructions whose arguments the builder expands (see the module comment). */
export const EXPANDED_INSTRUCTIONS: readonly Instruction['kind'][] = [
  'ADD', 'ARG', 'COPY', 'ENV', 'EXPOSE', 'FROM', 'LABEL', 'STOPSIGNAL', 'USER', 'VOLUME', 'WORKDIR',
];

/** Build args usable without an ARG declaration (passed to RUN, never expanded in the Dockerfile). */
export const PREDEFINED_ARGS: readonly string[] = [
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy',
  'ALL_PROXY', 'all_proxy',
];

export const DEFAULT_SHELL: readonly string[] = ['/bin/sh', '-c'];

export interface ResolveOptions {
  /** `--build-arg` values. */
  buildArgs?: Readonly<Record<string, string>> | ReadonlyMap<string, string>;
  /** The stage to build (by name); the last stage when undefined. */
  target?: string;
  /** Platform of the result, `os/arch[/variant]` (default: this host's). */
  targetPlatform?: string;
  /** Platform of the builder (default: this host's). */
  buildPlatform?: string;
}

export type StageRef =
  | { kind: 'scratch' }
  | { kind: 'stage'; index: number }
  | { kind: 'image'; ref: string };

/** Something a stage needs before it can be built. */
export interface StageDependency {
  /** The FROM, COPY --from or RUN --mount from= that needs it. */
  instruction: Instruction;
  via: 'from' | 'copy' | 'mount';
  /** The reference as written, expanded. */
  value: string;
  ref: StageRef;
}

export interface Stage {
  index: number;
  /** `AS name`, lower case. */
  name?: string;
  from: FromInstruction;
  /** The FROM argument with global ARGs expanded. */
  baseName: string;
  base: StageRef;
  /** `--platform` with global ARGs expanded. */
  platform?: string;
  /** The instructions after FROM, unexpanded (expand them in order with a StageScope). */
  instructions: Instruction[];
  dependencies: StageDependency[];
  /** Needed to build the target. */
  reachable: boolean;
}

export interface BuildPlan {
  dockerfile: Dockerfile;
  /** The global scope: automatic platform ARGs, then ARGs before the first FROM (with values). */
  globalArgs: Map<string, string>;
  buildArgs: Map<string, string>;
  stages: Stage[];
  target: Stage;
  /** Stages needed for the target, each after the stages it depends on. */
  order: Stage[];
  /** Build args no ARG declares (BuildKit warns about them). */
  unusedBuildArgs: string[];
}

// ---- platforms ----

const ARCHES: Record<string, [string, string]> = {
  x64: ['amd64', ''], arm64: ['arm64', ''], arm: ['arm', 'v7'], ia32: ['386', ''], ppc64: ['ppc64le', ''],
  s390x: ['s390x', ''], riscv64: ['riscv64', ''], loong64: ['loong64', ''], mips64el: ['mips64le', ''],
};

/** This host's platform in OCI form, e.g. `linux/amd64`. */
export function hostPlatform(): string {
  const [arch, variant] = ARCHES[process.arch] ?? [process.arch, ''];
  return variant ? `linux/${arch}/${variant}` : `linux/${arch}`;
}

const PLATFORM = /^[a-z0-9_.-]+\/[a-z0-9_.-]+(\/[a-z0-9_.-]+)?$/i;

function platformArgs(prefix: string, platform: string): [string, string][] {
  const [os, arch, variant = ''] = platform.split('/');
  return [[`${prefix}PLATFORM`, platform], [`${prefix}OS`, os], [`${prefix}ARCH`, arch], [`${prefix}VARIANT`, variant]];
}

function toMap(m: ResolveOptions['buildArgs']): Map<string, string> {
  if (!m) return new Map();
  if (m instanceof Map) return new Map(m);
  return new Map(Object.entries(m));
}

// ---- expansion helpers ----

function expandOrFail(instr: Instruction, word: string, env: EnvInput, escapeToken: string): string {
  try {
    return expandWord(word, env, { escapeToken }).result;
  } catch (err) {
    if (err instanceof ExpansionError) throw new DockerfileError(instr.file, instr.startLine, err.message, instr.endLine);
    throw err;
  }
}

function failAt(instr: Instruction, message: string): never {
  throw new DockerfileError(instr.file, instr.startLine, message, instr.endLine);
}

// ---- stages ----

/**
 * Splits a parsed Dockerfile into stages, resolves global ARGs, FROM references, COPY --from and
 * RUN --mount from= dependencies, and the stages the target needs. Throws DockerfileError.
 */
export function resolveStages(df: Dockerfile, options: ResolveOptions = {}): BuildPlan {
  const esc = df.escapeToken;
  const buildArgs = toMap(options.buildArgs);
  const targetPlatform = options.targetPlatform ?? hostPlatform();
  const buildPlatform = options.buildPlatform ?? hostPlatform();
  for (const p of [targetPlatform, buildPlatform]) {
    if (!PLATFORM.test(p)) throw new DockerfileError(df.file, 0, `invalid platform ${goQuote(p)}: want os/arch[/variant]`);
  }
  const globalArgs = new Map<string, string>([...platformArgs('TARGET', targetPlatform), ...platformArgs('BUILD', buildPlatform)]);
  const declared = new Set<string>(globalArgs.keys());

  const instrs = df.instructions;
  let i = 0;
  for (; i < instrs.length && instrs[i].kind !== 'FROM'; i++) {
    const a = instrs[i] as ArgInstruction;
    for (const def of a.definitions) {
      declared.add(def.key);
      let value: string | undefined;
      if (buildArgs.has(def.key)) value = buildArgs.get(def.key);
      else if (def.value !== undefined) value = expandOrFail(a, def.value, globalArgs, esc);
      if (value !== undefined) globalArgs.set(def.key, value);
    }
  }

  const stages: Stage[] = [];
  const byName = new Map<string, Stage>();
  for (; i < instrs.length; i++) {
    const instr = instrs[i];
    if (instr.kind !== 'FROM') {
      stages[stages.length - 1].instructions.push(instr);
      if (instr.kind === 'ARG') for (const d of instr.definitions) declared.add(d.key);
      continue;
    }
    const baseName = expandOrFail(instr, instr.image, globalArgs, esc);
    if (baseName === '') failAt(instr, `base name (${instr.image}) should not be blank`);
    let platform: string | undefined;
    if (instr.platform !== undefined) {
      platform = expandOrFail(instr, instr.platform, globalArgs, esc);
      if (platform === '') failAt(instr, `empty platform value from expression ${instr.platform}`);
      if (!PLATFORM.test(platform)) failAt(instr, `failed to parse platform ${platform}: want os/arch[/variant]`);
    }
    let base: StageRef;
    const prior = byName.get(baseName.toLowerCase());
    if (baseName === 'scratch') base = { kind: 'scratch' };
    else if (prior) base = { kind: 'stage', index: prior.index };
    else base = { kind: 'image', ref: baseName };
    const stage: Stage = {
      index: stages.length, name: instr.stageName, from: instr, baseName, base, platform, instructions: [],
      dependencies: [{ instruction: instr, via: 'from', value: baseName, ref: base }], reachable: false,
    };
    if (instr.stageName !== undefined) {
      if (byName.has(instr.stageName)) failAt(instr, `duplicate stage name ${goQuote(instr.stageName)}`);
      byName.set(instr.stageName, stage);
    }
    stages.push(stage);
  }

  // COPY --from (global ARGs expanded; a name, an index, or an image) and RUN --mount from= (a name
  // or an image; no variables). Forward references are allowed; cycles are not.
  for (const stage of stages) {
    for (const instr of stage.instructions) {
      if (instr.kind === 'COPY' && instr.from !== undefined) {
        const value = expandOrFail(instr, instr.from, globalArgs, esc);
        if (value === '') failAt(instr, `COPY --from=${instr.from} is empty`);
        let ref: StageRef;
        if (/^[+-]?[0-9]+$/.test(value)) {
          const n = Number(value);
          if (!Number.isSafeInteger(n) || n < 0 || n >= stages.length) failAt(instr, `invalid stage index ${value}`);
          ref = { kind: 'stage', index: n };
        } else {
          const s = byName.get(value.toLowerCase());
          ref = s ? { kind: 'stage', index: s.index } : { kind: 'image', ref: value };
        }
        stage.dependencies.push({ instruction: instr, via: 'copy', value, ref });
      } else if (instr.kind === 'RUN') {
        for (const m of instr.mountSpecs) {
          if (m.from === undefined || m.from === '') continue;
          const s = byName.get(m.from.toLowerCase());
          const ref: StageRef = s ? { kind: 'stage', index: s.index } : { kind: 'image', ref: m.from };
          stage.dependencies.push({ instruction: instr, via: 'mount', value: m.from, ref });
        }
      }
    }
  }

  if (stages.length === 0) throw new DockerfileError(df.file, 0, 'the Dockerfile has no FROM instruction: no stages to build');
  let target = stages[stages.length - 1];
  if (options.target !== undefined) {
    const t = byName.get(options.target.toLowerCase());
    if (!t) throw new DockerfileError(df.file, 0, `target stage ${goQuote(options.target)} could not be found`);
    target = t;
  }

  // Cycles anywhere are errors; reachability and build order from the target. Iterative
  // depth-first search, so a long chain of stages cannot exhaust the stack.
  const state = new Array<number>(stages.length).fill(0); // 0 new, 1 visiting, 2 done
  const order: Stage[] = [];
  const visit = (root: Stage, collect: boolean): void => {
    if (state[root.index] === 2) return;
    const stack: { stage: Stage; next: number }[] = [{ stage: root, next: 0 }];
    state[root.index] = 1;
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const deps = top.stage.dependencies;
      if (top.next < deps.length) {
        const dep = deps[top.next++];
        if (dep.ref.kind !== 'stage') continue;
        const next = stages[dep.ref.index];
        if (state[next.index] === 1) {
          failAt(dep.instruction, `circular dependency detected on stage: ${next.name ?? String(next.index)}`);
        }
        if (state[next.index] === 0) {
          state[next.index] = 1;
          stack.push({ stage: next, next: 0 });
        }
        continue;
      }
      state[top.stage.index] = 2;
      if (collect) order.push(top.stage);
      stack.pop();
    }
  };
  visit(target, true);
  for (const s of order) s.reachable = true;
  for (const s of stages) visit(s, false);

  // Proxy args, BUILDKIT_* settings and SOURCE_DATE_EPOCH are consumed without an ARG.
  const predefined = new Set([...PREDEFINED_ARGS, 'SOURCE_DATE_EPOCH']);
  const unusedBuildArgs = [...buildArgs.keys()].filter((k) => !declared.has(k) && !predefined.has(k) && !k.startsWith('BUILDKIT_')).sort();

  return { dockerfile: df, globalArgs, buildArgs, stages, target, order, unusedBuildArgs };
}

/** The stage a name (case-insensitive) or index refers to. */
export function findStage(plan: BuildPlan, ref: string | number): Stage | undefined {
  if (typeof ref === 'number') return plan.stages[ref];
  const name = ref.toLowerCase();
  return plan.stages.find((s) => s.name === name);
}

/** A copy of an instruction with some fields replaced (plain clone, then assignment: fast in V8). */
function withFields<T extends Instruction>(i: T, fields: Partial<T>): T {
  const o = { ...i };
  Object.assign(o, fields);
  return o;
}

// ---- per-stage variable scope ----

export interface ScopeOptions {
  /** The base image config's Env (`KEY=VALUE` strings). For a stage based on another stage,
   *  use the parent stage's final scope's `fork()` instead. */
  baseEnv?: readonly string[];
}

export interface BuildArgValue {
  key: string;
  /** Undefined when declared without a value and none was given. */
  value?: string;
}

/**
 * The variables of one stage while its instructions run. Feed it every instruction of the stage
 * in order with `step()`: ENV and ARG update it, and every instruction comes back with its
 * arguments expanded as BuildKit expands them.
 */
export class StageScope {
  /** All variables for expansion and RUN: base env, ENV and ARG values (later wins). */
  private readonly vars: Map<string, string>;
  /** The image config's Env: base env and ENV values. */
  private readonly env: Map<string, string>;
  private readonly args: BuildArgValue[];

  private constructor(
    private readonly plan: Pick<BuildPlan, 'globalArgs' | 'buildArgs'> & { escapeToken: string },
    vars: Map<string, string>, env: Map<string, string>, args: BuildArgValue[],
  ) {
    this.vars = vars;
    this.env = env;
    this.args = args;
  }

  /** A scope for a stage whose base is an image (or scratch) with this config Env. */
  static create(plan: BuildPlan, options: ScopeOptions = {}): StageScope {
    const env = new Map<string, string>();
    for (const e of options.baseEnv ?? []) {
      const i = e.indexOf('=');
      if (i < 0) env.set(e, '');
      else env.set(e.slice(0, i), e.slice(i + 1));
    }
    return new StageScope(
      { globalArgs: plan.globalArgs, buildArgs: plan.buildArgs, escapeToken: plan.dockerfile.escapeToken },
      new Map(env), env, [],
    );
  }

  /** A copy, for a stage based on this one (it inherits ENV and ARG values). */
  fork(): StageScope {
    return new StageScope(this.plan, new Map(this.vars), new Map(this.env), this.args.map((a) => ({ ...a })));
  }

  /** A variable's value (ENV or ARG), undefined when not set. */
  get(name: string): string | undefined {
    return this.vars.get(name);
  }

  /** All variables visible to expansion and RUN, in definition order. */
  variables(): Map<string, string> {
    return new Map(this.vars);
  }

  /** The image config's Env list (`KEY=VALUE`). */
  imageEnv(): string[] {
    return [...this.env].map(([k, v]) => `${k}=${v}`);
  }

  /** The environment of a RUN: all variables, plus proxy build args given without ARG. */
  runEnv(): string[] {
    const out = [...this.vars].map(([k, v]) => `${k}=${v}`);
    for (const k of PREDEFINED_ARGS) {
      const v = this.plan.buildArgs.get(k);
      if (v !== undefined && !this.vars.has(k)) out.push(`${k}=${v}`);
    }
    return out;
  }

  /** The ARGs declared in this stage (and inherited), with their values: part of a RUN's cache key. */
  buildArgs(): BuildArgValue[] {
    return this.args.map((a) => ({ ...a }));
  }

  /** Expands one word with the stage's variables. */
  expand(word: string): string {
    return expandWord(word, (n) => this.vars.get(n), { escapeToken: this.plan.escapeToken }).result;
  }

  /** Runs one instruction: returns it with its arguments expanded; ENV and ARG update the scope. */
  step<T extends Instruction>(instr: T): T {
    const out = this.expandInstruction(instr, this.vars, true);
    return out;
  }

  /** Expands an instruction without changing the scope. */
  preview<T extends Instruction>(instr: T): T {
    return this.expandInstruction(instr, new Map(this.vars), false);
  }

  private word(instr: Instruction, word: string, vars: Map<string, string>, raw = false): string {
    try {
      return expandWord(word, (n) => vars.get(n), raw ? { skipProcessQuotes: true } : { escapeToken: this.plan.escapeToken }).result;
    } catch (err) {
      if (err instanceof ExpansionError) failAt(instr, err.message);
      throw err;
    }
  }

  private words(instr: Instruction, word: string, vars: Map<string, string>): string[] {
    try {
      return expandWord(word, (n) => vars.get(n), { escapeToken: this.plan.escapeToken }).words;
    } catch (err) {
      if (err instanceof ExpansionError) failAt(instr, err.message);
      throw err;
    }
  }

  private expandInstruction<T extends Instruction>(instr: T, vars: Map<string, string>, apply: boolean): T {
    const w = (s: string) => this.word(instr, s, vars);
    const opt = (s: string | undefined) => (s === undefined ? undefined : w(s));
    const i = instr as Instruction;
    switch (i.kind) {
      case 'ENV': {
        const pairs: KeyValue[] = i.pairs.map((p) => ({ key: w(p.key), value: w(p.value) }));
        if (apply) {
          for (const p of pairs) {
            vars.set(p.key, p.value);
            this.env.set(p.key, p.value);
          }
        }
        return withFields(i, { pairs }) as T;
      }
      case 'LABEL':
        return withFields(i, { pairs: i.pairs.map((p) => ({ key: w(p.key), value: w(p.value) })) }) as T;
      case 'ARG': {
        const definitions: ArgDefinition[] = [];
        for (const d of i.definitions) {
          let value: string | undefined;
          if (this.plan.buildArgs.has(d.key)) value = this.plan.buildArgs.get(d.key);
          else if (d.value !== undefined) value = w(d.value);
          else value = this.plan.globalArgs.get(d.key);
          if (value !== undefined) vars.set(d.key, value);
          definitions.push(value === undefined ? { key: d.key } : { key: d.key, value });
          if (apply) {
            const existing = this.args.findIndex((a) => a.key === d.key);
            const entry = value === undefined ? { key: d.key } : { key: d.key, value };
            if (existing >= 0) this.args[existing] = entry;
            else this.args.push(entry);
          }
        }
        return withFields(i, { definitions }) as T;
      }
      case 'ADD':
      case 'COPY': {
        const contents: SourceContent[] = i.contents.map((c) => (c.expand ? { ...c, data: this.word(instr, c.data, vars, true) } : c));
        const common = {
          sources: i.sources.map(w), dest: w(i.dest), contents, chown: opt(i.chown), chmod: opt(i.chmod),
          exclude: i.exclude.map(w),
        };
        if (i.kind === 'ADD') return withFields(i, { ...common, checksum: opt(i.checksum) }) as T;
        const from = i.from === undefined ? undefined : this.globalWord(i, i.from);
        return withFields(i, { ...common, from }) as T;
      }
      case 'EXPOSE':
        return withFields(i, { ports: i.ports.flatMap((p) => this.words(instr, p, vars)) }) as T;
      case 'VOLUME': {
        const paths = i.paths.map(w);
        if (paths.some((p) => p === '')) failAt(i, 'VOLUME specified can not be an empty string');
        return withFields(i, { paths }) as T;
      }
      case 'USER':
        return withFields(i, { user: w(i.user) }) as T;
      case 'WORKDIR':
        return withFields(i, { path: w(i.path) }) as T;
      case 'STOPSIGNAL':
        return withFields(i, { signal: w(i.signal) }) as T;
      case 'RUN': {
        const mountSpecs = i.mounts.map((m) => {
          try {
            return parseMount(m, w);
          } catch (err) {
            if (err instanceof MountError) failAt(i, `invalid --mount=${m}: ${err.message}`);
            throw err;
          }
        });
        return withFields(i, { mountSpecs }) as T;
      }
      case 'FROM':
        return withFields(i, { image: this.globalWord(i, i.image), platform: i.platform === undefined ? undefined : this.globalWord(i, i.platform) }) as T;
      default:
        return instr; // CMD ENTRYPOINT SHELL HEALTHCHECK MAINTAINER ONBUILD: not expanded
    }
  }

  private globalWord(instr: Instruction, word: string): string {
    return expandOrFail(instr, word, this.plan.globalArgs, this.plan.escapeToken);
  }
}

/**
 * Expands one instruction in its stage's scope, as the builder runs it (same as `scope.step`):
 * ENV and ARG also update the scope, so call it for every instruction of the stage, in order.
 */
export function expandInstruction<T extends Instruction>(instr: T, scope: StageScope): T {
  return scope.step(instr);
}

/** A scope for a stage: pass the base image's config Env (or fork the parent stage's scope). */
export function createScope(plan: BuildPlan, options: ScopeOptions = {}): StageScope {
  return StageScope.create(plan, options);
}

// ---- commands ----

/** The argv of a command: exec form as is, shell form wrapped in the shell (`/bin/sh -c` by default). */
export function commandArgs(command: CommandLine, shell: readonly string[] = DEFAULT_SHELL): string[] {
  if (command.form === 'exec') return [...command.args];
  return [...shell, command.args.join(' ')];
}

export interface RunPlan {
  /** What to execute. */
  args: string[];
  /** An executable file to mount read-only at `dir` (a heredoc script starting with `#!`). */
  inlineFile?: { dir: string; name: string; data: string; mode: number };
}

/**
 * What a RUN executes, heredocs included, as BuildKit does it: a command that is only a heredoc
 * runs the heredoc (as an executable file when it starts with `#!`, else with the shell); other
 * heredocs are passed to the shell as shell here-documents.
 */
export function runCommand(run: RunInstruction, shell: readonly string[] = DEFAULT_SHELL): RunPlan {
  const cmd = run.command;
  if (cmd.files.length === 0 || cmd.form === 'exec') return { args: commandArgs(cmd, shell) };
  const line = cmd.args.join(' ');
  const first = cmd.files[0];
  const data = first.chomp ? chompHeredocContent(first.data) : first.data;
  if (parseHeredocWord(line)) {
    if (data.startsWith('#!')) {
      return { args: [`/dev/pipes/${first.name}`], inlineFile: { dir: '/dev/pipes/', name: first.name, data, mode: 0o755 } };
    }
    return { args: [...shell, data] };
  }
  let full = line;
  for (const f of cmd.files) full += '\n' + f.data + f.name;
  return { args: [...shell, full] };
}

/** The working directory after `WORKDIR path` (relative paths are relative to the current one). */
export function resolveWorkdir(current: string, path: string): string {
  return path.startsWith('/') ? cleanPath(path) : cleanPath('/' + (current || '/') + '/' + path);
}

/**
 * What a `COPY --from=` (or, with `index: false`, a `RUN --mount from=`) value refers to: a stage
 * by name (case-insensitive) or index, else an image. Pass the expanded value (scope.step expands
 * COPY --from with the global ARGs). Throws a KeelError for an index out of range.
 */
export function resolveStageRef(plan: BuildPlan, value: string, options: { index?: boolean } = {}): StageRef {
  if (options.index !== false && /^[+-]?[0-9]+$/.test(value)) {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 0 || n >= plan.stages.length) throw new KeelError(`invalid stage index ${value}`);
    return { kind: 'stage', index: n };
  }
  const s = findStage(plan, value);
  return s ? { kind: 'stage', index: s.index } : { kind: 'image', ref: value };
}
