import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { OciLayout, writeLayer, writeImage, newImageConfig, changesFromTree, unpackImage, readImage, exportArchive, importArchive, listImages, copyImage } from '../../src/layers/index.js';
import { tempDir, busyboxRootfs, which, snapshot, diffSnapshots, chunks } from './helpers.js';

const tmp = tempDir('interop');
const rootfs = busyboxRootfs(tmp);
const keelLayout = join(tmp, 'keel-layout');

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: opts.env ?? process.env, cwd: opts.cwd, timeout: 60000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const ready = (async () => {
  const store = await OciLayout.create(keelLayout);
  const gz = await writeLayer(store, changesFromTree(rootfs), { compression: 'gzip' });
  const zs = await writeLayer(store, changesFromTree(rootfs), { compression: 'zstd' });
  const config = newImageConfig({ created: '2024-05-06T07:08:09Z', config: { Cmd: ['/bin/echo', 'interop'], Env: ['X=1'] } });
  await writeImage(store, { config, layers: [gz], tag: 'gzip' });
  await writeImage(store, { config, layers: [zs], tag: 'zstd' });
  return store;
})();

test('oci-image-tool validates the layouts keel writes', async (t) => {
  await ready;
  if (!which('oci-image-tool')) return t.skip('oci-image-tool not installed');
  // This oci-image-tool build names the layout type "image" (its --type imageLayout is unimplemented).
  const out = run('oci-image-tool', ['validate', '--type', 'image', '--ref', 'name=gzip', keelLayout]);
  assert.match(out, /Validation succeeded/);
});

test('umoci unpacks what keel writes into the same rootfs keel unpacks', async (t) => {
  await ready;
  if (!which('umoci')) return t.skip('umoci not installed');
  const theirs = join(tmp, 'umoci-bundle');
  run('umoci', ['unpack', '--image', `${keelLayout}:gzip`, theirs]);
  const ours = join(tmp, 'keel-bundle');
  await unpackImage(keelLayout, 'gzip', ours);
  assert.deepEqual(diffSnapshots(await snapshot(join(theirs, 'rootfs')), await snapshot(join(ours, 'rootfs'))), []);
  assert.deepEqual(diffSnapshots(await snapshot(rootfs), await snapshot(join(ours, 'rootfs'))), []);
});

test('skopeo inspects keel layouts (gzip and zstd layers) and copies them; keel reads the copies', async (t) => {
  await ready;
  if (!which('skopeo')) return t.skip('skopeo not installed');
  for (const tag of ['gzip', 'zstd']) {
    const info = JSON.parse(run('skopeo', ['inspect', `oci:${keelLayout}:${tag}`]));
    const ours = await readImage(await OciLayout.open(keelLayout), tag);
    assert.equal(info.Digest, ours.manifestDescriptor.digest);
    assert.deepEqual(info.Layers, ours.manifest.layers.map((l) => l.digest));
    assert.equal(info.Created, '2024-05-06T07:08:09Z');
  }
  const copy = join(tmp, 'skopeo-copy');
  run('skopeo', ['copy', '--dest-compress-format', 'zstd', `oci:${keelLayout}:gzip`, `oci:${copy}:recompressed`]);
  const bundle = join(tmp, 'from-skopeo');
  const r = await unpackImage(copy, 'recompressed', bundle);
  assert.equal(r.image.manifest.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  assert.deepEqual(diffSnapshots(await snapshot(rootfs), await snapshot(join(bundle, 'rootfs'))), []);
});

test('keel copies and unpacks what buildah builds from scratch, and runc runs it', async (t) => {
  if (!which('buildah')) return t.skip('buildah not installed');
  const env = { ...process.env, STORAGE_DRIVER: 'vfs', BUILDAH_ISOLATION: 'chroot' };
  const ctr = run('buildah', ['from', 'scratch'], { env }).trim().split('\n').pop()!;
  const layout = join(tmp, 'buildah-layout');
  try {
    run('buildah', ['copy', ctr, rootfs, '/'], { env });
    run('buildah', ['config', '--cmd', '/bin/sh -c "echo from buildah; id -u"', '--env', 'B=2', '--workingdir', '/tmp', ctr], { env });
    run('buildah', ['commit', ctr, `oci:${layout}:bh`], { env });
  } finally {
    spawnSync('buildah', ['rm', ctr], { env });
  }
  // Copied into another layout (as a builder does for FROM), blobs verified on the way.
  const copied = await OciLayout.create(join(tmp, 'buildah-copy'));
  const img = await copyImage(await OciLayout.open(layout), 'bh', copied, 'base');
  assert.equal((await readImage(copied, 'base')).manifestDescriptor.digest, img.manifestDescriptor.digest);
  const bundle = join(tmp, 'buildah-bundle');
  const r = await unpackImage(copied.root, 'base', bundle);
  // buildah copy does not keep symlink times: compare everything else.
  assert.equal(r.spec.process!.cwd, '/tmp');
  assert.ok(r.spec.process!.env!.includes('B=2'));
  assert.deepEqual(diffSnapshots(await snapshot(rootfs, { mtimes: false }), await snapshot(join(bundle, 'rootfs'), { mtimes: false })), []);
  if (!which('runc')) return t.skip('runc not installed');
  const out = run('runc', ['run', `keel-interop-${process.pid}`], { cwd: bundle });
  assert.equal(out, 'from buildah\n0\n');
});

test('keel unpacks what umoci writes (umoci init, new, insert)', async (t) => {
  if (!which('umoci')) return t.skip('umoci not installed');
  const layout = join(tmp, 'umoci-layout');
  run('umoci', ['init', '--layout', layout]);
  run('umoci', ['new', '--image', `${layout}:u`]);
  run('umoci', ['insert', '--image', `${layout}:u`, rootfs, '/']);
  run('umoci', ['config', '--image', `${layout}:u`, '--config.cmd', '/bin/true']);
  const bundle = join(tmp, 'umoci-made');
  const r = await unpackImage(layout, 'u', bundle);
  assert.deepEqual(r.spec.process!.args, ['/bin/true']);
  assert.deepEqual(diffSnapshots(await snapshot(rootfs, { mtimes: false }), await snapshot(join(bundle, 'rootfs'), { mtimes: false })), []);
});

test('OCI archives: keel exports what skopeo reads, and imports what skopeo writes', async (t) => {
  const store = await ready;
  const archive = join(tmp, 'keel.tar');
  const out = fs.createWriteStream(archive);
  await exportArchive(store, out, { tags: ['zstd'] });
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  // Round trip through keel itself.
  const back = await OciLayout.create(join(tmp, 'imported-own'));
  await importArchive(chunks(fs.readFileSync(archive), 65536), back);
  assert.deepEqual((await listImages(back)).map((i) => i.tag), ['zstd']);
  assert.equal((await readImage(back, 'zstd')).manifestDescriptor.digest, (await readImage(store, 'zstd')).manifestDescriptor.digest);
  if (!which('skopeo')) return t.skip('skopeo not installed');
  const info = JSON.parse(run('skopeo', ['inspect', `oci-archive:${archive}:zstd`]));
  assert.equal(info.Digest, (await readImage(store, 'zstd')).manifestDescriptor.digest);
  const skopeoArchive = join(tmp, 'skopeo.tar');
  run('skopeo', ['copy', `oci:${keelLayout}:gzip`, `oci-archive:${skopeoArchive}:fromskopeo`]);
  const imported = await OciLayout.create(join(tmp, 'imported'));
  await importArchive(chunks(fs.readFileSync(skopeoArchive), 65536), imported);
  const bundle = join(tmp, 'from-archive');
  await unpackImage(imported.root, 'fromskopeo', bundle);
  assert.deepEqual(diffSnapshots(await snapshot(rootfs), await snapshot(join(bundle, 'rootfs'))), []);
});
