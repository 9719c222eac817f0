import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, storeLayout, unpack, tempDir, which, writeTree, tree } from './helpers.js';

const store = newStore();

test('independent stages run at the same time; stages the target does not need never run', { skip: skipReason }, async () => {
  const ctx = context(`
FROM scratch AS base
${BUSYBOX_BASE}

FROM base AS one
RUN cut -d' ' -f1 /proc/uptime > /one && sleep 1 && cut -d' ' -f1 /proc/uptime >> /one

FROM base AS two
RUN cut -d' ' -f1 /proc/uptime > /two && sleep 1 && cut -d' ' -f1 /proc/uptime >> /two

FROM base AS broken
RUN exit 7

FROM base
COPY --from=one /one /from/
COPY --from=two /two /from/
`);
  await buildWith(store, ctx, { target: 'base' });
  const r = await buildWith(store, ctx, { tags: ['stages:1'] });
  const bundle = unpack(storeLayout(store), 'stages:1');
  // Each RUN wrote when it started and ended: the two intervals overlap.
  const [s1, e1] = fs.readFileSync(join(bundle, 'rootfs/from/one'), 'utf8').trim().split('\n').map(Number);
  const [s2, e2] = fs.readFileSync(join(bundle, 'rootfs/from/two'), 'utf8').trim().split('\n').map(Number);
  assert.ok(s1! < e2! && s2! < e1!, `the RUNs of stages one and two overlapped in time (${s1}-${e1}, ${s2}-${e2})`);
  assert.equal(r.steps - r.cached, 4, 'two RUNs and two COPYs ran; the broken stage did not');
  await assert.rejects(buildWith(store, ctx, { target: 'broken' }), /Dockerfile:14: RUN exit 7: exit code 7/);
});

test('COPY --from takes a stage by name or index, an image of the store, an OCI layout and a named context', { skip: skipReason }, async () => {
  // An image in the store, and the same one in an OCI layout made by umoci when it is installed.
  await buildWith(store, context(`FROM scratch\nCOPY data.txt /srv/data.txt\n`, { 'data.txt': 'from-image\n' }), { tags: ['data-image:v1'] });
  const layout = join(tempDir('layout'), 'oci');
  if (which('umoci')) {
    execFileSync('umoci', ['init', '--layout', layout]);
    execFileSync('umoci', ['new', '--image', `${layout}:base`]);
    const b = join(tempDir('umoci'), 'bundle');
    execFileSync('umoci', ['unpack', '--image', `${layout}:base`, b]);
    fs.mkdirSync(join(b, 'rootfs/srv'));
    fs.writeFileSync(join(b, 'rootfs/srv/layout.txt'), 'from-umoci-layout\n');
    execFileSync('umoci', ['repack', '--image', `${layout}:base`, b]);
  } else {
    await buildWith(store, context(`FROM scratch\nCOPY layout.txt /srv/layout.txt\n`, { 'layout.txt': 'from-umoci-layout\n' }), { outputs: [{ type: 'oci', dest: layout }], tags: ['x:base'] });
  }
  const named = tempDir('named');
  writeTree(named, { 'extra/n.txt': 'from-named-context\n' });
  const ctx = context(`
FROM scratch AS first
COPY a.txt /stage/a.txt

FROM scratch
COPY --from=first /stage/a.txt /by-name.txt
COPY --from=0 /stage/a.txt /by-index.txt
COPY --from=data-image:v1 /srv/data.txt /image.txt
COPY --from=oci-layout://${layout}:base /srv/layout.txt /layout.txt
COPY --from=extras extra/n.txt /named.txt
COPY --from=busyboxes busybox /bin/
`, { 'a.txt': 'from-stage\n' });
  const r = await buildWith(store, ctx, { tags: ['copyfrom:1'], buildContexts: { extras: named, busyboxes: `oci-layout://${layout}:base` } }).catch((e) => e as Error);
  // `busyboxes` names a layout without busybox: the error names the step.
  assert.ok(r instanceof Error);
  assert.match(r.message, /Dockerfile:11: COPY --from=busyboxes busybox \/bin\/: "busybox": no such file or directory in busyboxes/);
  fs.writeFileSync(join(ctx, 'Dockerfile'), fs.readFileSync(join(ctx, 'Dockerfile'), 'utf8').replace(/COPY --from=busyboxes.*\n/, ''));
  await buildWith(store, ctx, { tags: ['copyfrom:1'], buildContexts: { extras: named } });
  const t = tree(join(unpack(storeLayout(store), 'copyfrom:1'), 'rootfs'));
  const read = (p: string) => fs.readFileSync(join(unpack(storeLayout(store), 'copyfrom:1'), 'rootfs', p), 'utf8');
  assert.deepEqual([...t.keys()].sort(), ['by-index.txt', 'by-name.txt', 'image.txt', 'layout.txt', 'named.txt']);
  assert.equal(read('by-name.txt'), 'from-stage\n');
  assert.equal(read('by-index.txt'), 'from-stage\n');
  assert.equal(read('image.txt'), 'from-image\n');
  assert.equal(read('layout.txt'), 'from-umoci-layout\n');
  assert.equal(read('named.txt'), 'from-named-context\n');
});

test('FROM takes an OCI layout, an image of the store, and a stage; the base\'s config and layers carry over', { skip: skipReason }, async () => {
  const layout = join(tempDir('layout'), 'oci');
  await buildWith(store, context(`FROM scratch\n${BUSYBOX_BASE}\nENV FROM_BASE=yes\nWORKDIR /w\n`), { outputs: [{ type: 'oci', dest: layout }], tags: ['base:7'] });
  const ctx = context(`
FROM oci-layout://${layout}:7 AS fromlayout
RUN echo "$FROM_BASE $(pwd)" > /check

FROM fromlayout AS fromstage
RUN cat /check > /check2
`);
  const r = await buildWith(store, ctx, { tags: ['fromlayout:1'] });
  assert.ok(r.config.config!.Env!.includes('FROM_BASE=yes'));
  assert.equal(r.config.config!.WorkingDir, '/w');
  const bundle = unpack(storeLayout(store), 'fromlayout:1');
  assert.equal(fs.readFileSync(join(bundle, 'rootfs/check2'), 'utf8'), 'yes /w\n');
  // ... and the store image by name
  const r2 = await buildWith(store, context(`FROM fromlayout:1\nRUN cat /check2 > /check3\n`), { tags: ['fromstore:1'] });
  assert.equal(r2.config.rootfs.diff_ids.length, r.config.rootfs.diff_ids.length + 1);
  assert.deepEqual(r2.config.rootfs.diff_ids.slice(0, -1), r.config.rootfs.diff_ids);
});
