import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, storeLayout, unpack, tree, tempDir, type FileSpec } from './helpers.js';

const store = newStore();

async function built(dockerfile: string, files: Record<string, FileSpec>, tag: string, extra: Parameters<typeof buildWith>[2] = {}) {
  const ctx = context(dockerfile, files);
  const r = await buildWith(store, ctx, { tags: [tag], ...extra });
  const rootfs = join(unpack(storeLayout(store), tag.includes(':') ? tag : `${tag}:latest`), 'rootfs');
  return { r, rootfs, t: tree(rootfs, { skip: (p) => p === 'bin' || p.startsWith('bin/') }), ctx };
}

test('COPY: wildcards, directories copied by content, files into existing directories, symlinks and hardlinks kept, .dockerignore honoured', { skip: skipReason }, async () => {
  const ctxFiles = {
    'src/a.txt': 'a', 'src/b.txt': 'b', 'src/c.md': 'c', 'src/sub/d.txt': { data: 'd', mode: 0o600 },
    'src/link': { symlink: 'a.txt' }, 'src/ignored.log': 'no', 'secret.key': 'no', 'single.txt': 'one',
    '.dockerignore': '*.key\n**/*.log\n',
  };
  const { t, rootfs, ctx } = await built(`
FROM scratch
${BUSYBOX_BASE}
COPY src/*.txt /glob/
COPY src /tree
COPY single.txt /etc
COPY single.txt /renamed.txt
COPY ["src/sub/d.txt", "/json form/"]
RUN ln /tree/a.txt /tree/hard && cp -a /tree /tree2 || true
`, ctxFiles, 'copy1');
  void ctx;
  assert.deepEqual([...t.keys()].filter((k) => k.startsWith('glob/')), ['glob/a.txt', 'glob/b.txt']);
  assert.deepEqual([...t.keys()].filter((k) => k.startsWith('tree/')).sort(), ['tree/a.txt', 'tree/b.txt', 'tree/c.md', 'tree/hard', 'tree/link', 'tree/sub', 'tree/sub/d.txt']);
  assert.equal(t.get('tree/link')?.link, 'a.txt');
  assert.equal(t.get('tree/sub/d.txt')?.mode, 0o600);
  assert.equal(t.get('etc/single.txt')?.type, 'file', 'a file copied to an existing directory goes inside it');
  assert.equal(t.get('renamed.txt')?.type, 'file');
  assert.equal(t.get('json form/d.txt')?.type, 'file');
  assert.equal(t.get('tree/ignored.log'), undefined, '.dockerignore excludes files inside copied directories');
  assert.equal(fs.statSync(join(rootfs, 'tree/hard')).ino, fs.statSync(join(rootfs, 'tree/a.txt')).ino, 'hardlinks survive the layer');
  for (const [, n] of t) assert.deepEqual([n.uid, n.gid], [0, 0], 'context files are owned by root');
  await assert.rejects(buildWith(store, context('FROM scratch\nCOPY secret.key /\n', ctxFiles)), /Dockerfile:2: COPY secret.key \/: "secret.key": no such file or directory in the build context \(or excluded by .dockerignore\)/);
  await assert.rejects(buildWith(store, context('FROM scratch\nCOPY src/a.txt src/b.txt /dir\n', ctxFiles)), /destination must be a directory and end with a \//);
  // A symlink in the context never leads out of it: it resolves as if the context were /.
  const escape = await built('FROM scratch\nCOPY out/hostname /got-it\n', { out: { symlink: '/etc' }, 'etc/hostname': 'inside-the-context\n' }, 'copy-escape');
  assert.equal(fs.readFileSync(join(escape.rootfs, 'got-it'), 'utf8'), 'inside-the-context\n');
});

test('COPY --chown (names from the image), --chmod, --exclude, --parents and heredoc sources', { skip: skipReason }, async () => {
  const { t, rootfs } = await built(`
FROM scratch
${BUSYBOX_BASE}
COPY --chown=app:staff f.txt /owned/
COPY --chown=1234 f.txt /numeric/
COPY --chown=app f.txt /user-only/
COPY --chmod=751 f.txt /moded/
COPY --exclude=*.md --exclude=sub docs/ /docs/
COPY --parents a/b/one.txt a/c/two.txt /parents/
COPY <<EOF /here/greeting.txt
hello $HOSTNAME
EOF
`, { 'f.txt': 'f', 'docs/x.txt': 'x', 'docs/y.md': 'y', 'docs/sub/z.txt': 'z', 'a/b/one.txt': '1', 'a/c/two.txt': '2' }, 'copy2');
  assert.deepEqual([t.get('owned/f.txt')?.uid, t.get('owned/f.txt')?.gid], [1000, 50]);
  assert.deepEqual([t.get('numeric/f.txt')?.uid, t.get('numeric/f.txt')?.gid], [1234, 1234]);
  assert.deepEqual([t.get('user-only/f.txt')?.uid, t.get('user-only/f.txt')?.gid], [1000, 1000]);
  assert.equal(t.get('moded/f.txt')?.mode, 0o751);
  assert.deepEqual([...t.keys()].filter((k) => k.startsWith('docs/')), ['docs/x.txt']);
  assert.deepEqual([...t.keys()].filter((k) => k.startsWith('parents/')), ['parents/a', 'parents/a/b', 'parents/a/b/one.txt', 'parents/a/c', 'parents/a/c/two.txt']);
  assert.equal(fs.readFileSync(join(rootfs, 'here/greeting.txt'), 'utf8'), 'hello \n');
  await assert.rejects(buildWith(store, context(`FROM scratch\n${BUSYBOX_BASE}\nCOPY --chown=nobody f.txt /\n`, { 'f.txt': 'f' })), /COPY --chown=nobody f.txt \/: --chown=nobody: no user "nobody" in the image's \/etc\/passwd/);
});

test('COPY --link makes a layer independent of the one below; a symlinked destination is followed inside the image only', { skip: skipReason }, async () => {
  const { r, t } = await built(`
FROM scratch
${BUSYBOX_BASE}
RUN mkdir -p /real && ln -s /real /linked && ln -s ../../../../../../tmp /escape
COPY --link f.txt /linked-layer/
COPY f.txt /linked/
COPY f.txt /escape/
`, { 'f.txt': 'f' }, 'copy3', { sourceDateEpoch: 1000 });
  assert.equal(t.get('linked-layer/f.txt')?.type, 'file');
  assert.equal(t.get('real/f.txt')?.type, 'file', 'a symlinked directory is followed');
  assert.equal(t.get('tmp/f.txt')?.type, 'file', 'a symlink out of the root resolves inside it');
  // The --link layer is the same whatever is below it (times pinned: a made directory's mtime
  // is the build's time otherwise).
  const other = await buildWith(store, context(`FROM scratch\nCOPY --link f.txt /linked-layer/\n`, { 'f.txt': 'f' }), { sourceDateEpoch: 1000 });
  assert.ok(r.config.rootfs.diff_ids.includes(other.config.rootfs.diff_ids[0]!));
});

test('ADD extracts local tar archives, downloads URLs (with --checksum), and refuses a wrong checksum', { skip: skipReason }, async () => {
  const src = tempDir('tarsrc');
  fs.mkdirSync(join(src, 'pkg/bin'), { recursive: true });
  fs.writeFileSync(join(src, 'pkg/bin/tool'), 'tool');
  fs.chmodSync(join(src, 'pkg/bin/tool'), 0o755);
  const files: Record<string, string | Buffer> = {};
  const tarDir = tempDir('tars');
  execFileSync('tar', ['-C', src, '-czf', join(tarDir, 'pkg.tar.gz'), 'pkg']);
  execFileSync('tar', ['-C', src, '-cf', join(tarDir, 'plain.tar'), 'pkg']);
  files['pkg.tar.gz'] = fs.readFileSync(join(tarDir, 'pkg.tar.gz'));
  files['plain.tar'] = fs.readFileSync(join(tarDir, 'plain.tar'));
  files['notatar.gz'] = fs.readFileSync(join(tarDir, 'pkg.tar.gz')).subarray(0, 10);
  const body = 'downloaded content\n';
  const server = createServer((req, res) => {
    if (req.url === '/redirect') { res.writeHead(302, { location: '/files/data.txt' }); res.end(); return; }
    if (req.url === '/files/data.txt') { res.writeHead(200, { 'last-modified': 'Wed, 01 Jan 2020 00:00:00 GMT' }); res.end(body); return; }
    res.writeHead(404); res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const sum = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  try {
    const { t, rootfs } = await built(`
FROM scratch
${BUSYBOX_BASE}
ADD pkg.tar.gz /opt/
ADD --chown=app:staff plain.tar /plain/
ADD notatar.gz /raw/
ADD --checksum=${sum} http://127.0.0.1:${port}/files/data.txt /dl/
ADD http://127.0.0.1:${port}/redirect /dl/renamed.txt
`, files, 'add1');
    assert.equal(t.get('opt/pkg/bin/tool')?.mode, 0o755);
    assert.equal(t.get('plain/pkg/bin/tool')?.type, 'file');
    assert.deepEqual([t.get('plain/pkg/bin/tool')?.uid, t.get('plain/pkg/bin/tool')?.gid, t.get('plain/pkg')?.uid], [1000, 50, 1000], 'ADD --chown applies to what an archive holds');
    assert.deepEqual([t.get('opt/pkg/bin/tool')?.uid, t.get('opt/pkg/bin/tool')?.gid], [0, 0], 'the archive\'s owners otherwise');
    assert.equal(t.get('raw/notatar.gz')?.type, 'file', 'a file that is not a tar archive is copied as it is');
    assert.equal(fs.readFileSync(join(rootfs, 'dl/data.txt'), 'utf8'), body);
    assert.equal(t.get('dl/data.txt')?.mode, 0o600, 'downloads get mode 600 as with Docker');
    assert.equal(fs.statSync(join(rootfs, 'dl/data.txt')).mtime.toISOString(), '2020-01-01T00:00:00.000Z');
    assert.equal(fs.readFileSync(join(rootfs, 'dl/renamed.txt'), 'utf8'), body);
    await assert.rejects(buildWith(store, context(`FROM scratch\nADD --checksum=sha256:${'0'.repeat(64)} http://127.0.0.1:${port}/files/data.txt /x\n`)), /Dockerfile:2: ADD .*checksum mismatch/);
    await assert.rejects(buildWith(store, context(`FROM scratch\nADD http://127.0.0.1:${port}/missing /x\n`)), /Dockerfile:2: ADD .*HTTP 404/);
  } finally {
    server.close();
  }
});
