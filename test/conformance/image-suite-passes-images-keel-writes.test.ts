// The image suite on images keel writes: keel's layer library (the one keel-build writes with)
// making gzip and zstd layers from a tree and from the difference of two trees (OCI whiteouts),
// and keel-build's own `build` once it has one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync, cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { OciLayout, changesFromDiff, changesFromTree, newImageConfig, writeImage, writeLayer } from '../../src/layers/index.js';
import { runImageSuite } from '../../conformance/image/index.js';
import { byId, describeFailures, root, tempDir } from './helpers.js';

const tmp = tempDir('image-keel');

function tree(dir: string): string {
  mkdirSync(join(dir, 'etc'), { recursive: true });
  mkdirSync(join(dir, 'var', 'cache'), { recursive: true });
  writeFileSync(join(dir, 'etc', 'hello'), 'hello\n');
  writeFileSync(join(dir, 'etc', 'old'), 'old\n');
  writeFileSync(join(dir, 'var', 'cache', 'x'), 'x\n');
  return dir;
}

test("images keel's layer library writes (gzip, zstd, a diff layer with whiteouts) pass the image checks", async () => {
  const lower = tree(join(tmp, 'lower'));
  const upper = join(tmp, 'upper');
  cpSync(lower, upper, { recursive: true });
  rmSync(join(upper, 'etc', 'old'));
  rmSync(join(upper, 'var', 'cache'), { recursive: true });
  writeFileSync(join(upper, 'etc', 'new'), 'new\n');
  const dir = join(tmp, 'layout');
  const store = await OciLayout.create(dir);
  for (const compression of ['gzip', 'zstd'] as const) {
    const base = await writeLayer(store, changesFromTree(lower), { compression });
    const diff = await writeLayer(store, changesFromDiff(lower, upper), { compression });
    const config = newImageConfig({ created: '2024-05-06T07:08:09Z', config: { Cmd: ['/bin/true'] }, history: [{ created_by: 'base' }, { created_by: 'diff' }] });
    await writeImage(store, { config, layers: [base, diff], tag: compression });
  }
  const report = await runImageSuite({ dir });
  assert.equal(report.ok, true, describeFailures(report));
  const r = byId(report);
  for (const id of ['config.diff-ids', 'layer.compression', 'layer.whiteout-files', 'layer.whiteout-oci-form', 'layer.no-duplicates', 'descriptor.digest']) {
    assert.equal(r.get(id)?.status, 'pass', `${id}: ${r.get(id)?.status} ${r.get(id)?.message ?? ''}`);
  }
});

test('images keel-build builds from a Dockerfile pass the image checks', async (t) => {
  const keelBuild = join(root, 'dist', 'keel-build');
  if (!existsSync(keelBuild)) return t.skip('dist/keel-build is not built (npm run build)');
  const help = spawnSync(keelBuild, ['--help'], { encoding: 'utf8' });
  if (!/keel-build build\b/.test(help.stdout)) return t.skip('keel-build has no build command yet');
  const ctx = join(tmp, 'build-ctx');
  mkdirSync(ctx, { recursive: true });
  writeFileSync(join(ctx, 'hello.txt'), 'hello\n');
  writeFileSync(join(ctx, 'Dockerfile'), 'FROM scratch\nCOPY hello.txt /hello.txt\nCMD ["/hello.txt"]\n');
  const out = join(tmp, 'build-layout');
  // The invocation keel-build's README documents for an OCI layout output; update both together.
  const r = spawnSync(keelBuild, ['build', '--tag', 'v1', '--output', `type=oci,dest=${out}`, ctx], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `keel-build build failed: ${r.stderr}`);
  const report = await runImageSuite({ dir: out });
  assert.equal(report.ok, true, describeFailures(report));
  assert.equal(byId(report).get('config.diff-ids')?.status, 'pass');
});
