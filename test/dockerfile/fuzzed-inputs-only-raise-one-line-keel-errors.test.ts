// Fuzzing: thousands of random and mutated Dockerfiles, words and ignore files (seeded, so any
// failure reproduces) go through every entry point — parse, dump, typed instructions, stage
// resolution, expansion of every instruction, word expansion, .dockerignore matching. The only
// errors allowed out are KeelErrors with a one-line message; anything else is a bug.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseAst, dumpAst, parseDockerfile, resolveStages, createScope, runCommand, parseOnbuildTrigger,
  processWord, processWords, DockerIgnore,
} from '../../src/dockerfile/index.js';
import { KeelError } from '../../src/util/errors.js';
import { mulberry32 } from './prng.js';

const SEED = Number(process.env.KEEL_FUZZ_SEED ?? 0x5eed1e55);
const SCALE = Number(process.env.KEEL_FUZZ_SCALE ?? 1);


const rnd = mulberry32(SEED);
const int = (n: number) => Math.floor(rnd() * n);
const pick = <T,>(xs: readonly T[]): T => xs[int(xs.length)];

const ATOMS = [
  'a', 'b', 'x', '/usr/bin', 'app', '1.0', 'EOF', '$A', '${A}', '${A:-d}', '${A:+x}', '${A?}', '${A:?m}', '${A#*/}',
  '${A%%.*}', '${A//a/b}', '${', '}', '$', '"', "'", '\\', '`', '\\\n', '`\n', '[', ']', '{', '}', ',', '=', '--', '-',
  '<<', '<<-', '<<EOF', "<<'EOF'", '3<<X', '#', '# escape=`', '# syntax=x', ' ', '  ', '\t', '\r', '\n', '\u00a0',
  'é', '한', '😀', '\u0000', '\u2028', '["a", "b"]', '[ -f x ]', '["a"', '{"a": 1}', '[1]', '[1e400]', 'AS', 'as',
  '--from=0', '--from=b', '--mount=type=cache,target=/c', '--mount=from=b,target=/t', '--network=none', '--link',
  '--chmod=755', '--platform=$BUILDPLATFORM', '--interval=5s', '--retries=3', '--exclude=*.md', '--parents', '--x',
];
const KEYWORDS = [
  'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER',
  'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL', 'from', 'Run', 'FORM', 'ONBUILD ONBUILD',
];
const TEMPLATES = [
  'FROM busybox', 'FROM ${BASE:-alpine}:$V AS build', 'FROM --platform=$BUILDPLATFORM golang AS b', 'FROM b', 'FROM scratch',
  'ARG A=1 B', 'ARG V=3.18', 'ENV A=1 B="x y" C=$A', 'ENV K v w', 'LABEL a=b "c d"=e', 'EXPOSE 80 $P/udp',
  'RUN echo $A && ls', 'RUN ["echo", "x"]', 'RUN --mount=type=cache,target=/c make', 'RUN <<EOF\necho hi\nEOF',
  'RUN <<-EOF bash\n\tset -e\n\tEOF', 'RUN <<A cat >a && <<B cat >b\n1\nA\n2\nB', 'COPY --from=build /a /b',
  'COPY --from=0 x y', 'COPY <<EOF /f\n$A\nEOF', "COPY <<'EOF' /f\n$A\nEOF", 'ADD --checksum=sha256:1 https://x/y /z',
  'CMD ["a"]', 'CMD a b', 'ENTRYPOINT []', 'VOLUME ["/v"]', 'VOLUME /a $D', 'USER $U:$G', 'WORKDIR /w/$A',
  'ONBUILD RUN x', 'ONBUILD COPY . /app', 'STOPSIGNAL $S', 'HEALTHCHECK --interval=5s CMD curl x', 'HEALTHCHECK NONE',
  'SHELL ["/bin/bash", "-c"]', 'MAINTAINER me', 'RUN a \\\n  b \\\n\n  c', '# comment', '', 'RUN x`\n y',
];

function randomLine(): string {
  if (rnd() < 0.5) return pick(TEMPLATES);
  let s = pick(KEYWORDS);
  const n = int(6);
  for (let i = 0; i < n; i++) s += (rnd() < 0.7 ? ' ' : '') + pick(ATOMS);
  return s;
}

function randomDockerfile(): string {
  const lines: string[] = [];
  if (rnd() < 0.3) lines.push(pick(['# syntax=docker/dockerfile:1', '# escape=`', '# escape=\\', '# check=error=true', '# escape=x']));
  if (rnd() < 0.5) lines.push('ARG BASE=busybox', 'ARG V=1');
  lines.push(rnd() < 0.8 ? 'FROM busybox AS build' : randomLine());
  const n = 1 + int(12);
  for (let i = 0; i < n; i++) lines.push(randomLine());
  return lines.join(rnd() < 0.1 ? '\r\n' : '\n') + (rnd() < 0.5 ? '\n' : '');
}

function mutate(s: string): string {
  let out = s;
  const edits = 1 + int(6);
  for (let e = 0; e < edits; e++) {
    const at = int(out.length + 1);
    switch (int(7)) {
      case 0: out = out.slice(0, at) + pick(ATOMS) + out.slice(at); break;
      case 1: out = out.slice(0, at) + out.slice(at + 1 + int(8)); break;
      case 2: out = out.slice(0, at); break;
      case 3: out = out.slice(0, at) + String.fromCharCode(int(0x80)) + out.slice(at); break;
      case 4: out = out.slice(0, at) + out.slice(int(out.length + 1)); break;
      case 5: out = out.slice(0, at) + String.fromCharCode(0xd800 + int(0x800)) + out.slice(at); break;
      default: out = out + '\n' + randomLine(); break;
    }
  }
  return out;
}

function allowed(err: unknown, what: string): void {
  if (!(err instanceof KeelError)) {
    assert.fail(`${what}: non-KeelError escaped: ${err instanceof Error ? err.stack : String(err)}`);
  }
  assert.ok(!err.message.includes('\n'), `${what}: multi-line message ${JSON.stringify(err.message)}`);
}

function exercise(text: string): void {
  const what = JSON.stringify(text).slice(0, 300);
  try {
    const ast = parseAst(text);
    const dumped = dumpAst(ast);
    assert.equal(dumped.split('\n').length, ast.nodes.length, `${what}: one dump line per instruction`);
  } catch (err) {
    allowed(err, what);
  }
  let df;
  try {
    df = parseDockerfile(text);
  } catch (err) {
    allowed(err, what);
    return;
  }
  for (const i of df.instructions) {
    assert.ok(i.startLine >= 1 && i.endLine >= i.startLine, `${what}: lines of ${i.kind}`);
    if (i.kind === 'ONBUILD') {
      try {
        parseOnbuildTrigger(i.expression);
      } catch (err) {
        allowed(err, what);
      }
    }
  }
  try {
    const plan = resolveStages(df, {
      buildArgs: rnd() < 0.5 ? { A: 'a b', V: '2', U: 'u', P: '80 443', D: '', BASE: '' } : {},
      target: rnd() < 0.2 ? 'build' : undefined,
    });
    const scopes = new Map<number, ReturnType<typeof createScope>>();
    for (const stage of plan.order) {
      const base = stage.base.kind === 'stage' ? scopes.get(stage.base.index) : undefined;
      const scope = base ? base.fork() : createScope(plan, { baseEnv: ['PATH=/bin', 'A=base'] });
      for (const instr of stage.instructions) {
        try {
          const x = scope.step(instr);
          if (x.kind === 'RUN') runCommand(x);
        } catch (err) {
          allowed(err, what);
        }
      }
      scope.runEnv();
      scope.imageEnv();
      scopes.set(stage.index, scope);
    }
  } catch (err) {
    allowed(err, what);
  }
}

test('random and mutated Dockerfiles only ever raise one-line KeelErrors', { timeout: 60_000 }, () => {
  const n = Math.round(2500 * SCALE);
  let parsed = 0;
  for (let i = 0; i < n; i++) {
    const base = randomDockerfile();
    exercise(base);
    exercise(mutate(base));
    try {
      parseDockerfile(base);
      parsed++;
    } catch {
      // counted below
    }
  }
  assert.ok(parsed > n / 10, `the generator must produce enough valid Dockerfiles to reach the semantic layer (${parsed}/${n})`);
});

test('random bytes and pathological shapes only ever raise one-line KeelErrors', { timeout: 60_000 }, () => {
  for (let i = 0; i < Math.round(1000 * SCALE); i++) {
    let s = '';
    const len = int(200);
    for (let j = 0; j < len; j++) s += rnd() < 0.8 ? String.fromCharCode(32 + int(95)) : pick(['\n', '\\', '`', '"', "'", '$', '{', '}', '<<', '\r']);
    exercise(s);
    exercise('FROM a\n' + s);
  }
  for (const shape of [
    'FROM a\n' + 'ONBUILD '.repeat(5000) + 'RUN x',
    'FROM a\nRUN ' + '${A:-'.repeat(3000) + '}'.repeat(3000),
    'FROM a\nENV A=' + '${A:-'.repeat(3000),
    'FROM a\n' + 'RUN x \\\n'.repeat(20000),
    Array.from({ length: 3000 }, (_, k) => `FROM ${k ? 's' + (k - 1) : 'a'} AS s${k}`).join('\n'),
    'FROM a\nCMD ' + '['.repeat(100000),
    'FROM a\nCOPY ' + '<<EOF '.repeat(2000) + '/d\n',
    'FROM a\nRUN ' + 'x'.repeat(1 << 20),
    'FROM a\nLABEL ' + 'k=v '.repeat(20000),
    '# syntax=' + ' '.repeat(200000) + 'x\nFROM a',
    '# escape=' + ' \t'.repeat(100000) + '\nFROM a',
    'FROM a\nRUN <<' + ' '.repeat(200000) + '<',
    'FROM a\nCOPY 3<<-' + '\t'.repeat(200000) + '<x /d',
  ]) {
    const t0 = Date.now();
    exercise(shape);
    assert.ok(Date.now() - t0 < 10_000, `${JSON.stringify(shape.slice(0, 40))}... took ${Date.now() - t0} ms`);
  }
});

test('random words only ever raise one-line KeelErrors from expansion', { timeout: 60_000 }, () => {
  const env = { A: 'a b', B: '', C: 'x/y.z', D: '*?', E: '\\', F: '${A}' };
  for (let i = 0; i < Math.round(20000 * SCALE); i++) {
    let w = '';
    const n = int(10);
    for (let j = 0; j < n; j++) w += pick(ATOMS);
    if (rnd() < 0.3) w = mutate(w);
    const options = {
      escapeToken: rnd() < 0.2 ? '`' : '\\', rawQuotes: rnd() < 0.2, rawEscapes: rnd() < 0.2,
      skipUnsetEnv: rnd() < 0.2, skipProcessQuotes: rnd() < 0.2,
    };
    try {
      processWord(w, env, options);
      processWords(w, env, options);
    } catch (err) {
      allowed(err, JSON.stringify(w));
    }
  }
});

test('random ignore files and paths only ever raise one-line KeelErrors', { timeout: 60_000 }, () => {
  const parts = ['a', 'b', '*', '**', '?', '[a-c]', '[^x]', '[', ']', '\\', '!', '/', '.', '..', 'node_modules', '*.md', ' ', '#'];
  for (let i = 0; i < Math.round(3000 * SCALE); i++) {
    const lines: string[] = [];
    for (let l = int(6); l >= 0; l--) {
      let p = '';
      for (let k = 1 + int(5); k > 0; k--) p += pick(parts);
      lines.push(p);
    }
    let m: DockerIgnore;
    try {
      m = DockerIgnore.parse(lines.join('\n'));
    } catch (err) {
      allowed(err, JSON.stringify(lines));
      continue;
    }
    for (let k = 0; k < 10; k++) {
      let path = '';
      for (let d = 1 + int(4); d > 0; d--) path += (path ? '/' : '') + pick(['a', 'b', 'x', 'node_modules', 'README.md', 'c.md', '.x']);
      m.ignores(path);
      m.mustWalk(path);
    }
  }
});
