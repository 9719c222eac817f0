import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createHash } from 'node:crypto';
import { changesFromTree, writeLayerToStream, readTar, applyLayer, TarWriter } from '../../src/layers/index.js';
import { loadFsSys } from '../../src/runtime/sys/fs.js';
import { rawPax, tempDir, sh, snapshot, diffSnapshots, chunks, collect, rawTar, rawEntry } from './helpers.js';

const tmp = tempDir('tar');

/** A tree with everything a layer must carry faithfully. */
async function richTree(dir: string): Promise<void> {
  const sys = await loadFsSys();
  fs.mkdirSync(dir, { recursive: true });
  const long1 = 'd'.repeat(60);
  const long2 = 'e'.repeat(70);
  fs.mkdirSync(join(dir, long1, long2), { recursive: true });
  fs.writeFileSync(join(dir, long1, long2, `${'f'.repeat(120)}.txt`), 'deep and long\n');
  fs.writeFileSync(join(dir, 'héllo wörld ✓.txt'), 'utf-8 name\n');
  fs.writeFileSync(join(dir, 'empty'), '');
  fs.writeFileSync(join(dir, 'big.bin'), Buffer.alloc(3 << 20, 0x5a));
  fs.writeFileSync(join(dir, 'a'), 'hardlinked\n');
  fs.linkSync(join(dir, 'a'), join(dir, 'b'));
  fs.mkdirSync(join(dir, 'sub'));
  fs.linkSync(join(dir, 'a'), join(dir, 'sub', 'c'));
  fs.symlinkSync(`/${'t'.repeat(150)}/target`, join(dir, 'longlink'));
  fs.symlinkSync('../a', join(dir, 'sub', 'rel'));
  sys.mknod(join(dir, 'fifo'), 0o010640, 0, 0);
  sys.mknod(join(dir, 'null'), 0o020666, 1, 3);
  sys.mknod(join(dir, 'blk'), 0o060600, 259, 70000);
  fs.mkdirSync(join(dir, 'sticky'));
  fs.chmodSync(join(dir, 'sticky'), 0o1777);
  fs.mkdirSync(join(dir, 'setgid'));
  fs.chmodSync(join(dir, 'setgid'), 0o2750);
  fs.writeFileSync(join(dir, 'suid'), '#!/bin/sh\n');
  fs.chmodSync(join(dir, 'suid'), 0o4755);
  fs.writeFileSync(join(dir, 'owned'), 'big ids\n');
  fs.chownSync(join(dir, 'owned'), 3000000, 2500000);
  fs.writeFileSync(join(dir, 'capped'), 'cap\n');
  // security.capability v2: cap_net_raw+ep, with NUL bytes in the value.
  sys.lsetxattr(join(dir, 'capped'), 'security.capability', Buffer.from('0100000200200000000000000000000000000000', 'hex'));
  sys.lsetxattr(join(dir, 'capped'), 'user.comment', Buffer.from('a=b\nc d'));
  sys.lsetxattr(join(dir, 'sub'), 'trusted.dirattr', Buffer.from([0, 1, 2, 255]));
  fs.utimesSync(join(dir, 'owned'), 1234567890, 1234567890);
  // Directory mtimes last.
  for (const d of ['sub', 'sticky', 'setgid', long1, join(long1, long2)]) fs.utimesSync(join(dir, d), 1600000000, 1600000000);
}

async function layerBytes(dir: string, opts: { sourceDateEpoch?: number } = {}): Promise<{ tar: Buffer; diffID: string }> {
  const out = new PassThrough();
  const got = collect(out);
  const r = await writeLayerToStream(out, changesFromTree(dir, opts), { compression: 'none' });
  out.end();
  return { tar: await got, diffID: r.diffID };
}

test('a layer made from a tree is extracted by GNU tar into the same tree: modes, owners, mtimes, hardlinks, devices, xattrs', async () => {
  const src = join(tmp, 'rich');
  await richTree(src);
  const { tar, diffID } = await layerBytes(src);
  assert.equal(diffID, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
  fs.writeFileSync(join(tmp, 'rich.tar'), tar);
  const out = join(tmp, 'gnu-out');
  fs.mkdirSync(out);
  sh(`tar --xattrs --xattrs-include='*' --numeric-owner -xpf ${tmp}/rich.tar -C ${out}`);
  const diffs = diffSnapshots(await snapshot(src), await snapshot(out));
  assert.deepEqual(diffs, []);
});

test('node-tar, an independent reader, lists the same entries with the same types, sizes and link targets', async () => {
  const src = join(tmp, 'rich');
  const { tar } = await layerBytes(src);
  const nodeTar = await import('tar');
  const seen: string[] = [];
  const parser = new nodeTar.Parser({ onReadEntry: (e) => { seen.push(`${e.type} ${e.path} ${e.size ?? 0} ${e.linkpath ?? ''}`); e.resume(); } });
  const ended = new Promise<void>((resolve) => parser.on('end', resolve));
  parser.end(tar);
  await ended;
  const ours: string[] = [];
  const typeName: Record<string, string> = { file: 'File', dir: 'Directory', symlink: 'SymbolicLink', hardlink: 'Link', chardev: 'CharacterDevice', blockdev: 'BlockDevice', fifo: 'FIFO' };
  for await (const e of readTar(chunks(tar, 1000))) {
    ours.push(`${typeName[e.header.type]} ${e.header.type === 'dir' ? `${e.header.path}/` : e.header.path} ${e.header.size} ${e.header.linkname ?? ''}`);
  }
  assert.deepEqual(seen, ours);
  assert.ok(ours.some((l) => l.startsWith('Link b ')), 'second link of a hardlinked file is a hardlink entry');
});

test('layers are deterministic: same tree, same bytes; SOURCE_DATE_EPOCH clamps newer mtimes so touching files changes nothing', async () => {
  const src = join(tmp, 'rich');
  const a = await layerBytes(src);
  const b = await layerBytes(src);
  assert.equal(a.diffID, b.diffID);
  const epoch = 1500000000;
  const copy = join(tmp, 'rich-copy');
  sh(`cp -a ${src} ${copy}`);
  const before = await layerBytes(copy, { sourceDateEpoch: epoch });
  // Touch a file (now > epoch): clamped back to the epoch, same layer.
  fs.utimesSync(join(copy, 'a'), new Date(), new Date());
  const after = await layerBytes(copy, { sourceDateEpoch: epoch });
  assert.equal(after.diffID, before.diffID);
  // Older times are kept as they are.
  const entries = new Map<string, number>();
  for await (const e of readTar(chunks(after.tar))) entries.set(e.header.path, e.header.mtime);
  assert.equal(entries.get('owned'), 1234567890);
  assert.equal(entries.get('a'), epoch);
  // The environment variable is the default.
  process.env.SOURCE_DATE_EPOCH = String(epoch);
  try {
    const viaEnv = await layerBytes(copy);
    assert.equal(viaEnv.diffID, after.diffID);
  } finally {
    delete process.env.SOURCE_DATE_EPOCH;
  }
});

test('the reader takes what GNU tar writes in gnu and posix formats, long names and xattrs included, and applies it faithfully', async () => {
  const src = join(tmp, 'rich');
  for (const format of ['gnu', 'posix']) {
    const file = join(tmp, `gnu-${format}.tar`);
    sh(`tar --format=${format} ${format === 'posix' ? "--xattrs --xattrs-include='*'" : ''} --numeric-owner -cf ${file} -C ${src} .`);
    const out = join(tmp, `applied-${format}`);
    fs.mkdirSync(out);
    const r = await applyLayer(out, chunks(fs.readFileSync(file), 777));
    assert.equal(r.warnings.length, 0, r.warnings.join('\n'));
    const skipXattr = format === 'gnu' ? () => true : undefined; // GNU format has no xattrs
    const diffs = diffSnapshots(await snapshot(src, skipXattr ? { skipXattr } : {}), await snapshot(out, skipXattr ? { skipXattr } : {}));
    assert.deepEqual(diffs, [], format);
  }
});

test('the writer batches small entries and streams large ones, and data of the wrong size is refused', async () => {
  const sink: Buffer[] = [];
  const tw = new TarWriter({ write: (c) => { sink.push(c); } }, { batchSize: 64 << 10 });
  await tw.add({ path: 'x', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 3, mtime: 0 }, Buffer.from('abc'));
  await assert.rejects(tw.add({ path: 'y', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 5, mtime: 0 }, Buffer.from('abc')), /differs from size/);
  await assert.rejects(tw.addStream({ path: 'z', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 10, mtime: 0 }, chunks(Buffer.alloc(4))), /4 bytes of data, header says 10/);
});

test('the reader refuses corrupt archives: bad checksum, truncated data, inconsistent sparse maps, unknown entry types', async () => {
  const read = async (buf: Buffer) => { for await (const e of readTar(chunks(buf))) await collect(e.body()); };
  await assert.rejects(read(rawTar([{ name: 'a', data: 'x', badChecksum: true }])), /bad header checksum/);
  const full = rawTar([{ name: 'a', data: Buffer.alloc(5000, 1) }]);
  await assert.rejects(read(full.subarray(0, 2048)), /truncated/);
  const sparseMap = (map: string, realsize = '10') => rawTar([rawPax({ 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.realsize': realsize, 'GNU.sparse.name': 's' }), { name: 'GNUSparseFile.0/s', data: Buffer.concat([Buffer.from(map), Buffer.alloc(512 - map.length)]) }]);
  await assert.rejects(read(sparseMap('1\n0\n999\n')), /invalid sparse map/);
  await assert.rejects(read(sparseMap('1\n0\n5\n')), /describes 5 bytes but 0 are stored/);
  await assert.rejects(read(sparseMap('2\nx\n')), /malformed sparse map/);
  await assert.rejects(read(sparseMap('9999999999\n')), /more than 1048576 sparse segments/);
  await assert.rejects(read(rawTar([{ name: 'weird', type: 'Z' }])), /unsupported entry type "Z"/);
  // Old-style directories: NUL type flag and a trailing '/'.
  const types: string[] = [];
  for await (const e of readTar(chunks(rawTar([{ name: 'olddir/', type: '\0' }, { name: 'oldfile', type: '\0', data: 'x' }])))) types.push(`${e.header.path}:${e.header.type}`);
  assert.deepEqual(types, ['olddir:dir', 'oldfile:file']);
  // An archive without end blocks is accepted (some tools omit them).
  let n = 0;
  for await (const e of readTar(chunks(rawEntry({ name: 'ok', data: 'fine' })))) { n++; assert.equal((await collect(e.body())).toString(), 'fine'); }
  assert.equal(n, 1);
});
