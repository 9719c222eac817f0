import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { OciLayout, writeLayer, changesFromTree, decompress, createCompressor, MediaType, applyLayerBlob } from '../../src/layers/index.js';
import { tempDir, busyboxRootfs, collect, chunks, which, snapshot, diffSnapshots } from './helpers.js';

const tmp = tempDir('compress');
const rootfs = busyboxRootfs(tmp);

const hex = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

for (const [compression, tool, mediaType] of [
  ['gzip', 'gzip', MediaType.layerGzip],
  ['zstd', 'zstd', MediaType.layerZstd],
  ['none', undefined, MediaType.layer],
] as const) {
  test(`${compression} layers: blob digest and size match the stored file, diffID matches what ${tool ?? 'cat'} -d gives back`, async (t) => {
    const store = await OciLayout.create(join(tmp, `layout-${compression}`));
    const r = await writeLayer(store, changesFromTree(rootfs), { compression });
    const file = fs.readFileSync(store.blobPath(r.descriptor.digest));
    assert.equal(r.descriptor.mediaType, mediaType);
    assert.equal(r.descriptor.digest, hex(file));
    assert.equal(r.descriptor.size, file.length);
    if (tool && !which(tool)) return t.skip(`${tool} not installed`);
    const plain = tool ? execFileSync(tool, ['-dc'], { input: file, maxBuffer: 1 << 28 }) : file;
    assert.equal(r.diffID, hex(plain));
    assert.equal(r.uncompressedSize, plain.length);
    // The same bytes come back through keel's own decompressor, whatever the media type claims.
    assert.equal(hex(await collect(decompress(chunks(file, 10000)))), r.diffID);
    // And the layer applies to the same tree.
    const out = join(tmp, `applied-${compression}`);
    fs.mkdirSync(out);
    await applyLayerBlob(store, r.descriptor, out, { expectedDiffID: r.diffID });
    assert.deepEqual(diffSnapshots(await snapshot(rootfs), await snapshot(out)), []);
  });
}

test('the uncompressed stream is the same whatever the compression, so the diffID does not depend on it', async () => {
  const ids = new Set<string>();
  for (const c of ['gzip', 'zstd', 'none'] as const) {
    const store = await OciLayout.create(join(tmp, `same-${c}`));
    ids.add((await writeLayer(store, changesFromTree(rootfs), { compression: c, level: c === 'gzip' ? 1 : undefined })).diffID);
  }
  assert.equal(ids.size, 1);
});

test('a failed layer write leaves no blob behind; bad compression levels are refused', async () => {
  const store = await OciLayout.create(join(tmp, 'fail'));
  async function* broken() {
    yield { header: { path: 'ok', type: 'file' as const, mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 } };
    yield { header: { path: 'gone', type: 'file' as const, mode: 0o644, uid: 0, gid: 0, size: 10, mtime: 0 }, source: join(tmp, 'does-not-exist') };
  }
  await assert.rejects(writeLayer(store, broken()), /does-not-exist: cannot read/);
  assert.deepEqual(fs.readdirSync(join(store.root, 'blobs', 'sha256')), []);
  await assert.rejects(createCompressor('gzip', 12), /gzip level must be 0..9/);
  await assert.rejects(createCompressor('zstd', 0), /zstd level must be 1..19/);
  await assert.rejects(collect(decompress(chunks(Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), Buffer.alloc(100, 9)])), 'test')), /gzip data is corrupt/);
});
