// The image suite on layouts other tools made: buildah commits (from scratch, then a second layer
// that deletes files and adds a hardlink), and skopeo copies of them, plain, gzip and zstd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runImageSuite } from '../../conformance/image/index.js';
import type { Report } from '../../conformance/report.js';
import { byId, describeFailures, lowerCaseTempDir, run, which } from './helpers.js';

const tmp = lowerCaseTempDir('image-peers');
const env = { ...process.env, STORAGE_DRIVER: 'vfs', BUILDAH_ISOLATION: 'chroot' };
const layout = join(tmp, 'buildah-layout');

function assertPasses(report: Report, observed: string[]): void {
  assert.equal(report.ok, true, describeFailures(report));
  const r = byId(report);
  for (const id of observed) assert.equal(r.get(id)?.status, 'pass', `${id} was not observed as passing: ${r.get(id)?.status} ${r.get(id)?.message ?? ''}`);
}

/** buildah: v1 from scratch with a copied tree; v2 on top of it removing a file and a directory and adding a hardlink. */
function buildahImages(): void {
  const ctx = join(tmp, 'ctx');
  mkdirSync(join(ctx, 'dir'), { recursive: true });
  writeFileSync(join(ctx, 'hello.txt'), 'hello\n');
  writeFileSync(join(ctx, 'dir', 'x'), 'x\n');
  const first = run('buildah', ['from', 'scratch'], env).trim().split('\n').pop()!;
  try {
    run('buildah', ['copy', first, ctx, '/'], env);
    run('buildah', ['config', '--cmd', '/hello.txt', first], env);
    run('buildah', ['commit', '-q', first, `oci:${layout}:v1`], env);
  } finally {
    spawnSync('buildah', ['rm', first], { env });
  }
  const second = run('buildah', ['from', `oci:${layout}:v1`], env).trim().split('\n').pop()!;
  try {
    const mnt = run('buildah', ['mount', second], env).trim();
    rmSync(join(mnt, 'dir'), { recursive: true });
    rmSync(join(mnt, 'hello.txt'));
    writeFileSync(join(mnt, 'new.txt'), 'new\n');
    mkdirSync(join(mnt, 'd2'));
    linkSync(join(mnt, 'new.txt'), join(mnt, 'd2', 'hard'));
    run('buildah', ['umount', second], env);
    run('buildah', ['commit', '-q', second, `oci:${layout}:v2`], env);
  } finally {
    spawnSync('buildah', ['rm', second], { env });
  }
}

test('layouts buildah commits pass the image checks, whiteouts and hardlinks included', async (t) => {
  if (!which('buildah')) return t.skip('buildah not installed');
  buildahImages();
  assertPasses(await runImageSuite({ dir: layout }), ['config.diff-ids', 'layer.tar', 'layer.whiteout-files', 'layer.hardlinks', 'descriptor.digest', 'layout.blob-digests']);
  assertPasses(await runImageSuite({ dir: layout, tag: 'v1' }), ['config.diff-ids']);
});

test('skopeo copies of a layout pass the image checks, recompressed to gzip and zstd too', async (t) => {
  if (!which('buildah')) return t.skip('buildah not installed (it makes the layout skopeo copies)');
  if (!which('skopeo')) return t.skip('skopeo not installed');
  const copies: [string, string[]][] = [
    ['plain', []],
    ['gzip', ['--dest-compress', '--dest-compress-format', 'gzip']],
    ['zstd', ['--dest-compress', '--dest-compress-format', 'zstd']],
  ];
  for (const [name, flags] of copies) {
    const dest = join(tmp, `skopeo-${name}`);
    run('skopeo', ['copy', '-q', ...flags, `oci:${layout}:v2`, `oci:${dest}:v2`], env);
    const report = await runImageSuite({ dir: dest, tag: 'v2' });
    assertPasses(report, ['config.diff-ids', 'layer.compression', 'layer.whiteout-files', 'descriptor.size']);
  }
});
