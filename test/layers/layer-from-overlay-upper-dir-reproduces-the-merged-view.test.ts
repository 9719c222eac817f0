import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { OciLayout, writeLayer, changesFromUpper, changesFromTree, applyLayerBlob, readTar, decompress } from '../../src/layers/index.js';
import { loadFsSys } from '../../src/runtime/sys/fs.js';
import { tempDir, sh, snapshot, diffSnapshots, busyboxRootfs } from './helpers.js';

const tmp = tempDir('overlay');

function mountOverlay(lower: string, upper: string, work: string, merged: string, extra = 'redirect_dir=off,metacopy=off'): void {
  for (const d of [upper, work, merged]) fs.mkdirSync(d, { recursive: true });
  sh(`mount -t overlay overlay -o lowerdir=${lower},upperdir=${upper},workdir=${work}${extra ? `,${extra}` : ''} ${merged}`);
}

function umount(dir: string): void {
  sh(`umount ${dir}`);
}

async function lowerTree(dir: string): Promise<void> {
  busyboxRootfs(tmp);
  sh(`cp -a ${join(tmp, 'bb-bundle', 'rootfs')} ${dir}`);
  for (const d of ['keep', 'gone/deep', 'opq/olddir', 'renamed-from']) fs.mkdirSync(join(dir, d), { recursive: true });
  for (const f of ['keep/a', 'keep/b', 'gone/deep/x', 'gonefile', 'opq/old1', 'opq/olddir/x', 'mod', 'chm', 'renamed-from/f', 'touched']) fs.writeFileSync(join(dir, f), `lower ${f}\n`);
  fs.symlinkSync('keep/a', join(dir, 'link'));
  for (const d of ['keep', 'gone', 'gone/deep', 'opq', 'opq/olddir', 'renamed-from', '']) fs.utimesSync(join(dir, d), 1600000000, 1600000000);
}

test('a layer from an overlay upper dir, applied over the lower layer, gives exactly the merged view (whiteouts, opaque dirs, owners, xattrs, hardlinks, devices)', async () => {
  const lower = join(tmp, 'lower');
  await lowerTree(lower);
  const upper = join(tmp, 'upper');
  const merged = join(tmp, 'merged');
  mountOverlay(lower, upper, join(tmp, 'work'), merged);
  let mergedSnap;
  try {
    const sys = await loadFsSys();
    fs.rmSync(join(merged, 'gonefile'));
    fs.rmSync(join(merged, 'gone'), { recursive: true });
    fs.rmSync(join(merged, 'opq'), { recursive: true });
    fs.mkdirSync(join(merged, 'opq'));
    fs.writeFileSync(join(merged, 'opq', 'new'), 'new in opaque dir\n');
    fs.writeFileSync(join(merged, 'mod'), 'changed\n');
    fs.chmodSync(join(merged, 'chm'), 0o600);
    fs.chownSync(join(merged, 'keep', 'a'), 1000, 1001);
    fs.renameSync(join(merged, 'renamed-from', 'f'), join(merged, 'renamed-to'));
    fs.writeFileSync(join(merged, 'new1'), 'hardlinked\n');
    fs.linkSync(join(merged, 'new1'), join(merged, 'keep', 'new2'));
    fs.writeFileSync(join(merged, 'ping'), 'capable\n');
    sys.lsetxattr(join(merged, 'ping'), 'security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex'));
    sys.mknod(join(merged, 'fifo'), 0o010644, 0, 0);
    sys.mknod(join(merged, 'null'), 0o020666, 1, 3);
    fs.rmSync(join(merged, 'link'));
    fs.symlinkSync('keep/b', join(merged, 'link'));
    fs.utimesSync(join(merged, 'touched'), 1700000000, 1700000000);
    mergedSnap = await snapshot(merged);
  } finally {
    umount(merged);
  }

  const store = await OciLayout.create(join(tmp, 'layout'));
  const base = await writeLayer(store, changesFromTree(lower));
  const diff = await writeLayer(store, changesFromUpper(upper), { compression: 'zstd' });

  const names: string[] = [];
  for await (const e of readTar(decompress(store.readBlob(diff.descriptor.digest)))) names.push(e.rawPath);
  for (const n of ['.wh.gonefile', '.wh.gone', 'opq/', 'opq/.wh..wh..opq', 'renamed-from/.wh.f', 'renamed-to']) assert.ok(names.includes(n), `${n} in ${names.join(' ')}`);
  assert.ok(names.indexOf('opq/.wh..wh..opq') === names.indexOf('opq/') + 1, 'opaque marker right after its directory');
  assert.ok(!names.some((n) => n.startsWith('bin/')), 'unchanged files are not in the layer');

  const rootfs = join(tmp, 'rootfs');
  fs.mkdirSync(rootfs);
  await applyLayerBlob(store, base.descriptor, rootfs, { expectedDiffID: base.diffID });
  await applyLayerBlob(store, diff.descriptor, rootfs, { expectedDiffID: diff.diffID });
  assert.deepEqual(diffSnapshots(mergedSnap, await snapshot(rootfs)), []);
});

test('an upper dir that needs the lower layers (metacopy or redirected directories) is refused with the mount option to use', async (t) => {
  const lower = join(tmp, 'lower2');
  fs.mkdirSync(join(lower, 'dir'), { recursive: true });
  fs.writeFileSync(join(lower, 'dir', 'f'), 'x');
  fs.writeFileSync(join(lower, 'file'), 'data');
  const cases: [string, string, (m: string) => void, RegExp][] = [
    ['metacopy', 'metacopy=on,redirect_dir=on', (m) => fs.chmodSync(join(m, 'file'), 0o600), /metacopy=off/],
    ['redirect', 'redirect_dir=on', (m) => fs.renameSync(join(m, 'dir'), join(m, 'moved')), /redirect_dir=off/],
  ];
  for (const [name, opts, change, expected] of cases) {
    const upper = join(tmp, `${name}-upper`);
    const merged = join(tmp, `${name}-merged`);
    try {
      mountOverlay(lower, upper, join(tmp, `${name}-work`), merged, opts);
    } catch {
      t.diagnostic(`overlay ${opts} not supported by this kernel; case skipped`);
      continue;
    }
    try { change(merged); } finally { umount(merged); }
    const store = await OciLayout.create(join(tmp, `${name}-layout`));
    await assert.rejects(writeLayer(store, changesFromUpper(upper)), expected);
  }
});
