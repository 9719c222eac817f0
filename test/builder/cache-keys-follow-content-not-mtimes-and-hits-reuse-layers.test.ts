import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, cli } from './helpers.js';

const dockerfile = `
FROM scratch
${BUSYBOX_BASE}
COPY a.txt /a.txt
RUN cat /a.txt > /copy.txt && date +%s%N > /stamp
COPY dir/ /dir/
RUN ls /dir > /list && date +%s%N > /stamp2
LABEL changed=no
`;

function snapshotDirs(store: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const n of fs.readdirSync(join(store, 's'))) if (!n.endsWith('.json')) out.set(n, fs.statSync(join(store, 's', n)).ino);
  return out;
}

test('a second build hits every step, gives the same image, and copies no layer', { skip: skipReason }, async () => {
  const store = newStore();
  const ctx = context(dockerfile, { 'a.txt': 'A\n', 'dir/one': '1', 'dir/two': '2' });
  const first = await buildWith(store, ctx, { tags: ['c:1'] });
  assert.equal(first.cached, 0);
  const snaps = snapshotDirs(store);
  const second = await buildWith(store, ctx, { tags: ['c:1'] });
  assert.equal(second.cached, second.steps, 'every step is a hit');
  assert.equal(second.manifestDigest, first.manifestDigest, 'a fully cached build is the same image');
  assert.deepEqual(snapshotDirs(store), snaps, 'no snapshot was made or copied again');
});

test('touching files (mtime only) keeps the cache; changing content re-runs from the step that reads it', { skip: skipReason }, async () => {
  const store = newStore();
  const ctx = context(dockerfile, { 'a.txt': 'A\n', 'dir/one': '1', 'dir/two': '2' });
  const first = await buildWith(store, ctx);
  const later = new Date(Date.now() + 3_600_000);
  for (const f of ['a.txt', 'dir/one', 'dir/two', 'dir']) fs.utimesSync(join(ctx, f), later, later);
  const touched = await buildWith(store, ctx);
  assert.equal(touched.cached, touched.steps, 'mtimes are not part of cache keys');
  assert.equal(touched.manifestDigest, first.manifestDigest);

  fs.writeFileSync(join(ctx, 'dir/two'), '2 changed');
  const edited = await buildWith(store, ctx);
  // base (3 steps) + COPY a.txt + RUN stay cached; COPY dir/ and the RUN after it run again.
  assert.equal(edited.steps - edited.cached, 2);
  assert.notEqual(edited.manifestDigest, first.manifestDigest);
  const stamp1 = edited.config.rootfs.diff_ids;
  assert.deepEqual(stamp1.slice(0, 5), first.config.rootfs.diff_ids.slice(0, 5), 'layers before the change are reused');

  fs.writeFileSync(join(ctx, 'Dockerfile'), dockerfile.replace('changed=no', 'changed=yes'));
  const relabeled = await buildWith(store, ctx);
  assert.equal(relabeled.cached, relabeled.steps, 'a config-only change re-runs nothing');
  assert.equal(relabeled.config.config?.Labels?.changed, 'yes');

  fs.writeFileSync(join(ctx, 'dir/three'), '3');
  const added = await buildWith(store, ctx);
  assert.equal(added.steps - added.cached, 2, 'a new file in a copied directory is a change');
});

test('--no-cache runs every step again; build args reach the keys of the RUN steps that see them', { skip: skipReason }, async () => {
  const store = newStore();
  const ctx = context(`FROM scratch\n${BUSYBOX_BASE}\nARG V=1\nRUN echo $V > /v\nRUN echo unrelated > /u\n`);
  const a = await buildWith(store, ctx);
  const b = await buildWith(store, ctx, { noCache: true });
  assert.equal(b.cached, 0);
  assert.notEqual(b.config.rootfs.diff_ids.at(-1), undefined);
  const c = await buildWith(store, ctx, { buildArgs: { V: '2' } });
  assert.equal(c.steps - c.cached, 2, 'the RUN that sees V and every step after it run again');
  const d = await buildWith(store, ctx, { buildArgs: { V: '1' } });
  assert.equal(d.cached, d.steps);
  void a;
});

test('keel-build prune empties the cache, and the next build runs every step', { skip: skipReason }, async () => {
  const store = newStore();
  const ctx = context(`FROM scratch\n${BUSYBOX_BASE}\nRUN echo x > /x\n`);
  await buildWith(store, ctx, { tags: ['keep:1'] });
  const r = cli(['prune', '--store', store]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^freed \d+\.\d MB\n$/);
  for (const d of ['cache', 's', 'layers']) assert.deepEqual(fs.readdirSync(join(store, d)), [], `${d}/ is empty`);
  const again = await buildWith(store, ctx, { tags: ['keep:1'] });
  assert.equal(again.cached, 0);
  const all = cli(['prune', '--all', '--store', store]);
  assert.equal(all.status, 0, all.stderr);
  assert.match(all.stdout, /removed 1 image/);
  assert.deepEqual(JSON.parse(fs.readFileSync(join(store, 'oci/index.json'), 'utf8')).manifests, []);
  assert.deepEqual(fs.readdirSync(join(store, 'oci/blobs/sha256')), [], 'no blob is left');
});

test('layers of stages that reach no image get no blob, and get one from their snapshot when a later build needs it', { skip: skipReason }, async () => {
  const store = newStore();
  const ctx = context(`FROM scratch AS tools\n${BUSYBOX_BASE}\nRUN echo tool > /tool\n\nFROM scratch\nCOPY --from=tools /tool /tool\n`);
  const blobs = () => new Set(fs.readdirSync(join(store, 'oci/blobs/sha256')));
  await buildWith(store, ctx, { tags: ['final:1'] });
  const before = blobs();
  const tools = await buildWith(store, ctx, { target: 'tools', tags: ['tools:1'] });
  assert.equal(tools.cached, tools.steps, 'every step of the tools stage is a hit');
  const made = [...blobs()].filter((b) => !before.has(b));
  assert.ok(made.length >= 4, 'the tools stage\'s layers got their blobs now');
  const { readImage, OciLayout } = await import('../../src/layers/index.js');
  const img = await readImage(await OciLayout.open(join(store, 'oci')), 'tools:1');
  assert.deepEqual(img.config.rootfs.diff_ids, tools.config.rootfs.diff_ids);
  const r = cli(['unpack', `${join(store, 'oci')}:tools:1`, join(newStore(), 'bundle')]);
  assert.equal(r.status, 0, r.stderr);
});
