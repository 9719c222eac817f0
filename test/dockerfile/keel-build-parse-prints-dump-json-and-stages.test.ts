// `keel-build parse`: the built CLI prints BuildKit's dump form, typed instructions or resolved
// stages, reads standard input, and reports errors as one line with file:line and exit code 1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, keelBuild, cliEnv, ensureBuilt } from '../foundation/cli.js';

const dockerfile = [
  '# syntax=docker/dockerfile:1',
  'ARG BASE=busybox',
  'FROM ${BASE} AS build',
  'ENV A=1 B="x y"',
  'ENV LEGACY value',
  'RUN --mount=type=cache,target=/c echo $A',
  'COPY <<EOF /hello',
  'hi',
  'EOF',
  'FROM scratch AS final',
  'COPY --from=build /hello /',
  'CMD ["/hello"]',
  '',
].join('\n');

function withFile<T>(text: string, fn: (path: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'keel-parse-'));
  try {
    const p = join(dir, 'Dockerfile');
    writeFileSync(p, text);
    return fn(p);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('parse --dump prints one s-expression per instruction, as BuildKit\'s dumper', () => {
  withFile(dockerfile, (p) => {
    const r = run(keelBuild, ['parse', '--dump', p]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, [
      '(arg "BASE=busybox")',
      '(from "${BASE}" "AS" "build")',
      '(env "A" "1" "=" "B" "\\"x y\\"" "=")',
      '(env "LEGACY" "value" "")',
      '(run ["--mount=type=cache,target=/c"] "echo $A")',
      '(copy "<<EOF" "/hello")',
      '(from "scratch" "AS" "final")',
      '(copy ["--from=build"] "/hello" "/")',
      '(cmd "/hello")',
      '',
    ].join('\n'));
    assert.equal(r.stderr, '');
  });
});

test('parse --json prints the typed instructions with their lines', () => {
  withFile(dockerfile, (p) => {
    const r = run(keelBuild, ['parse', '--json', p]);
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.syntax, 'docker/dockerfile:1');
    assert.deepEqual(doc.instructions.map((i: { kind: string; startLine: number }) => `${i.kind}@${i.startLine}`), [
      'ARG@2', 'FROM@3', 'ENV@4', 'ENV@5', 'RUN@6', 'COPY@7', 'FROM@10', 'COPY@11', 'CMD@12',
    ]);
    assert.deepEqual(doc.instructions[5].contents, [{ path: 'EOF', data: 'hi\n', expand: true }]);
    assert.equal(doc.instructions[5].endLine, 9);
    assert.match(r.stderr, /Dockerfile:5: warning: "ENV key value" is a legacy form/);
  });
});

test('parse --stages resolves global ARGs, references and the build order for a target', () => {
  withFile(dockerfile, (p) => {
    const r = run(keelBuild, ['parse', '--stages', '--build-arg', 'BASE=alpine:3', '--build-arg', 'NOPE=1', '--target', 'final', p]);
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.stages[0].baseName, 'alpine:3');
    assert.deepEqual(doc.stages[1].dependencies[1], { via: 'copy', value: 'build', ref: { kind: 'stage', index: 0 }, line: 11 });
    assert.deepEqual(doc.order, [0, 1]);
    assert.deepEqual(doc.unusedBuildArgs, ['NOPE']);
    assert.match(r.stderr, /build arg NOPE is not used/);
  });
});

test('parse reads standard input with -', () => {
  ensureBuilt();
  const r = spawnSync(keelBuild, ['parse', '-'], { input: 'FROM a\nRUN b\n', env: cliEnv(), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '(from "a")\n(run "b")\n');
});

test('parse errors are one line with file:line and exit code 1', () => {
  withFile('FROM a\nRUNN make\n', (p) => {
    const dump = run(keelBuild, ['parse', '--dump', p]);
    assert.equal(dump.status, 0, 'the dump, like BuildKit\'s, keeps unknown instructions');
    assert.match(dump.stdout, /\(runn ""\)/);
    const r = run(keelBuild, ['parse', '--json', p]);
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, `${p}:2: unknown instruction: RUNN (did you mean RUN?)\n`);
  });
  withFile('FROM a\nRUN <<EOF\nnever ends\n', (p) => {
    const r = run(keelBuild, ['parse', p]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.match(r.stderr, /:2: unterminated heredoc/);
  });
  const missing = run(keelBuild, ['parse', '/nonexistent/Dockerfile']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^parse: cannot read \/nonexistent\/Dockerfile: /);
  const both = run(keelBuild, ['parse', '--dump', '--json', 'x']);
  assert.equal(both.status, 1);
  assert.match(both.stderr, /choose one of --dump, --json and --stages/);
});
