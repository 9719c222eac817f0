import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, unpack, tree, tempDir, which, runBundle, cli } from './helpers.js';

const dockerfile = `
FROM scratch
${BUSYBOX_BASE}
COPY app.txt /app/
RUN echo built > /app/built.txt && rm /bin/vi
CMD ["cat", "/app/app.txt", "/app/built.txt"]
`;

function sh(cmd: string, args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

for (const compression of ['gzip', 'zstd'] as const) {
  test(`--output type=oci with ${compression} layers: a layout umoci, skopeo and oci-image-tool accept, that unpacks and runs`, { skip: skipReason }, async () => {
    const store = newStore();
    const out = join(tempDir('out'), 'layout');
    const r = await buildWith(store, context(dockerfile, { 'app.txt': 'app\n' }), { tags: ['example.com/app:1.0', 'app:stable'], outputs: [{ type: 'oci', dest: out }], compression });
    const index = JSON.parse(fs.readFileSync(join(out, 'index.json'), 'utf8'));
    assert.deepEqual(index.manifests.map((m: { annotations: Record<string, string> }) => m.annotations['org.opencontainers.image.ref.name']).sort(), ['1.0', 'stable']);
    const manifest = JSON.parse(fs.readFileSync(join(out, 'blobs/sha256', r.manifestDigest.slice(7)), 'utf8'));
    for (const l of manifest.layers) assert.equal(l.mediaType, `application/vnd.oci.image.layer.v1.tar+${compression}`);
    if (which('oci-image-tool') && compression === 'gzip') { // it predates zstd layers
      const v = sh('oci-image-tool', ['validate', '--type', 'image', '--ref', 'name=1.0', out]);
      assert.equal(v.status, 0, v.out);
    }
    if (which('umoci') && compression === 'gzip') {
      const b = join(tempDir('umoci'), 'bundle');
      const u = sh('umoci', ['unpack', '--image', `${out}:1.0`, b]);
      assert.equal(u.status, 0, u.out);
      assert.equal(fs.readFileSync(join(b, 'rootfs/app/built.txt'), 'utf8'), 'built\n');
      assert.ok(!fs.existsSync(join(b, 'rootfs/bin/vi')));
    }
    if (which('skopeo')) {
      const s = sh('skopeo', ['inspect', '--config', `oci:${out}:1.0`]);
      assert.equal(s.status, 0, s.out);
      assert.deepEqual(JSON.parse(s.out).config.Cmd, ['cat', '/app/app.txt', '/app/built.txt']);
    }
    const bundle = unpack(out, '1.0');
    const run = runBundle(bundle);
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout, 'app\nbuilt\n');
  });
}

test('--output type=oci-archive writes an archive skopeo can read; a failed export leaves no partial file', { skip: skipReason }, async () => {
  const store = newStore();
  const dir = tempDir('archive');
  const file = join(dir, 'image.tar');
  const r = await buildWith(store, context(dockerfile, { 'app.txt': 'app\n' }), { tags: ['arch:v2'], outputs: [{ type: 'oci-archive', dest: file }] });
  assert.ok(fs.statSync(file).size > 100_000);
  if (which('skopeo')) {
    const s = sh('skopeo', ['inspect', `oci-archive:${file}:v2`]);
    assert.equal(s.status, 0, s.out);
    assert.equal(JSON.parse(s.out).Digest, r.manifestDigest);
  }
  await assert.rejects(buildWith(store, context(dockerfile, { 'app.txt': 'app\n' }), { outputs: [{ type: 'oci-archive', dest: join(dir, 'missing-dir/x.tar') }] }), /oci-archive/);
  assert.deepEqual(fs.readdirSync(dir), ['image.tar']);
});

test('with SOURCE_DATE_EPOCH a rebuild from an empty cache is bit-identical', { skip: skipReason }, async () => {
  const ctx = context(dockerfile, { 'app.txt': 'app\n' });
  const outs = [join(tempDir('r1'), 'l'), join(tempDir('r2'), 'l')];
  const digests: string[] = [];
  for (const out of outs) {
    const r = await buildWith(newStore(), ctx, { sourceDateEpoch: 1700000000, outputs: [{ type: 'oci', dest: out }], tags: ['r:1'] });
    digests.push(r.manifestDigest);
    assert.equal(r.config.created, '2023-11-14T22:13:20Z');
    for (const h of r.config.history!) assert.equal(h.created, '2023-11-14T22:13:20Z');
  }
  assert.equal(digests[0], digests[1]);
  const blobs = outs.map((o) => fs.readdirSync(join(o, 'blobs/sha256')).sort());
  assert.deepEqual(blobs[0], blobs[1], 'the same blobs, compressed layers included');
  // Files made during the build carry the epoch, not the build time.
  const t = tree(join(unpack(outs[0]!, '1'), 'rootfs'));
  assert.ok(t.get('app/built.txt'));
  const st = fs.statSync(join(unpack(outs[0]!, '1'), 'rootfs/app/built.txt'));
  assert.equal(st.mtimeMs, 1700000000_000);
});

test('keel-build build prints the digest; -f - reads the Dockerfile from standard input; --iidfile writes it', { skip: skipReason }, () => {
  const store = newStore();
  const ctx = context('FROM scratch\nCOPY app.txt /\n', { 'app.txt': 'x' });
  const iid = join(tempDir('iid'), 'id');
  const r = cli(['build', '--store', store, '-q', '--iidfile', iid, '-f', '-', ctx], { input: 'FROM scratch\nCOPY app.txt /stdin.txt\n' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^sha256:[0-9a-f]{64}\n$/);
  assert.equal(fs.readFileSync(iid, 'utf8'), r.stdout.trim());
  assert.equal(r.stderr, '');
});
