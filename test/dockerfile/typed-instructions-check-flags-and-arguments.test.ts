// Typed instructions: the fields each instruction gets from its flags and arguments, and the
// errors BuildKit's instruction parser reports (unknown instruction, bad flag, argument counts,
// no FROM), each one line with file:line; exec forms cut short are shell form, as in BuildKit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseDockerfile, parseOnbuildTrigger, parseMount, DockerfileError, MountError, jsonPrefixState, parseGoDuration,
  type Instruction,
} from '../../src/dockerfile/index.js';
import { KeelError } from '../../src/util/errors.js';

function only<K extends Instruction['kind']>(text: string, kind: K): Extract<Instruction, { kind: K }> {
  const df = parseDockerfile('FROM base\n' + text);
  const found = df.instructions.filter((i) => i.kind === kind);
  assert.equal(found.length, 1, `one ${kind} in ${JSON.stringify(text)}`);
  return found[0] as Extract<Instruction, { kind: K }>;
}

test('FROM: image, stage name (lower-cased), platform', () => {
  const df = parseDockerfile('ARG X\nFROM --platform=linux/arm64 golang:1.21 AS Build\nFROM build\n');
  const [, a, b] = df.instructions;
  assert.equal(a.kind, 'FROM');
  if (a.kind !== 'FROM' || b.kind !== 'FROM') return;
  assert.deepEqual([a.image, a.stageName, a.platform, a.startLine], ['golang:1.21', 'build', 'linux/arm64', 2]);
  assert.deepEqual([b.image, b.stageName, b.platform], ['build', undefined, undefined]);
  assert.ok(df.warnings.some((w) => w.line === 2 && /lowercase/.test(w.message)));
});

test('RUN: shell and exec forms, mounts, network, security, devices, heredoc files', () => {
  const r = only('RUN --mount=type=cache,target=/c,sharing=locked --mount=type=secret,id=tok --network=none --security=insecure make all', 'RUN');
  assert.deepEqual(r.command, { form: 'shell', args: ['make all'], files: [] });
  assert.deepEqual(r.mounts, ['type=cache,target=/c,sharing=locked', 'type=secret,id=tok']);
  assert.deepEqual(r.mountSpecs, [
    { type: 'cache', target: '/c', sharing: 'locked', readonly: false },
    { type: 'secret', id: 'tok', readonly: false },
  ]);
  assert.equal(r.network, 'none');
  assert.equal(r.security, 'insecure');
  assert.deepEqual(only('RUN ["echo", "a b"]', 'RUN').command, { form: 'exec', args: ['echo', 'a b'], files: [] });
  const h = only('RUN <<EOF bash\nset -e\nEOF', 'RUN');
  assert.deepEqual(h.command, { form: 'shell', args: ['<<EOF bash'], files: [{ name: 'EOF', data: 'set -e\n', chomp: false }] });
  assert.deepEqual([h.startLine, h.endLine], [2, 4]);
});

test('CMD, ENTRYPOINT, SHELL', () => {
  assert.deepEqual(only('CMD ["-c"]', 'CMD').command, { form: 'exec', args: ['-c'], files: [] });
  assert.deepEqual(only('CMD echo $HOME', 'CMD').command, { form: 'shell', args: ['echo $HOME'], files: [] });
  assert.deepEqual(only('ENTRYPOINT []', 'ENTRYPOINT').command, { form: 'exec', args: [], files: [] });
  assert.deepEqual(only('SHELL ["powershell", "-command"]', 'SHELL').shell, ['powershell', '-command']);
});

test('HEALTHCHECK: test in image-config form, durations in nanoseconds, retries', () => {
  const h = only('HEALTHCHECK --interval=5m --timeout=3s --start-period=1.5s --start-interval=200ms --retries=4 CMD curl -f http://x/ || exit 1', 'HEALTHCHECK');
  assert.deepEqual(h.test, ['CMD-SHELL', 'curl -f http://x/ || exit 1']);
  assert.deepEqual([h.interval, h.timeout, h.startPeriod, h.startInterval, h.retries], [300e9, 3e9, 1.5e9, 200e6, 4]);
  assert.deepEqual(only('HEALTHCHECK CMD ["/bin/check", "-q"]', 'HEALTHCHECK').test, ['CMD', '/bin/check', '-q']);
  assert.deepEqual(only('HEALTHCHECK none', 'HEALTHCHECK').test, ['NONE']);
  assert.equal(only('HEALTHCHECK --interval=0s CMD x', 'HEALTHCHECK').interval, 0);
});

test('ENV and LABEL: pairs (raw), legacy form flagged', () => {
  const e = only('ENV A=1 B="two words" C=x\\ y', 'ENV');
  assert.deepEqual(e.pairs, [{ key: 'A', value: '1' }, { key: 'B', value: '"two words"' }, { key: 'C', value: 'x\\ y' }]);
  assert.equal(e.legacy, false);
  const l = only('ENV PATH /usr/local/bin:$PATH', 'ENV');
  assert.deepEqual([l.pairs, l.legacy], [[{ key: 'PATH', value: '/usr/local/bin:$PATH' }], true]);
  assert.deepEqual(only('LABEL "com.example.vendor"="ACME Inc" version=1.0', 'LABEL').pairs, [
    { key: '"com.example.vendor"', value: '"ACME Inc"' }, { key: 'version', value: '1.0' },
  ]);
});

test('ARG: several definitions, with and without defaults', () => {
  const a = parseDockerfile('ARG A B=2 C="3 4" D=\nFROM x').instructions[0];
  assert.equal(a.kind, 'ARG');
  if (a.kind === 'ARG') assert.deepEqual(a.definitions, [{ key: 'A' }, { key: 'B', value: '2' }, { key: 'C', value: '"3 4"' }, { key: 'D', value: '' }]);
});

test('COPY and ADD: sources, heredoc contents, destination and every flag', () => {
  const c = only('COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=*.txt a b/ /dst/', 'COPY');
  assert.deepEqual(
    [c.sources, c.dest, c.from, c.chown, c.chmod, c.link, c.parents, c.exclude],
    [['a', 'b/'], '/dst/', 'build', 'app:app', '0755', true, true, ['*.md', '*.txt']],
  );
  const h = only('COPY <<-EOT <<"RAW" x /d/\n\tindented $A\n\tEOT\nraw $A\nRAW', 'COPY');
  assert.deepEqual(h.sources, ['x']);
  assert.deepEqual(h.contents, [
    { path: 'EOT', data: 'indented $A\n', expand: true },
    { path: 'RAW', data: 'raw $A\n', expand: false },
  ]);
  const a = only('ADD --keep-git-dir --checksum=sha256:0123 --unpack=false --link=false https://x/y.tgz /opt/', 'ADD');
  assert.deepEqual([a.sources, a.keepGitDir, a.checksum, a.unpack, a.link], [['https://x/y.tgz'], true, 'sha256:0123', false, false]);
  assert.deepEqual(only('COPY ["a b", "c d", "/e f/"]', 'COPY').sources, ['a b', 'c d']);
});

test('EXPOSE sorted, VOLUME, USER, WORKDIR, STOPSIGNAL, MAINTAINER', () => {
  assert.deepEqual(only('EXPOSE 8080 443/tcp 80', 'EXPOSE').ports, ['443/tcp', '80', '8080']);
  assert.deepEqual(only('VOLUME ["/var/log", "/data"]', 'VOLUME').paths, ['/var/log', '/data']);
  assert.equal(only('USER app:staff', 'USER').user, 'app:staff');
  assert.equal(only('WORKDIR /path with space', 'WORKDIR').path, '/path with space');
  assert.equal(only('STOPSIGNAL SIGQUIT', 'STOPSIGNAL').signal, 'SIGQUIT');
  assert.equal(only('MAINTAINER me <me@x>', 'MAINTAINER').maintainer, 'me <me@x>');
});

test('ONBUILD records the trigger expression and parses the trigger', () => {
  const o = only('ONBUILD COPY --from=build /a /b', 'ONBUILD');
  assert.equal(o.expression, 'COPY --from=build /a /b');
  assert.equal(o.trigger.kind, 'COPY');
  const h = only('ONBUILD RUN <<EOF\necho hi\nEOF', 'ONBUILD');
  assert.equal(h.expression, 'RUN <<EOF\necho hi\nEOF');
  assert.equal(h.trigger.kind, 'RUN');
  const t = parseOnbuildTrigger(h.expression);
  assert.equal(t.kind, 'RUN');
  if (t.kind === 'RUN') assert.deepEqual(t.command.files, [{ name: 'EOF', data: 'echo hi\n', chomp: false }]);
  assert.throws(() => parseOnbuildTrigger('FROM x'), /FROM isn't allowed as an ONBUILD trigger/);
});

test('the check and syntax directives are reported', () => {
  const df = parseDockerfile('# syntax=docker/dockerfile:1.7\n# check=skip=JSONArgsRecommended,StageNameCasing;error=true\nFROM a');
  assert.equal(df.syntax, 'docker/dockerfile:1.7');
  assert.deepEqual(df.checks, { skip: ['JSONArgsRecommended', 'StageNameCasing'], error: true });
  assert.deepEqual(parseDockerfile('# check=skip=all\nFROM a').checks, { skip: ['all'], error: false });
});

const errorCases: [string, string][] = [
  ['FROM a\nRUNN make', 'Dockerfile:2: unknown instruction: RUNN (did you mean RUN?)'],
  ['FROM a\nfrobnicate x', 'Dockerfile:2: unknown instruction: frobnicate'],
  ['FROM a\nCOPY --form=x a b', 'Dockerfile:2: unknown flag: form (did you mean from?)'],
  ['FROM a\nUSER --x=1 bob', 'Dockerfile:2: unknown flag: x'],
  ['FROM a\nCOPY --from a b', 'Dockerfile:2: missing a value on flag: from'],
  ['FROM a\nCOPY --link=maybe a b', 'Dockerfile:2: expecting boolean value for flag link, not: maybe'],
  ['FROM a\nCOPY --link= a b', 'Dockerfile:2: missing a value on flag: link'],
  ['FROM a\nCOPY --from=a --from=b x y', 'Dockerfile:2: duplicate flag specified: from'],
  ['FROM a\nRUN --network=bridge x', 'Dockerfile:2: unsupported network mode "bridge" (use default, none or host)'],
  ['FROM a\nRUN --mount=type=nfs,target=/x x', 'Dockerfile:2: unsupported mount type "nfs"'],
  ['FROM a\nRUN --mount=target=/x,bogus=1 x', "Dockerfile:2: unexpected key 'bogus' in 'bogus=1'"],
  ['RUN make', 'Dockerfile:1: no build stage in current context: RUN comes before the first FROM'],
  ['ARG A\nENV B=1\nFROM x', 'Dockerfile:2: no build stage in current context: ENV comes before the first FROM'],
  ['ARG A=1', 'Dockerfile:1: the Dockerfile has no FROM instruction: no stages to build'],
  ['FROM a b', 'Dockerfile:1: FROM requires either one or three arguments'],
  ['FROM a AS 1st', 'Dockerfile:1: invalid name for build stage: "1st", name can\'t start with a number or contain symbols'],
  ['FROM a\nCOPY onlyone', 'Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined'],
  ['FROM a\nCOPY a <<EOF\nx\nEOF', 'Dockerfile:2: COPY cannot accept a heredoc as a destination'],
  ['FROM a\nWORKDIR', 'Dockerfile:2: WORKDIR requires exactly one argument'],
  ['FROM a\nEXPOSE', 'Dockerfile:2: EXPOSE requires at least one argument'],
  ['FROM a\nVOLUME []', 'Dockerfile:2: VOLUME requires at least one argument'],
  ['FROM a\nSHELL /bin/bash -c', 'Dockerfile:2: SHELL requires the arguments to be in JSON form'],
  ['FROM a\nENV =x', 'Dockerfile:2: ENV names can not be blank'],
  ['FROM a\nARG =x', 'Dockerfile:2: ARG names can not be blank'],
  ['FROM a\nHEALTHCHECK CONNECT TCP 7000', 'Dockerfile:2: Unknown type "CONNECT" in HEALTHCHECK (try CMD)'],
  ['FROM a\nHEALTHCHECK NONE x', 'Dockerfile:2: HEALTHCHECK NONE takes no arguments'],
  ['FROM a\nHEALTHCHECK CMD', 'Dockerfile:2: Missing command after HEALTHCHECK CMD'],
  ['FROM a\nHEALTHCHECK --interval=5 CMD x', 'Dockerfile:2: time: missing unit in duration "5"'],
  ['FROM a\nHEALTHCHECK --interval=10us CMD x', 'Dockerfile:2: Interval "interval" cannot be less than 1ms'],
  ['FROM a\nHEALTHCHECK --retries=-1 CMD x', 'Dockerfile:2: --retries cannot be negative (-1)'],
  ['FROM a\nONBUILD ONBUILD RUN x', "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"],
  ['FROM a\nONBUILD FROM x', "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"],
  ['FROM a\nONBUILD', 'Dockerfile:2: ONBUILD requires at least one argument'],
  ['# check=bogus\nFROM a', 'Dockerfile:1: invalid check option "bogus"'],
  ['# check=error=maybe\nFROM a', 'Dockerfile:1: failed to parse check option "error=maybe": invalid syntax'],
];

test('instruction errors are one line with file:line and what is wrong', () => {
  for (const [text, want] of errorCases) {
    assert.throws(() => parseDockerfile(text), (err: unknown) => {
      assert.ok(err instanceof DockerfileError && err instanceof KeelError, `${JSON.stringify(text)}: ${String(err)}`);
      assert.equal(err.message, want);
      assert.ok(!err.message.includes('\n'));
      return true;
    }, JSON.stringify(text));
  }
});

test('an exec form cut short is shell form, as in BuildKit, with a warning naming the line', () => {
  const cases: [string, Instruction['kind'], string][] = [
    ['RUN ["echo", "hi"', 'RUN', '["echo", "hi"'],
    ['RUN ["a', 'RUN', '["a'],
    ['CMD ["echo", "hi"', 'CMD', '["echo", "hi"'],
    ['ENTRYPOINT ["x",', 'ENTRYPOINT', '["x",'],
  ];
  for (const [line, kind, rest] of cases) {
    const df = parseDockerfile(`FROM a\n${line}`);
    const i = df.instructions[1]!;
    assert.equal(i.kind, kind);
    assert.ok('command' in i);
    assert.deepEqual(i.command, { form: 'shell', args: [rest], files: [] }, line);
    assert.deepEqual(df.warnings.map((w) => `${w.file}:${w.line}: ${w.message}`), [`Dockerfile:2: ${kind}: unterminated JSON array, so this is shell form (as in BuildKit): ${rest}`]);
  }
  const copy = only('FROM a\nCOPY ["a", \\\n "b"', 'COPY');
  assert.deepEqual(copy.sources, ['["a",']);
  assert.equal(copy.dest, '"b"');
});

test('a shell test starting with [ is not mistaken for an unterminated exec form', () => {
  for (const text of ['RUN [ -f /x ] && echo y', 'RUN [ "$A" = "b" ] || exit 1', 'RUN [[ -n $X ]]', 'CMD [ 1 -eq 1 ]']) {
    const i = parseDockerfile('FROM a\n' + text).instructions[1];
    assert.ok(i.kind === 'RUN' || i.kind === 'CMD');
  }
  assert.deepEqual(
    ['["a"]', '["a"', '[', '[ -f x ]', '{"a":', '["\\u00', '[1e', '[tr', '[tx'].map(jsonPrefixState),
    ['complete', 'incomplete', 'incomplete', 'invalid', 'incomplete', 'incomplete', 'incomplete', 'incomplete', 'invalid'],
  );
});

test('--mount values parse into typed mounts with BuildKit defaults', () => {
  assert.deepEqual(parseMount('type=bind,source=/src,target=/dst', (w) => w), { type: 'bind', source: '/src', target: '/dst', readonly: true });
  assert.deepEqual(parseMount('type=bind,target=/dst,rw'), { type: 'bind', target: '/dst', readonly: false });
  assert.deepEqual(parseMount('type=cache,target=$T,mode=0700,uid=1000', (w) => w.replace('$T', '/c')), {
    type: 'cache', target: '/c', mode: 0o700, uid: 1000, readonly: false, id: '/c',
  });
  assert.deepEqual(parseMount('type=secret,id=npmrc', (w) => w), { type: 'secret', id: 'npmrc', target: '/run/secrets/npmrc', readonly: false });
  assert.deepEqual(parseMount('type=tmpfs,target=/t,size=64m', (w) => w), { type: 'tmpfs', target: '/t', size: 64 * 1024 * 1024, readonly: false });
  assert.deepEqual(parseMount('"type=bind","target=/a,b"'), { type: 'bind', target: '/a,b', readonly: true });
  assert.throws(() => parseMount('type=cache', (w) => w), (e: unknown) => e instanceof MountError && /requires a target/.test(e.message));
  assert.throws(() => parseMount('type=bind,from=$STAGE,target=/x'), /doesn't support variable expansion/);
});

test('Go durations convert to nanoseconds', () => {
  assert.deepEqual(['0', '1h2m3s', '1.5s', '300ms', '10us', '10µs', '-2m', '.5h'].map(parseGoDuration), [0, 3723e9, 1.5e9, 300e6, 10e3, 10e3, -120e9, 1800e9]);
  for (const bad of ['', 's', '5', '1x', '1.2.3s', '--1s']) assert.throws(() => parseGoDuration(bad), KeelError, bad);
});
