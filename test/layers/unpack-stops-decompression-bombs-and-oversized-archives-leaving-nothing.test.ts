// Bounded resources: a 10 GiB-of-zeros layer (a ~10 MB gzip blob) stops at --max-unpacked-size
// with one line naming the layer and leaves no bundle; without the flag the cap is the target's
// free space less a margin (checked on a small tmpfs); entry counts are capped.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { gzipSync, constants as zc } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { OciLayout, writeImage, newImageConfig, applyLayer, sha256, MediaType, parseSize, formatSize } from '../../src/layers/index.js';
import { tempDir, repoRoot, rawTar, rawEntry, chunks } from './helpers.js';

const dir = tempDir('bomb');

/**
 * A gzip layer holding one file of `size` zeros, made of concatenated gzip members (gunzip reads
 * them as one stream): the tar header, the same compressed 64 MiB of zeros repeated, the end.
 */
function bombLayer(size: number): Buffer {
  const chunk = 64 << 20;
  const header = rawEntry({ name: 'zeros', size, data: '' });
  const zeros = gzipSync(Buffer.alloc(chunk), { level: zc.Z_BEST_COMPRESSION });
  const members = [gzipSync(header)];
  for (let done = 0; done < size; done += chunk) members.push(done + chunk <= size ? zeros : gzipSync(Buffer.alloc(size - done)));
  members.push(gzipSync(Buffer.alloc(1024 + ((512 - (size % 512)) % 512))));
  return Buffer.concat(members);
}

async function layoutWith(name: string, blob: Buffer): Promise<string> {
  const layoutDir = join(dir, name);
  const store = await OciLayout.create(layoutDir);
  const info = await store.putBytes(blob);
  // The diff_id cannot be known without inflating the bomb, which is the point: any value does,
  // the size cap stops the layer before its content is compared.
  await writeImage(store, { config: newImageConfig({}), layers: [{ descriptor: { mediaType: MediaType.layerGzip, digest: info.digest, size: info.size }, diffID: sha256('unknown') }], tag: 'bomb' });
  return layoutDir;
}

function keelBuild(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/keel-build.ts'), ...args], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
}

test('a 10 GiB-of-zeros layer stops at --max-unpacked-size 1G with one line naming the layer, and no bundle is left', async (t) => {
  const blob = bombLayer(10 * 2 ** 30);
  t.diagnostic(`bomb blob: ${formatSize(blob.length)} for 10 GiB of data`);
  const layoutDir = await layoutWith('layout-10g', blob);
  const bundle = join(dir, 'bundle-10g');
  const t0 = performance.now();
  const r = keelBuild(['unpack', '--max-unpacked-size', '1G', `${layoutDir}:bomb`, bundle]);
  t.diagnostic(`stopped after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(r.status, 1, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /layer 1\/1 \(sha256:[0-9a-f]{12}\): unpacked size exceeds the limit of 1 GiB \(--max-unpacked-size\)/);
  assert.ok(!fs.existsSync(bundle), 'the bundle was left behind');
});

test('--max-unpacked-size takes sizes as umoci and podman users write them, and refuses nonsense in one line', async () => {
  assert.equal(parseSize('1G'), 2 ** 30);
  assert.equal(parseSize('512m'), 512 * 2 ** 20);
  assert.equal(parseSize('10GiB'), 10 * 2 ** 30);
  assert.equal(parseSize('1.5T'), 1.5 * 2 ** 40);
  assert.equal(parseSize('4096'), 4096);
  const layoutDir = await layoutWith('layout-small', bombLayer(1 << 20));
  const r = keelBuild(['unpack', '--max-unpacked-size', 'lots', `${layoutDir}:bomb`, join(dir, 'never')]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^[^\n]*--max-unpacked-size: "lots" is not a size \(e\.g\. 512M, 10G, 1T or a number of bytes\)\n$/);
  assert.ok(!fs.existsSync(join(dir, 'never')));
});

const tmpfs = join(dir, 'tmpfs');
let mounted = false;
after(() => { if (mounted) spawnSync('umount', ['-l', tmpfs]); });

test('without --max-unpacked-size the cap is the free space of the bundle\'s file system less a margin', async (t) => {
  fs.mkdirSync(tmpfs);
  const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'keel-test', tmpfs], { encoding: 'utf8' });
  if (m.status !== 0) return t.skip(`cannot mount a tmpfs here: ${m.stderr.trim()}`);
  mounted = true;
  const layoutDir = await layoutWith('layout-100m', bombLayer(100 << 20));
  const bundle = join(tmpfs, 'bundle');
  const r = keelBuild(['unpack', `${layoutDir}:bomb`, bundle]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /unpacked size exceeds the limit of (6\d|5\d)(\.\d)? MiB/);
  assert.ok(!fs.existsSync(bundle));
  assert.deepEqual(fs.readdirSync(tmpfs), []);
});

test('a layer with more entries than maxEntries, or larger than maxSize, is refused while streaming', async () => {
  const entries = Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, data: 'x' }));
  const target = join(dir, 'entries');
  fs.mkdirSync(target);
  await assert.rejects(applyLayer(target, chunks(rawTar(entries)), { maxEntries: 10, what: 'layer x' }), /^KeelError: layer x: more than 10 entries$/);
  const target2 = join(dir, 'size');
  fs.mkdirSync(target2);
  await assert.rejects(applyLayer(target2, chunks(rawTar([{ name: 'big', data: Buffer.alloc(1 << 20) }])), { maxSize: 100_000, what: 'layer y' }), /layer y: unpacked size exceeds the limit of 97\.7 KiB/);
  const ok = await applyLayer(join(dir, 'size'), chunks(rawTar(entries)), { maxSize: 100_000, maxEntries: 11 });
  assert.equal(ok.entries, 11);
});

test('keel-build build --max-unpacked-size holds a base image\'s layers to the same cap', async () => {
  const layoutDir = await layoutWith('layout-build', bombLayer(100 << 20));
  const ctx = join(dir, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(join(ctx, 'Dockerfile'), `FROM oci-layout://${layoutDir}:bomb\nRUN true\n`);
  const r = keelBuild(['build', '--store', join(dir, 'store'), '-q', '--max-unpacked-size', '32M', ctx]);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /layer sha256:[0-9a-f]{12}: unpacked size exceeds the limit of 32 MiB \(--max-unpacked-size\)/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});
