import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { OciLayout, writeLayer, changesFromDiff, changesFromTree, applyLayerBlob, readTar, decompress } from '../../src/layers/index.js';
import { loadFsSys } from '../../src/runtime/sys/fs.js';
import { tempDir, sh, snapshot, diffSnapshots, busyboxRootfs } from './helpers.js';

const tmp = tempDir('treediff');

test('the diff of two trees, applied over the first, gives the second; unchanged files are not in the layer', async () => {
  const sys = await loadFsSys();
  const lower = busyboxRootfs(tmp);
  for (const d of ['a/b/c', 'tofile/sub', 'xat', 'perm']) fs.mkdirSync(join(lower, d), { recursive: true });
  for (const f of ['a/b/c/f', 'a/keep', 'todir-file', 'tofile/sub/x', 'gone', 'xat/f', 'perm/f', 'hl']) fs.writeFileSync(join(lower, f), `lower ${f}\n`);
  fs.writeFileSync(join(lower, 'todir'), 'will become a directory\n');
  fs.symlinkSync('a/keep', join(lower, 'sym'));
  sys.lsetxattr(join(lower, 'xat', 'f'), 'user.old', Buffer.from('1'));

  const upper = join(tmp, 'upper');
  sh(`cp -a ${lower} ${upper}`);
  fs.rmSync(join(upper, 'gone'));
  fs.rmSync(join(upper, 'a', 'b'), { recursive: true });
  fs.rmSync(join(upper, 'todir'));
  fs.mkdirSync(join(upper, 'todir'));
  fs.writeFileSync(join(upper, 'todir', 'inside'), 'now a dir\n');
  fs.rmSync(join(upper, 'tofile'), { recursive: true });
  fs.writeFileSync(join(upper, 'tofile'), 'now a file\n');
  fs.rmSync(join(upper, 'sym'));
  fs.symlinkSync('/elsewhere', join(upper, 'sym'));
  sys.lremovexattr(join(upper, 'xat', 'f'), 'user.old');
  sys.lsetxattr(join(upper, 'xat', 'f'), 'user.new', Buffer.from('2'));
  fs.chmodSync(join(upper, 'perm', 'f'), 0o4711);
  fs.chownSync(join(upper, 'perm'), 7, 8);
  fs.linkSync(join(upper, 'hl'), join(upper, 'hl2'));
  fs.writeFileSync(join(upper, 'added'), 'added\n');
  fs.utimesSync(join(upper, 'a', 'keep'), 1650000000, 1650000000);

  const store = await OciLayout.create(join(tmp, 'layout'));
  const base = await writeLayer(store, changesFromTree(lower));
  const diff = await writeLayer(store, changesFromDiff(lower, upper));
  const names: string[] = [];
  for await (const e of readTar(decompress(store.readBlob(diff.descriptor.digest)))) names.push(e.rawPath);
  for (const n of ['.wh.gone', 'a/.wh.b', 'todir/', 'todir/inside', 'tofile', 'sym', 'xat/f', 'perm/', 'perm/f', 'added', 'a/keep']) assert.ok(names.includes(n), `${n} missing from ${names.join(' ')}`);
  assert.ok(!names.includes('bin/busybox') && !names.includes('etc/passwd'), 'unchanged files are not in the layer');
  assert.ok(names.includes('hl') || names.includes('hl2'), 'a file that gained a link is in the layer');

  const rootfs = join(tmp, 'rootfs');
  fs.mkdirSync(rootfs);
  await applyLayerBlob(store, base.descriptor, rootfs, { expectedDiffID: base.diffID });
  await applyLayerBlob(store, diff.descriptor, rootfs, { expectedDiffID: diff.diffID });
  assert.deepEqual(diffSnapshots(await snapshot(upper), await snapshot(rootfs)), []);
});

test('the diff of a tree against itself is an empty layer', async () => {
  const dir = busyboxRootfs(join(tmp, 'self'));
  const store = await OciLayout.create(join(tmp, 'layout-self'));
  const r = await writeLayer(store, changesFromDiff(dir, dir));
  assert.equal(r.entries, 0);
  assert.equal(r.uncompressedSize, 1024);
});
