// The syntactic parser and its dump: the s-expression lines BuildKit's parser dumper prints, for
// directives, comments, continuations (both escape characters), heredocs, exec and shell forms,
// flags and every instruction; plus line numbers and the parser's own errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAst, dumpAst, DockerfileError } from '../../src/dockerfile/index.js';

const dump = (text: string) => dumpAst(parseAst(text));

const cases: { name: string; text: string; want: string[] }[] = [
  {
    name: 'FROM forms',
    text: 'FROM scratch\nFROM busybox:1.36 AS build\nFROM --platform=$BUILDPLATFORM golang:1.21 as Tools\nfrom\talpine\n',
    want: [
      '(from "scratch")',
      '(from "busybox:1.36" "AS" "build")',
      '(from ["--platform=$BUILDPLATFORM"] "golang:1.21" "as" "Tools")',
      '(from "alpine")',
    ],
  },
  {
    name: 'shell and exec forms of RUN, CMD, ENTRYPOINT, SHELL',
    text: [
      'FROM a',
      'RUN echo "hello world" && ls',
      'RUN ["echo", "hello world"]',
      'RUN [ -f /x ] && echo present',
      'CMD ["a", "b"]',
      'CMD [ "a" ]',
      'CMD []',
      'CMD a b',
      'ENTRYPOINT ["/bin/sh", "-c", "echo \\"x\\""]',
      'SHELL ["bash", "-o", "pipefail", "-c"]',
      'CMD ["a\\tb", "\\u00e9", "\\u0007"]',
    ].join('\n'),
    want: [
      '(from "a")',
      '(run "echo \\"hello world\\" && ls")',
      '(run "echo" "hello world")',
      '(run "[ -f /x ] && echo present")',
      '(cmd "a" "b")',
      '(cmd "a")',
      '(cmd)',
      '(cmd "a b")',
      '(entrypoint "/bin/sh" "-c" "echo \\"x\\"")',
      '(shell "bash" "-o" "pipefail" "-c")',
      '(cmd "a\\tb" "é" "\\a")',
    ],
  },
  {
    name: 'flags',
    text: [
      'FROM a',
      'COPY --from=build --chown=1:2 --chmod=755 --link a /b',
      'COPY --from="my stage" --parents --exclude=*.txt --exclude=*.md ./x /y/',
      'ADD --keep-git-dir=true --checksum=sha256:abc https://example.com/r.git /src',
      'RUN --mount=type=cache,target=/root/.cache --network=none --security=insecure make',
      'RUN -- --not-a-flag',
      'HEALTHCHECK --interval=5m --timeout=3s CMD curl -f http://localhost/ || exit 1',
    ].join('\n'),
    want: [
      '(from "a")',
      '(copy ["--from=build" "--chown=1:2" "--chmod=755" "--link"] "a" "/b")',
      '(copy ["--from=my stage" "--parents" "--exclude=*.txt" "--exclude=*.md"] "./x" "/y/")',
      '(add ["--keep-git-dir=true" "--checksum=sha256:abc"] "https://example.com/r.git" "/src")',
      '(run ["--mount=type=cache,target=/root/.cache" "--network=none" "--security=insecure"] "make")',
      '(run "--not-a-flag")',
      '(healthcheck ["--interval=5m" "--timeout=3s"] "CMD" "curl -f http://localhost/ || exit 1")',
    ],
  },
  {
    name: 'every other instruction',
    text: [
      'FROM a',
      'LABEL a=b "c d"="e f"',
      'LABEL key value with spaces',
      'MAINTAINER Jane Doe <jane@example.com>',
      'EXPOSE 80 443/tcp 53/udp',
      'ENV A=1 B=2',
      'ENV A 1 2',
      'ENV A="x y" B=x\\ y',
      'ADD a b /c/',
      'COPY ["a b", "/c"]',
      'VOLUME ["/a", "/b"]',
      'VOLUME /a /b',
      'USER 1000:1000',
      'WORKDIR /a b',
      'ARG A B=2 C="3 4"',
      'ONBUILD RUN echo hi',
      'ONBUILD COPY --from=x a b',
      'STOPSIGNAL SIGKILL',
      'HEALTHCHECK NONE',
      'HEALTHCHECK CMD ["curl", "-f", "http://x/"]',
      'run lower case',
      'Run mixed case',
      'FOO bar baz',
    ].join('\n'),
    want: [
      '(from "a")',
      '(label "a" "b" "=" "\\"c d\\"" "\\"e f\\"" "=")',
      '(label "key" "value with spaces" "")',
      '(maintainer "Jane Doe <jane@example.com>")',
      '(expose "80" "443/tcp" "53/udp")',
      '(env "A" "1" "=" "B" "2" "=")',
      '(env "A" "1 2" "")',
      '(env "A" "\\"x y\\"" "=" "B" "x\\\\ y" "=")',
      '(add "a" "b" "/c/")',
      '(copy "a b" "/c")',
      '(volume "/a" "/b")',
      '(volume "/a" "/b")',
      '(user "1000:1000")',
      '(workdir "/a b")',
      '(arg "A" "B=2" "C=\\"3 4\\"")',
      '(onbuild (run "echo hi"))',
      '(onbuild (copy ["--from=x"] "a" "b"))',
      '(stopsignal "SIGKILL")',
      '(healthcheck "NONE")',
      '(healthcheck "CMD" "curl" "-f" "http://x/")',
      '(run "lower case")',
      '(run "mixed case")',
      '(foo "")',
    ],
  },
  {
    name: 'parser directives, comments and whitespace',
    text: '\ufeff# syntax=docker/dockerfile:1\n# escape=`\n\n   FROM a\n\t# indented comment\n  RUN b `\n    c\n',
    want: ['(from "a")', '(run "b     c")'],
  },
  {
    name: 'CRLF line endings and tabs as separators',
    text: 'FROM\ta\r\nRUN\techo\ta\r\nRUN x \\\r\n  y\r\n',
    want: ['(from "a")', '(run "echo\\ta")', '(run "x   y")'],
  },
  {
    name: 'comments and empty lines inside continuations',
    text: 'FROM a\nRUN echo hello \\\n# comment\nworld\nRUN a \\\n\n  b\nRUN c \\\n    # indented comment\n    d\n',
    want: ['(from "a")', '(run "echo hello world")', '(run "a   b")', '(run "c     d")'],
  },
  {
    name: 'an escaped escape character at the end of a line does not continue it',
    text: 'FROM a\nCOPY testfile.txt c:\\\\\nRUN dir c:\\\n',
    want: ['(from "a")', '(copy "testfile.txt" "c:\\\\\\\\")', '(run "dir c:")'],
  },
  {
    name: 'with escape=` a backslash is an ordinary character',
    text: '# escape=`\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\nRUN a `\n b\n',
    want: ['(from "microsoft/nanoserver")', '(copy "testfile.txt" "c:\\\\")', '(run "dir c:\\\\")', '(run "a  b")'],
  },
  {
    name: 'heredocs are read but not dumped (as BuildKit)',
    text: [
      'FROM a',
      'RUN <<EOF',
      'echo hi',
      'EOF',
      'COPY <<-"EOT" <<EOF2 /dst/',
      '\tx',
      '\tEOT',
      'y',
      'EOF2',
      'RUN cat <<EOF > /x && echo done',
      'data',
      'EOF',
      'RUN ["<<NOT"]',
      'USER <<NOT',
    ].join('\n'),
    want: [
      '(from "a")',
      '(run "<<EOF")',
      '(copy "<<-\\"EOT\\"" "<<EOF2" "/dst/")',
      '(run "cat <<EOF > /x && echo done")',
      '(run "<<NOT")',
      '(user "<<NOT")',
    ],
  },
  {
    name: 'directives after an instruction or a plain comment are comments',
    text: '# about this file\n# escape=`\nFROM a\n# escape=`\nRUN a \\\n b\n',
    want: ['(from "a")', '(run "a  b")'],
  },
];

for (const c of cases) {
  test(`dump matches BuildKit's dumper: ${c.name}`, () => {
    assert.deepEqual(dump(c.text).split('\n'), c.want);
  });
}

test('parser directives are recognised only at the top, case-insensitively, each once', () => {
  const ast = parseAst('# Syntax = docker/dockerfile:1.4  \n#ESCAPE=`\n# check=skip=JSONArgsRecommended;error=true\nFROM a\n');
  assert.deepEqual(ast.directives.map((d) => [d.name, d.value, d.line]), [
    ['syntax', 'docker/dockerfile:1.4', 1], ['escape', '`', 2], ['check', 'skip=JSONArgsRecommended;error=true', 3],
  ]);
  assert.equal(ast.escapeToken, '`');
  assert.equal(parseAst('\n# escape=`\nFROM a').escapeToken, '\\', 'an empty line ends the directives');
  assert.equal(parseAst('# unknowndirective=x\n# escape=`\nFROM a').escapeToken, '\\');
  assert.equal(parseAst('# direc \\\n# tive=value\n# escape=`\nFROM a').escapeToken, '\\');
});

test('instructions keep their first and last line, heredoc bodies included', () => {
  const ast = parseAst('# c\n\nFROM a\nRUN a \\\n  b \\\n  c\n\nCOPY <<EOF /x\n1\n2\nEOF\nUSER u\n');
  assert.deepEqual(ast.nodes.map((n) => [n.value, n.startLine, n.endLine]), [
    ['from', 3, 3], ['run', 4, 6], ['copy', 8, 11], ['user', 12, 12],
  ]);
});

test('heredoc names, quoting, chomping and file descriptors follow the shell rules', () => {
  const ast = parseAst([
    'FROM a',
    'RUN 3<<EMPTY', 'EMPTY',
    'RUN "<<NOHEREDOC"',
    'RUN <<-UNINDENT', '\tbaz', '\tquux', '\tUNINDENT',
    "RUN <<-'NOEXPAND'", '\tdon\'t expand $NAME', 'NOEXPAND',
    "RUN <<eo'f'", 'x', 'eof',
    "RUN <<eo\\'f", 'x', "eo'f",
    'RUN <<  EOF', 'EOF',
    'RUN <<$EOF', '$EOF',
    'COPY <<X <<Y /dest', 'Y', 'X', 'X', 'Y',
    'RUN <<COMMENT', '# internal comment', 'echo x # trailing', 'COMMENT',
    'RUN ["<<EOF"]',
  ].join('\n'));
  const docs = ast.nodes.slice(1).map((n) => n.heredocs.map((h) => ({ ...h })));
  assert.deepEqual(docs, [
    [{ name: 'EMPTY', fileDescriptor: 3, expand: true, chomp: false, content: '' }],
    [],
    [{ name: 'UNINDENT', fileDescriptor: 0, expand: true, chomp: true, content: '\tbaz\n\tquux\n' }],
    [{ name: 'NOEXPAND', fileDescriptor: 0, expand: false, chomp: true, content: "\tdon't expand $NAME\n" }],
    [{ name: 'eof', fileDescriptor: 0, expand: false, chomp: false, content: 'x\n' }],
    [{ name: "eo'f", fileDescriptor: 0, expand: true, chomp: false, content: 'x\n' }],
    [{ name: 'EOF', fileDescriptor: 0, expand: true, chomp: false, content: '' }],
    [{ name: '$EOF', fileDescriptor: 0, expand: true, chomp: false, content: '' }],
    [
      { name: 'X', fileDescriptor: 0, expand: true, chomp: false, content: 'Y\n' },
      { name: 'Y', fileDescriptor: 0, expand: true, chomp: false, content: 'X\n' },
    ],
    [{ name: 'COMMENT', fileDescriptor: 0, expand: true, chomp: false, content: '# internal comment\necho x # trailing\n' }],
    [],
  ]);
});

const errorCases: [string, string][] = [
  ['FROM a\nRUN [1, 2]', 'Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only'],
  ['FROM a\nENV foo', 'Dockerfile:2: ENV must have two arguments'],
  ['FROM a\nLABEL a=1 b', 'Dockerfile:2: Syntax error - can\'t find = in "b". Must be of the form: name=value'],
  ['# escape=x\nFROM a', "Dockerfile:1: invalid escape token 'x' does not match ` or \\"],
  ['# escape=`\n# escape=\\\nFROM a', 'Dockerfile:2: only one escape parser directive can be used'],
  ['', 'Dockerfile: file with no instructions'],
  ['# only a comment\n\n', 'Dockerfile: file with no instructions'],
  ['FROM a\nRUN <<EOF\necho\n', 'Dockerfile:2: unterminated heredoc: no line "EOF" ends the here-document before the end of the file'],
  ['FROM a\nCOPY <<A <<B /x\na\nA\nb\n', 'Dockerfile:2: unterminated heredoc: no line "B" ends the here-document before the end of the file'],
];

test('syntax errors are one line with file:line and what is wrong', () => {
  for (const [text, want] of errorCases) {
    assert.throws(() => parseAst(text), (err: unknown) => {
      assert.ok(err instanceof DockerfileError, String(err));
      assert.equal(err.message, want);
      return true;
    }, JSON.stringify(text));
  }
  assert.throws(() => parseAst('FROM a\nRUN [1]', { file: 'ci/app.Dockerfile' }), /^DockerfileError: ci\/app\.Dockerfile:2: /);
});

test('empty continuation lines are accepted with a warning', () => {
  const ast = parseAst('FROM a\nRUN something \\\n\n    following \\\n\n    more\nRUN another \\\n\n    thing\n');
  assert.equal(ast.warnings.length, 2);
  assert.match(ast.warnings[0].message, /Empty continuation line found in: RUN something {5}following {5}more/);
  assert.match(ast.warnings[1].message, /RUN another {5}thing/);
});
