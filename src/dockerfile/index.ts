/**
 * keel/dockerfile — the Dockerfile frontend: parser, word expansion, stage semantics, .dockerignore.
 * It matches BuildKit's Dockerfile frontend (BuildKit's Dockerfile reference is the spec).
 *
 * Parsing
 *   parseDockerfile(text, { file })        → Dockerfile: directives (syntax, escape, check), typed
 *       `instructions` in order (discriminated on `kind`: 'FROM' | 'RUN' | 'COPY' | ...), each with
 *       `flags` (raw `--x=y`), `args` (raw), `heredocs`, `json` (exec form), `file`, `startLine`,
 *       `endLine`, `original`, and typed fields (FROM: image/stageName/platform; RUN: command,
 *       mounts, mountSpecs, network, security, devices; COPY/ADD: sources, contents (heredocs),
 *       dest, from, chown, chmod, link, parents, exclude, checksum, keepGitDir, unpack; ENV/LABEL:
 *       pairs; ARG: definitions; HEALTHCHECK: test + durations in ns; ONBUILD: expression +
 *       trigger; ...). Values are unexpanded. Also `ast` (the parse tree) and `warnings`.
 *   parseAst(text, { file })                → the syntactic parse tree only (BuildKit's parser).
 *   dumpAst(ast)                            → BuildKit's dumper output, one `(instruction ...)` per line.
 *   parseOnbuildTrigger(expression)         → the instruction of a base image's ONBUILD trigger.
 *   parseMount(spec, expand?)               → a typed RUN --mount value.
 *   Every error is a KeelError; Dockerfile errors are DockerfileError: one line `file:line: what`.
 *
 * Word expansion (BuildKit's shell lexer)
 *   processWord(word, env, options)  → string;   processWords(word, env, options) → string[]
 *   expandWord(word, env, options)   → { result, words, matched, unmatched }
 *   env: Record | Map | ['K=V', ...] | (name) => value. options: { escapeToken, rawQuotes,
 *   rawEscapes, skipUnsetEnv, skipProcessQuotes }. Errors: ExpansionError (a KeelError).
 *
 * Semantics
 *   resolveStages(df, { buildArgs, target, targetPlatform, buildPlatform }) → BuildPlan:
 *       globalArgs (automatic platform ARGs + ARGs before the first FROM, build args applied),
 *       stages [{ index, name, baseName (expanded), base: scratch | stage index | image ref,
 *       platform, instructions, dependencies (FROM / COPY --from / RUN --mount from=), reachable }],
 *       target, order (stages to build, dependencies first), unusedBuildArgs.
 *   createScope(plan, { baseEnv }) → StageScope for a stage based on an image (its config Env);
 *       for a stage based on another stage use that stage's final scope `.fork()`.
 *     scope.step(instr)   → the instruction with its arguments expanded exactly where BuildKit
 *                           expands them; ENV and ARG update the scope. Feed instructions in order.
 *                           (expandInstruction(instr, scope) is the same as a function.)
 *     scope.preview(instr), scope.expand(word), scope.get(name), scope.variables(),
 *     scope.imageEnv() (config Env), scope.runEnv() (RUN environment), scope.buildArgs().
 *   resolveStageRef(plan, value) → stage or image a (expanded) COPY --from / mount from= names;
 *       stage.dependencies also lists them, keyed by the unexpanded instruction objects.
 *   commandArgs(command, shell) → argv of RUN/CMD/ENTRYPOINT; runCommand(run, shell) → argv plus
 *       an inline executable for `RUN <<EOF` scripts with a shebang; resolveWorkdir(cwd, path).
 *
 * Build context
 *   loadDockerignore(contextDir, dockerfilePath?) → DockerIgnore (NAME.dockerignore next to the
 *       Dockerfile wins over <context>/.dockerignore; none → ignores nothing).
 *   ignore.ignores(relPath) → excluded?   ignore.mustWalk(relDir) → must an excluded directory be
 *       walked because a `!` exception may re-include something inside?
 *   walkContext(contextDir, ignore) → async iterator of kept entries { path, absPath, type, stats },
 *       depth-first in byte order, parents before children, symlinks not followed.
 */
export { DockerfileError, ExpansionError, DockerignoreError } from './errors.js';
export {
  parseAst, dumpAst, dumpNode, heredocText, chompHeredocContent, parseHeredocWord,
  type AstArg, type AstNode, type DockerfileAst, type Heredoc, type ParseOptions, type ParseWarning,
  type ParserDirective,
} from './parser.js';
export {
  parseDockerfile, instructionFromNode, parseOnbuildTrigger, parseMount, parseGoDuration, jsonPrefixState,
  MountError, INSTRUCTION_KINDS,
  type AddInstruction, type ArgDefinition, type ArgInstruction, type CmdInstruction, type CommandLine,
  type CopyInstruction, type Dockerfile, type EntrypointInstruction, type EnvInstruction, type ExposeInstruction,
  type FromInstruction, type HealthcheckInstruction, type InlineFile, type Instruction, type InstructionBase,
  type InstructionKind, type KeyValue, type LabelInstruction, type MaintainerInstruction, type MountSpec,
  type OnbuildInstruction, type RunInstruction, type ShellInstruction, type SourceContent,
  type StopsignalInstruction, type UserInstruction, type VolumeInstruction, type WorkdirInstruction,
} from './instructions.js';
export {
  processWord, processWords, expandWord, toLookup, type EnvInput, type ExpansionResult, type ShellOptions,
} from './shell.js';
export {
  resolveStages, findStage, resolveStageRef, createScope, expandInstruction, StageScope, commandArgs, runCommand, resolveWorkdir,
  hostPlatform, EXPANDED_INSTRUCTIONS, PREDEFINED_ARGS, DEFAULT_SHELL,
  type BuildArgValue, type BuildPlan, type ResolveOptions, type RunPlan, type ScopeOptions, type Stage,
  type StageDependency, type StageRef,
} from './semantics.js';
export {
  DockerIgnore, loadDockerignore, readDockerignore, walkContext, normaliseContextPath,
  type ContextEntry, type IgnorePattern,
} from './dockerignore.js';
export { goQuote } from './text.js';
