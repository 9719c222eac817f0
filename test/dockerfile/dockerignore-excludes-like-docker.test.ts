// .dockerignore as docker documents it: filepath.Match patterns, `**`, `!` exceptions (last match
// wins), `/` and `./` normalised, comments in column 1, parent directories excluding their
// contents, NAME.dockerignore beside a Dockerfile named NAME, and walking a real context tree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DockerIgnore, readDockerignore, loadDockerignore, walkContext, DockerignoreError,
} from '../../src/dockerfile/index.js';

const ig = (text: string) => DockerIgnore.parse(text);

function check(text: string, ignored: string[], kept: string[]): void {
  const m = ig(text);
  for (const p of ignored) assert.equal(m.ignores(p), true, `${JSON.stringify(text)} should ignore ${p}`);
  for (const p of kept) assert.equal(m.ignores(p), false, `${JSON.stringify(text)} should keep ${p}`);
}

test('lines are trimmed and cleaned; comments only in column 1; leading / and ./ dropped', () => {
  assert.deepEqual(readDockerignore('\ufeff# comment\n  # not a comment\r\n/foo/bar\n./foo/baz/\n  !  /keep \n\n a/../b \n!\n/\n.\n'), [
    '# not a comment', 'foo/bar', 'foo/baz', '!keep', 'b', '!', '/', '.',
  ]);
  check('/foo/bar', ['foo/bar', 'foo/bar/x'], ['bar', 'foo', 'x/foo/bar']);
  check('./foo/bar', ['foo/bar'], ['foo']);
  check('.', [], ['a', '.dockerignore']);
});

test('filepath.Match patterns: the documented examples', () => {
  check('*/temp*', ['somedir/temporary.txt', 'somedir/temp', 'somedir/temp/x'], ['temp', 'a/b/temp']);
  check('*/*/temp*', ['somedir/subdir/temporary.txt'], ['somedir/temporary.txt']);
  check('temp?', ['tempa', 'tempb'], ['temp', 'tempab', 'x/tempa']);
  check('*.md\n!README.md', ['a.md', 'docs.md'], ['README.md', 'x/a.md']);
  check('*.md\n!README*.md\nREADME-secret.md', ['a.md', 'README-secret.md'], ['README.md', 'README-1.md']);
  check('*.md\nREADME-secret.md\n!README*.md', ['a.md'], ['README-secret.md', 'README.md']);
  check('file[0-9].txt\nx[!a]y\n[^q]z\na\\*b', ['file3.txt', 'x!y', 'xay', 'pz', 'a*b'], ['filex.txt', 'xby', 'qz', 'axb']);
});

test('** matches any number of directories, including none', () => {
  check('**/*.go', ['main.go', 'a/b/c.go'], ['main.go.txt', 'a/b']);
  check('a/**/b', ['a/b', 'a/x/b', 'a/x/y/b', 'a/x/y/b/c'], ['ab', 'a/xb', 'b']);
  check('foo/**', ['foo/x', 'foo/x/y'], ['foo', 'foox']);
  check('**', ['a', 'a/b'], []);
  check('**/node_modules', ['node_modules', 'a/node_modules/x'], ['xnode_modules', 'a/node_modules_old']);
});

test('an excluded directory excludes its contents unless an exception matches them', () => {
  check('node_modules', ['node_modules', 'node_modules/x/y.js'], ['src/node_modules', 'node_modules_x']);
  check('build\n!build/keep.txt', ['build', 'build/out.o'], ['build/keep.txt']);
  check('*\n!src\n!README.md', ['a', 'lib/x'], ['src', 'src/a/b.ts', 'README.md']);
  check('!keep\n*', ['keep', 'other'], [], );
});

test('mustWalk says which excluded directories may hold re-included files', () => {
  const m = ig('build\n!build/keep.txt\n!**/important\n!docs/*/index.md\ncache');
  assert.equal(m.mustWalk('build'), true);
  assert.equal(m.mustWalk('cache'), true, '**/important may be anywhere');
  const n = ig('build\n!build/keep.txt\n!docs/*/index.md\ncache\ndocs');
  assert.equal(n.mustWalk('cache'), false);
  assert.equal(n.mustWalk('docs'), true);
  assert.equal(n.mustWalk('docs/v1'), true);
  assert.equal(n.mustWalk('docs/v1/sub'), false);
  assert.equal(ig('build').mustWalk('build'), false, 'no exceptions: never walk an excluded directory');
});

test('malformed patterns are one-line errors naming the file', () => {
  assert.throws(() => DockerIgnore.parse('ok\n!\n', '/ctx/.dockerignore'), (e: unknown) =>
    e instanceof DockerignoreError && e.message === '/ctx/.dockerignore: illegal exclusion pattern: "!"');
  for (const bad of ['[', 'a[', '[]', '[a-]', 'a\\', '[^]']) {
    assert.throws(() => DockerIgnore.parse(bad), (e: unknown) => e instanceof DockerignoreError && /syntax error in pattern/.test(e.message), bad);
  }
});

function tree(files: Record<string, string | null>): string {
  const dir = mkdtempSync(join(tmpdir(), 'keel-dockerignore-'));
  for (const [rel, content] of Object.entries(files)) {
    const p = join(dir, rel);
    if (content === null) mkdirSync(p, { recursive: true });
    else {
      mkdirSync(join(p, '..'), { recursive: true });
      writeFileSync(p, content);
    }
  }
  return dir;
}

test('NAME.dockerignore beside the Dockerfile wins over the context .dockerignore', async () => {
  const dir = tree({
    '.dockerignore': 'root-rule\n',
    'docker/app.Dockerfile': 'FROM a\n',
    'docker/app.Dockerfile.dockerignore': 'app-rule\n',
    'docker/other.Dockerfile': 'FROM a\n',
  });
  try {
    const a = await loadDockerignore(dir, join(dir, 'docker/app.Dockerfile'));
    assert.deepEqual(a.patterns.map((p) => p.pattern), ['app-rule']);
    assert.equal(a.source, join(dir, 'docker/app.Dockerfile.dockerignore'));
    const b = await loadDockerignore(dir, join(dir, 'docker/other.Dockerfile'));
    assert.deepEqual(b.patterns.map((p) => p.pattern), ['root-rule']);
    const c = await loadDockerignore(join(dir, 'docker'));
    assert.equal(c.patterns.length, 0);
    assert.equal(c.ignores('anything'), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('walkContext yields kept entries in order, parents first, descending only where exceptions need it', async () => {
  const dir = tree({
    '.dockerignore': '# build output\nbuild\n!build/keep.txt\n*.log\nnode_modules\n**/secret*\n',
    'Dockerfile': 'FROM a\n',
    'b.txt': '', 'a.txt': '', 'x.log': '',
    'src/main.ts': '', 'src/util/u.ts': '', 'src/util/debug.log': '', 'src/secret.key': '',
    'build/out.o': '', 'build/keep.txt': '', 'build/sub/deep.o': '',
    'node_modules/dep/index.js': '',
    'empty': null,
  });
  symlinkSync('src/main.ts', join(dir, 'link'));
  try {
    const m = await loadDockerignore(dir);
    const seen: string[] = [];
    for await (const e of walkContext(dir, m)) seen.push(`${e.type[0]} ${e.path}`);
    assert.deepEqual(seen, [
      'f .dockerignore', 'f Dockerfile', 'f a.txt', 'f b.txt', 'd build', 'f build/keep.txt', 'd empty', 's link',
      'd src', 'f src/main.ts', 'd src/util', 'f src/util/debug.log', 'f src/util/u.ts',
    ], '*.log only matches at the root: * never crosses a /');
    const all: string[] = [];
    for await (const e of walkContext(dir)) all.push(e.path);
    assert.equal(all.length, 21);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
