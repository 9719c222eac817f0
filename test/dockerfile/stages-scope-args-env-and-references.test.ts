// Stage semantics: global ARGs and their scope, ENV/ARG precedence, build-arg overrides, stage
// references by name and index, dependencies and build order, ONBUILD, and exactly which
// instructions get their variables expanded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseDockerfile, resolveStages, resolveStageRef, createScope, runCommand, commandArgs, resolveWorkdir, DockerfileError,
  type Instruction, type BuildPlan, type Stage, type StageScope,
} from '../../src/dockerfile/index.js';

function plan(text: string, buildArgs: Record<string, string> = {}, target?: string): BuildPlan {
  return resolveStages(parseDockerfile(text), { buildArgs, target, targetPlatform: 'linux/arm64/v8', buildPlatform: 'linux/amd64' });
}

/** Runs every instruction of a stage through a scope; returns the expanded instructions. */
function runStage(p: BuildPlan, stage: Stage, scope: StageScope = createScope(p)): { out: Instruction[]; scope: StageScope } {
  return { out: stage.instructions.map((i) => scope.step(i)), scope };
}

function field(i: Instruction): unknown {
  switch (i.kind) {
    case 'WORKDIR': return i.path;
    case 'USER': return i.user;
    case 'ENV': case 'LABEL': return i.pairs;
    case 'ARG': return i.definitions;
    case 'EXPOSE': return i.ports;
    case 'VOLUME': return i.paths;
    case 'STOPSIGNAL': return i.signal;
    default: return undefined;
  }
}

test('ARGs before FROM expand in FROM and are invisible in a stage until re-declared', () => {
  const p = plan('ARG V=1.0\nARG IMG=busybox\nFROM ${IMG}:${V} AS a\nWORKDIR /w/${V}\nARG V\nWORKDIR /w/${V}\n');
  assert.equal(p.stages[0].baseName, 'busybox:1.0');
  assert.deepEqual(p.stages[0].base, { kind: 'image', ref: 'busybox:1.0' });
  const { out } = runStage(p, p.stages[0]);
  assert.deepEqual(out.map(field), ['/w/', [{ key: 'V', value: '1.0' }], '/w/1.0']);
});

test('build args override global and stage defaults; undeclared build args are reported', () => {
  const text = 'ARG V=1.0\nFROM busybox:${V}\nARG V\nARG X=def\nARG Y\nWORKDIR /${V}/${X}/${Y:-none}\n';
  const p = plan(text, { V: '2.0', X: 'over', Z: 'unused', HTTP_PROXY: 'http://proxy:3128', BUILDKIT_INLINE_CACHE: '1', SOURCE_DATE_EPOCH: '0' });
  assert.equal(p.stages[0].baseName, 'busybox:2.0');
  const { out, scope } = runStage(p, p.stages[0]);
  assert.equal(field(out[3]), '/2.0/over/none');
  assert.deepEqual(p.unusedBuildArgs, ['Z']);
  assert.deepEqual(scope.buildArgs(), [{ key: 'V', value: '2.0' }, { key: 'X', value: 'over' }, { key: 'Y' }]);
  assert.ok(scope.runEnv().includes('HTTP_PROXY=http://proxy:3128'), 'proxy build args reach RUN without an ARG');
  assert.ok(!scope.imageEnv().some((e) => e.startsWith('HTTP_PROXY')));
});

test('an ARG is in scope from the line it is declared on (the documented USER example)', () => {
  const p = plan('FROM busybox\nUSER ${username:-some_user}\nARG username\nUSER $username\n', { username: 'what_user' });
  assert.deepEqual(runStage(p, p.stages[0]).out.map(field), ['some_user', [{ key: 'username', value: 'what_user' }], 'what_user']);
});

test('ENV overrides an earlier ARG of the same name, and can default from it', () => {
  const p1 = plan('FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=v1.0.0\nWORKDIR /$CONT_IMG_VER\n', { CONT_IMG_VER: 'v2.0.1' });
  const r1 = runStage(p1, p1.stages[0]);
  assert.equal(field(r1.out[2]), '/v1.0.0');
  assert.equal(r1.scope.get('CONT_IMG_VER'), 'v1.0.0');
  assert.ok(r1.scope.runEnv().includes('CONT_IMG_VER=v1.0.0'));
  const text = 'FROM ubuntu\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\n';
  assert.deepEqual(runStage(plan(text, { CONT_IMG_VER: 'v2.0.1' }), plan(text).stages[0]).scope.imageEnv(), ['CONT_IMG_VER=v2.0.1']);
  assert.deepEqual(runStage(plan(text), plan(text).stages[0]).scope.imageEnv(), ['CONT_IMG_VER=v1.0.0']);
});

test('an ARG after an ENV of the same name changes the variable but not the image config Env', () => {
  const p = plan('FROM a\nENV X=env\nARG X=arg\nUSER $X\n');
  const { out, scope } = runStage(p, p.stages[0]);
  assert.equal(field(out[2]), 'arg');
  assert.deepEqual(scope.imageEnv(), ['X=env']);
});

test('one ENV instruction expands every value with the variables from before it', () => {
  const p = plan('FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n');
  const { scope } = runStage(p, p.stages[0]);
  assert.deepEqual(scope.imageEnv(), ['abc=bye', 'def=hello', 'ghi=bye']);
});

test('ARG definitions in one instruction see the previous ones', () => {
  const p = plan('FROM a\nARG a=1 b=${a}2\n');
  assert.deepEqual(field(runStage(p, p.stages[0]).out[0]), [{ key: 'a', value: '1' }, { key: 'b', value: '12' }]);
});

test('the base image Env seeds the scope; a stage based on a stage inherits ENV and ARGs', () => {
  const p = plan('FROM img AS base\nARG A=1\nENV B=2\nFROM base AS child\nUSER $A:$B:$PATH\nFROM img AS other\nUSER ${A:-unset}:${B:-unset}\n');
  assert.deepEqual(p.stages.map((s) => s.base), [{ kind: 'image', ref: 'img' }, { kind: 'stage', index: 0 }, { kind: 'image', ref: 'img' }]);
  const base = runStage(p, p.stages[0], createScope(p, { baseEnv: ['PATH=/usr/bin', 'EMPTY'] }));
  assert.deepEqual(base.scope.imageEnv(), ['PATH=/usr/bin', 'EMPTY=', 'B=2']);
  assert.equal(field(runStage(p, p.stages[1], base.scope.fork()).out[0]), '1:2:/usr/bin');
  assert.equal(field(runStage(p, p.stages[2]).out[0]), 'unset:unset');
  assert.equal(base.scope.get('B'), '2', 'forking leaves the parent scope alone');
});

test('a global ARG declared without a value is unset unless given as a build arg', () => {
  assert.equal(plan('ARG X\nFROM ${X:-alpine}').stages[0].baseName, 'alpine');
  assert.equal(plan('ARG X\nFROM ${X-alpine}').stages[0].baseName, 'alpine');
  assert.equal(plan('ARG X\nFROM ${X:-alpine}', { X: 'debian' }).stages[0].baseName, 'debian');
});

test('automatic platform ARGs are global: FROM --platform and re-declared ARGs see them', () => {
  const p = plan('FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETOS TARGETARCH TARGETVARIANT\nWORKDIR /out/$TARGETOS/$TARGETARCH/$TARGETVARIANT\nUSER ${BUILDARCH:-none}\n');
  assert.equal(p.stages[0].platform, 'linux/amd64');
  assert.equal(p.globalArgs.get('TARGETPLATFORM'), 'linux/arm64/v8');
  const { out } = runStage(p, p.stages[0]);
  assert.equal(field(out[1]), '/out/linux/arm64/v8');
  assert.equal(field(out[2]), 'none');
});

test('stages are referenced by name (case-insensitive) or index; dependencies and build order follow', () => {
  const text = [
    'FROM alpine AS Base',
    'FROM base AS deps',
    'RUN --mount=type=bind,from=tools,target=/t make',
    'FROM golang AS tools',
    'FROM scratch AS final',
    'COPY --from=DEPS /a /a',
    'COPY --from=2 /b /b',
    'COPY --from=nginx:latest /etc/nginx/nginx.conf /c',
    'FROM busybox AS unrelated',
  ].join('\n');
  const p = plan(text, {}, 'final');
  const deps = p.stages.map((s) => s.dependencies.map((d) => [d.via, d.value, d.ref]));
  assert.deepEqual(deps[1], [['from', 'base', { kind: 'stage', index: 0 }], ['mount', 'tools', { kind: 'stage', index: 2 }]]);
  assert.deepEqual(deps[3], [
    ['from', 'scratch', { kind: 'scratch' }],
    ['copy', 'DEPS', { kind: 'stage', index: 1 }],
    ['copy', '2', { kind: 'stage', index: 2 }],
    ['copy', 'nginx:latest', { kind: 'image', ref: 'nginx:latest' }],
  ]);
  assert.equal(p.target.name, 'final');
  assert.deepEqual(p.order.map((s) => s.name), ['base', 'tools', 'deps', 'final']);
  assert.deepEqual(p.stages.map((s) => s.reachable), [true, true, true, true, false]);
  assert.equal(plan(text).target.name, 'unrelated', 'the last stage is the default target');
  assert.deepEqual(resolveStageRef(p, 'Tools'), { kind: 'stage', index: 2 });
  assert.deepEqual(resolveStageRef(p, '1'), { kind: 'stage', index: 1 });
  assert.deepEqual(resolveStageRef(p, '1', { index: false }), { kind: 'image', ref: '1' });
  assert.deepEqual(resolveStageRef(p, 'alpine:3'), { kind: 'image', ref: 'alpine:3' });
  assert.throws(() => resolveStageRef(p, '9'), /invalid stage index 9/);
  assert.deepEqual(plan(text).order.map((s) => s.name), ['unrelated']);
});

test('COPY --from expands global ARGs only', () => {
  const p = plan('ARG SRC=builder\nFROM a AS builder\nFROM b\nARG LOCAL=builder\nCOPY --from=$SRC /x /x\nCOPY --from=${LOCAL:-img} /y /y\n');
  assert.deepEqual(p.stages[1].dependencies.slice(1).map((d) => d.ref), [{ kind: 'stage', index: 0 }, { kind: 'image', ref: 'img' }]);
  const { out } = runStage(p, p.stages[1]);
  assert.deepEqual(out.slice(1).map((i) => (i.kind === 'COPY' ? i.from : undefined)), ['builder', 'img']);
});

const semanticErrors: [string, string, Record<string, string>?, string?][] = [
  ['FROM a AS x\nCOPY --from=x /a /b', 'Dockerfile:2: circular dependency detected on stage: x'],
  ['FROM a AS x\nCOPY --from=y /a /b\nFROM b AS y\nCOPY --from=x /c /d', 'Dockerfile:'],
  ['FROM a\nCOPY --from=5 /a /b', 'Dockerfile:2: invalid stage index 5'],
  ['FROM a AS x\nFROM b AS X', 'Dockerfile:2: duplicate stage name "x"'],
  ['FROM a', 'Dockerfile: target stage "nope" could not be found', {}, 'nope'],
  ['ARG B\nFROM $B', 'Dockerfile:2: base name ($B) should not be blank'],
  ['FROM --platform=$NOPE a', 'Dockerfile:1: empty platform value from expression $NOPE'],
  ['FROM a\nARG X\nWORKDIR ${X:?X is required}', 'Dockerfile:3: failed to process "${X:?X is required}": X: X is required'],
  ['FROM a\nVOLUME $EMPTY', 'Dockerfile:2: VOLUME specified can not be an empty string'],
  ['FROM a\nENV A=${B', 'Dockerfile:2: failed to process "${B": unsupported modifier (\ufffd) in substitution'],
];

test('semantic errors carry the line of the instruction that causes them', () => {
  for (const [text, want, args, target] of semanticErrors) {
    assert.throws(() => {
      const p = plan(text, args ?? {}, target);
      for (const s of p.stages) runStage(p, s);
    }, (err: unknown) => {
      assert.ok(err instanceof DockerfileError, `${JSON.stringify(text)}: ${String(err)}`);
      assert.ok(err.message.startsWith(want), `${err.message} should start with ${want}`);
      return true;
    });
  }
});

test('variables are expanded exactly in the instructions BuildKit expands them in', () => {
  const text = [
    'FROM a',
    'ARG P=8080 U=app D=/data S=SIGTERM',
    'ENV WHO=world',
    'LABEL greeting="hello $WHO" "$U.name"=x',
    'EXPOSE 80 $P "$P/udp"',
    'VOLUME $D ["/logs"]',
    'USER $U:$U',
    'WORKDIR $D/$U',
    'STOPSIGNAL $S',
    'COPY --chown=$U:$U --chmod=$P src/$U ${D}/',
    'COPY <<EOF <<"RAW" /etc/',
    'hello $WHO "quoted" \\$escaped',
    'EOF',
    'raw $WHO',
    'RAW',
    'ADD --checksum=$S ./$U.tar /opt/$U/',
    'RUN --mount=type=cache,target=$D/cache,id=$U echo $WHO',
    'CMD echo $WHO',
    'ENTRYPOINT ["echo", "$WHO"]',
    'SHELL ["/bin/$U"]',
    'HEALTHCHECK CMD check $WHO',
    'ONBUILD RUN echo $WHO',
    'MAINTAINER $U',
  ].join('\n');
  const p = plan(text);
  const out = runStage(p, p.stages[0]).out;
  const get = (kind: Instruction['kind'], n = 0) => out.filter((i) => i.kind === kind)[n];
  assert.deepEqual(field(get('LABEL')), [{ key: 'greeting', value: 'hello world' }, { key: 'app.name', value: 'x' }]);
  // sorted as written (BuildKit sorts before expanding), then expanded and split
  assert.deepEqual(field(get('EXPOSE')), ['8080/udp', '8080', '80']);
  assert.deepEqual(field(get('USER')), 'app:app');
  assert.deepEqual(field(get('WORKDIR')), '/data/app');
  assert.deepEqual(field(get('STOPSIGNAL')), 'SIGTERM');
  const c0 = get('COPY', 0);
  assert.ok(c0.kind === 'COPY');
  if (c0.kind === 'COPY') assert.deepEqual([c0.chown, c0.chmod, c0.sources, c0.dest], ['app:app', '8080', ['src/app'], '/data/']);
  const c1 = get('COPY', 1);
  if (c1.kind === 'COPY') {
    assert.deepEqual(c1.contents, [
      { path: 'EOF', data: 'hello world "quoted" $escaped\n', expand: true },
      { path: 'RAW', data: 'raw $WHO\n', expand: false },
    ]);
  }
  const add = get('ADD');
  if (add.kind === 'ADD') assert.deepEqual([add.checksum, add.sources, add.dest], ['SIGTERM', ['./app.tar'], '/opt/app/']);
  const run = get('RUN');
  if (run.kind === 'RUN') {
    assert.deepEqual(run.mountSpecs, [{ type: 'cache', target: '/data/cache', id: 'app', readonly: false }]);
    assert.deepEqual(run.command.args, ['echo $WHO']);
  }
  const cmd = get('CMD');
  if (cmd.kind === 'CMD') assert.deepEqual(cmd.command.args, ['echo $WHO']);
  const ep = get('ENTRYPOINT');
  if (ep.kind === 'ENTRYPOINT') assert.deepEqual(ep.command.args, ['echo', '$WHO']);
  const sh = get('SHELL');
  if (sh.kind === 'SHELL') assert.deepEqual(sh.shell, ['/bin/$U']);
  const hc = get('HEALTHCHECK');
  if (hc.kind === 'HEALTHCHECK') assert.deepEqual(hc.test, ['CMD-SHELL', 'check $WHO']);
  const ob = get('ONBUILD');
  if (ob.kind === 'ONBUILD') assert.equal(ob.expression, 'RUN echo $WHO');
  const mt = get('MAINTAINER');
  if (mt.kind === 'MAINTAINER') assert.equal(mt.maintainer, '$U');
  const vol = get('VOLUME');
  assert.deepEqual(field(vol), ['/data', '[/logs]'], 'a shell-form VOLUME word keeps its brackets, loses its quotes');
});

test('the escape directive applies to expansion; heredoc contents always use backslash', () => {
  const p = plan('# escape=`\nFROM a\nARG X=1\nWORKDIR /a`$X/$X\nCOPY <<EOF /f\n`$X \\$X\nEOF\n');
  const out = runStage(p, p.stages[0]).out;
  assert.equal(field(out[1]), '/a$X/1');
  const c = out[2];
  if (c.kind === 'COPY') assert.equal(c.contents[0].data, '`1 $X\n');
});

test('preview expands without changing the scope', () => {
  const p = plan('FROM a\nENV X=1\n');
  const scope = createScope(p);
  const env = p.stages[0].instructions[0];
  assert.deepEqual(field(scope.preview(env)), [{ key: 'X', value: '1' }]);
  assert.equal(scope.get('X'), undefined);
  scope.step(env);
  assert.equal(scope.get('X'), '1');
  assert.equal(scope.expand('$X-${Y:-y}'), '1-y');
});

test('RUN, CMD and ENTRYPOINT become argv the BuildKit way, heredocs included', () => {
  const df = parseDockerfile([
    'FROM a',
    'RUN echo hi',
    'RUN ["echo", "hi"]',
    'RUN <<EOF',
    'echo one',
    'EOF',
    'RUN <<-EOF',
    '\t#!/usr/bin/env python3',
    '\tprint("hi")',
    '\tEOF',
    'RUN <<A cat > /x && <<B cat > /y',
    'a',
    'A',
    'b',
    'B',
    'CMD top -b',
  ].join('\n'));
  const runs = df.instructions.filter((i) => i.kind === 'RUN');
  const shell = ['/bin/bash', '-c'];
  assert.deepEqual(runs.map((r) => (r.kind === 'RUN' ? runCommand(r, shell) : undefined)), [
    { args: ['/bin/bash', '-c', 'echo hi'] },
    { args: ['echo', 'hi'] },
    { args: ['/bin/bash', '-c', 'echo one\n'] },
    { args: ['/dev/pipes/EOF'], inlineFile: { dir: '/dev/pipes/', name: 'EOF', data: '#!/usr/bin/env python3\nprint("hi")\n', mode: 0o755 } },
    { args: ['/bin/bash', '-c', '<<A cat > /x && <<B cat > /y\na\nA\nb\nB'] },
  ]);
  const cmd = df.instructions[df.instructions.length - 1];
  if (cmd.kind === 'CMD') assert.deepEqual(commandArgs(cmd.command), ['/bin/sh', '-c', 'top -b']);
  assert.equal(resolveWorkdir('/a', 'b/../c'), '/a/c');
  assert.equal(resolveWorkdir('/a', '/x/./y/'), '/x/y');
  assert.equal(resolveWorkdir('', 'rel'), '/rel');
});
