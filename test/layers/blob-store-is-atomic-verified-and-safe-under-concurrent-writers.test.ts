import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { OciLayout, writeLayer, writeImage, readImage, newImageConfig, sha256, type Digest } from '../../src/layers/index.js';
import { tempDir, collect, chunks } from './helpers.js';

const tmp = tempDir('store');

function blobFiles(root: string): string[] {
  return fs.readdirSync(join(root, 'blobs', 'sha256')).sort();
}

test('put is idempotent and atomic: same content, one blob, no temporary files left; wrong expected digest stores nothing', async () => {
  const store = await OciLayout.create(join(tmp, 'put'));
  const a = await store.putBytes('hello');
  const b = await store.putStream(chunks(Buffer.from('hello'), 2));
  assert.deepEqual(a, b);
  assert.equal(a.digest, sha256('hello'));
  assert.deepEqual(blobFiles(store.root), [a.digest.slice(7)]);
  await assert.rejects(store.putBytes('other', { digest: sha256('not other') }), /does not match expected/);
  await assert.rejects(store.putBytes('other', { size: 3 }), /more than the 3 bytes its descriptor says/);
  assert.deepEqual(blobFiles(store.root), [a.digest.slice(7)], 'no blob and no temporary file after a refused put');
  // Creating a layout again keeps its index.
  await store.tag('t', { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: a.digest, size: a.size });
  const again = await OciLayout.create(store.root);
  assert.deepEqual(await again.tags(), ['t']);
});

test('reads are verified: a corrupted or truncated blob is reported, never returned as good', async () => {
  const store = await OciLayout.create(join(tmp, 'verify'));
  const data = Buffer.alloc(3 << 20, 7);
  const { digest, size } = await store.putBytes(data);
  assert.ok((await collect(store.readBlob(digest, size))).equals(data));
  const path = store.blobPath(digest);
  const fd = fs.openSync(path, 'r+');
  fs.writeSync(fd, Buffer.from([8]), 0, 1, 2 << 20);
  fs.closeSync(fd);
  await assert.rejects(collect(store.readBlob(digest, size)), /corrupt blob \(content hashes to sha256:/);
  fs.truncateSync(path, 100);
  await assert.rejects(collect(store.readBlob(digest, size)), /size 100 does not match descriptor size/);
  await assert.rejects(collect(store.readBlob(sha256('absent'))), /missing from/);
  assert.throws(() => store.blobPath('sha256:../../../etc/passwd' as Digest), /not a supported digest/);
});

test('gc removes unreferenced blobs and keeps every blob an image in index.json reaches', async () => {
  const store = await OciLayout.create(join(tmp, 'gc'));
  const layer = await writeLayer(store, [{ header: { path: 'f', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 } }]);
  const img = await writeImage(store, { config: newImageConfig(), layers: [layer], tag: 'keep' });
  const stray = await store.putBytes('unreferenced');
  const before = blobFiles(store.root);
  assert.equal(before.length, 4);
  const r = await store.gc();
  assert.deepEqual(r.removed, [stray.digest]);
  assert.equal(r.freedBytes, stray.size);
  const read = await readImage(store, 'keep');
  assert.equal(read.manifestDescriptor.digest, img.manifestDescriptor.digest);
  assert.equal(await store.untag('keep'), true);
  const all = await store.gc();
  assert.equal(all.removed.length, 3);
  assert.deepEqual(blobFiles(store.root), []);
});

test('concurrent writer processes and a running gc: every tag lands in index.json and every reachable blob verifies', async () => {
  const dir = join(tmp, 'concurrent');
  await OciLayout.create(dir);
  const child = new URL('./store-writer-child.ts', import.meta.url).pathname;
  const runChild = (id: string, mode: string) => new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', child, dir, id, mode], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { err += d; });
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`child ${id} exited ${code}: ${err}`))));
  });
  const writers = Array.from({ length: 6 }, (_, i) => runChild(String(i), 'write'));
  const gc = runChild('2500', 'gc');
  await Promise.all([...writers, gc]);
  const store = await OciLayout.open(dir);
  assert.deepEqual((await store.tags()).sort(), ['writer-0', 'writer-1', 'writer-2', 'writer-3', 'writer-4', 'writer-5']);
  for (const reached of await store.reachable()) {
    const data = await collect(store.readBlob(reached));
    assert.equal(`sha256:${createHash('sha256').update(data).digest('hex')}`, reached);
  }
  for (let i = 0; i < 6; i++) {
    const img = await readImage(store, `writer-${i}`);
    assert.deepEqual(img.config.config?.Cmd, ['/bin/true', String(i)]);
  }
  // Nothing but blobs (no temporary files) once everyone is done and gc ran last.
  await store.gc({ tmpMaxAgeMs: 0 });
  assert.ok(blobFiles(store.root).every((n) => /^[a-f0-9]{64}$/.test(n)));
});
