// Dockerfile frontend throughput on a large generated Dockerfile: syntax parse, BuildKit dump,
// typed instructions, stage resolution plus expansion of every instruction, and the building
// blocks (word expansion, .dockerignore matching).
//
//   node --import tsx bench/dockerfile-parse.ts [--instructions N] [--runs N]
//
// Each case runs N times (default 5) after a warm-up; the median is reported. Output is Markdown.
import {
  parseAst, dumpAst, parseDockerfile, resolveStages, createScope, processWord, DockerIgnore,
} from '../src/dockerfile/index.js';

const args = process.argv.slice(2);
const opt = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const target = opt('--instructions', 50_000);
const runs = opt('--runs', 5);

/** A realistic mix: multi-stage, ARG/ENV, continuations, JSON forms, flags, heredocs, comments. */
function generate(n: number): string {
  const out: string[] = ['# syntax=docker/dockerfile:1', 'ARG BASE=debian:bookworm', 'ARG VERSION=1.2.3'];
  let count = 0;
  let stage = 0;
  while (count < n) {
    out.push(`FROM \${BASE} AS stage${stage}`, `ARG VERSION`, `ENV APP_HOME=/opt/app${stage} PATH=/opt/app${stage}/bin:$PATH`);
    out.push('# install the toolchain');
    out.push('RUN --mount=type=cache,target=/var/cache/apt apt-get update \\', '    && apt-get install -y --no-install-recommends \\', '       curl ca-certificates git \\', '    && rm -rf /var/lib/apt/lists/*');
    out.push(`WORKDIR $APP_HOME/src`, `COPY --chown=app:app --chmod=644 src/ ./`, `LABEL org.opencontainers.image.version="$VERSION" stage="${stage}"`);
    out.push('RUN <<EOF', 'set -e', 'make -j"$(nproc)" VERSION=$VERSION', 'make install', 'EOF');
    out.push(stage > 0 ? `COPY --from=stage${stage - 1} /opt /opt` : 'COPY README.md /doc/');
    out.push('EXPOSE 8080 8443/tcp', 'USER app:app', 'HEALTHCHECK --interval=30s --timeout=3s CMD ["curl", "-f", "http://localhost:8080/"]');
    out.push('ENTRYPOINT ["/opt/app/bin/server"]', 'CMD ["--port", "8080"]');
    count += 17;
    stage++;
  }
  return out.join('\n') + '\n';
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function time(fn: () => unknown): number {
  fn();
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(ts);
}

const text = generate(target);
const bytes = Buffer.byteLength(text);
const lines = text.split('\n').length;
const df = parseDockerfile(text);
const n = df.instructions.length;

const rows: [string, number, string][] = [];
const add = (name: string, ms: number, unit: string) => rows.push([name, ms, unit]);

const tAst = time(() => parseAst(text));
add('parseAst (syntax)', tAst, `${(bytes / 1e6 / (tAst / 1e3)).toFixed(1)} MB/s, ${Math.round(n / (tAst / 1e3)).toLocaleString()} instr/s`);
const ast = parseAst(text);
const tDump = time(() => dumpAst(ast));
add('dumpAst', tDump, `${Math.round(n / (tDump / 1e3)).toLocaleString()} instr/s`);
const tDf = time(() => parseDockerfile(text));
add('parseDockerfile (syntax + typed)', tDf, `${(bytes / 1e6 / (tDf / 1e3)).toFixed(1)} MB/s, ${Math.round(n / (tDf / 1e3)).toLocaleString()} instr/s`);
const tSem = time(() => {
  const plan = resolveStages(df, { buildArgs: { VERSION: '9.9.9' } });
  for (const s of plan.stages) {
    const scope = createScope(plan, { baseEnv: ['PATH=/usr/bin:/bin'] });
    for (const i of s.instructions) scope.step(i);
  }
});
add('resolveStages + expand every instruction', tSem, `${Math.round(n / (tSem / 1e3)).toLocaleString()} instr/s`);

const env = { HOME: '/root', VERSION: '1.2.3', PATH: '/usr/local/bin:/usr/bin:/bin', NAME: 'keel' };
const words = ['$HOME/src', '${VERSION:-0}', '"${NAME}-${VERSION}.tar.gz"', '${PATH//:/ }', '${VERSION%.*}', 'plain-word', "'single $quoted'"];
const wordReps = 200_000;
const tWords = time(() => {
  for (let i = 0; i < wordReps; i++) processWord(words[i % words.length], env);
});
add(`processWord x${wordReps.toLocaleString()}`, tWords, `${Math.round(wordReps / (tWords / 1e3)).toLocaleString()} words/s`);

const ignore = DockerIgnore.parse('node_modules\n**/*.log\n*.md\n!README.md\nbuild/**\n!build/keep/**\n.git\ncoverage\n**/__pycache__\n');
const paths = ['src/index.ts', 'node_modules/a/b/c.js', 'docs/guide.md', 'README.md', 'build/out/x.o', 'build/keep/a', 'a/b/c/d/e.log', 'lib/__pycache__/m.pyc'];
const pathReps = 200_000;
const tIgnore = time(() => {
  for (let i = 0; i < pathReps; i++) ignore.ignores(paths[i % paths.length]);
});
add(`DockerIgnore.ignores x${pathReps.toLocaleString()}`, tIgnore, `${Math.round(pathReps / (tIgnore / 1e3)).toLocaleString()} paths/s`);

console.log(`Dockerfile: ${n.toLocaleString()} instructions, ${lines.toLocaleString()} lines, ${(bytes / 1e6).toFixed(2)} MB; median of ${runs} runs (node ${process.version})\n`);
console.log('| case | median ms | throughput |');
console.log('|---|---:|---|');
for (const [name, ms, unit] of rows) console.log(`| ${name} | ${ms.toFixed(1)} | ${unit} |`);
