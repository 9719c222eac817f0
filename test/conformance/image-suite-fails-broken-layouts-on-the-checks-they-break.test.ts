// The image suite on hand-made layouts: a correct one passes every check it can observe; each
// broken one (one thing wrong at a time) fails exactly the required checks that thing breaks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { runImageSuite } from '../../conformance/image/index.js';
import type { Report } from '../../conformance/report.js';
import { byId, describeFailures, failedRequired, tempDir } from './helpers.js';
import { sha256, tar, twoLayers, writeLayout, type LayoutSpec } from './layout-fixture.js';

const tmp = tempDir('image-broken');
let n = 0;

async function check(spec: LayoutSpec): Promise<Report> {
  return runImageSuite({ dir: writeLayout(join(tmp, `layout-${++n}`), spec), tag: 'v1' });
}

function assertFails(report: Report, expected: string[]): void {
  assert.equal(report.ok, false, 'the broken layout passed');
  assert.deepEqual(failedRequired(report), [...expected].sort(), describeFailures(report));
}

test('a correct two-layer layout with whiteouts and a hardlink passes, observing every layer check', async () => {
  const report = await check({ layers: twoLayers() });
  assert.equal(report.ok, true, describeFailures(report));
  assert.equal(report.summary.fail, 0, describeFailures(report));
  const r = byId(report);
  for (const id of ['layout.blob-digests', 'descriptor.digest', 'config.diff-ids', 'layer.tar', 'layer.whiteout-files', 'layer.hardlinks', 'index.platform-matches-config', 'index.media-type']) {
    assert.equal(r.get(id)?.status, 'pass', `${id}: ${r.get(id)?.message}`);
  }
});

test('a blob whose content does not match its digest fails the blob digest checks only', async () => {
  const report = await check({
    layers: twoLayers(),
    corrupt: (kind, b) => (kind === 'config' ? Buffer.from(b.toString().replace('amd64', 'arm64')) : b),
  });
  assertFails(report, ['descriptor.digest', 'layout.blob-digests']);
  assert.match(byId(report).get('layout.blob-digests')?.message ?? '', /content digest is sha256:/);
});

test('a descriptor with the wrong size fails descriptor.size', async () => {
  const report = await check({
    layers: twoLayers(),
    manifest: (m) => {
      (m.config as { size: number }).size += 1;
    },
  });
  assertFails(report, ['descriptor.size']);
});

test("a config whose diff_ids are not the layers' uncompressed digests fails config.diff-ids", async () => {
  const report = await check({
    layers: twoLayers(),
    config: (c) => {
      (c.rootfs as { diff_ids: string[] }).diff_ids[1] = sha256('something else');
    },
  });
  assertFails(report, ['config.diff-ids']);
  assert.match(byId(report).get('config.diff-ids')?.message ?? '', /layer 1: diff_id sha256:/);
});

test('schema errors fail the schema checks of the document they are in', async () => {
  const manifest = await check({ layers: twoLayers(), manifest: (m) => { m.schemaVersion = 3; } });
  assertFails(manifest, ['manifest.schema']);
  assert.match(byId(manifest).get('manifest.schema')?.message ?? '', /schemaVersion/);
  const config = await check({ layers: twoLayers(), config: (c) => { delete c.os; } });
  assertFails(config, ['config.schema']);
  const rootfs = await check({ layers: twoLayers(), config: (c) => { (c.rootfs as { type: string }).type = 'squashfs'; } });
  assertFails(rootfs, ['config.rootfs-type', 'config.schema']);
});

test('a wrong index mediaType fails index.media-type', async () => {
  const report = await check({ layers: twoLayers(), index: (i) => { i.mediaType = 'application/vnd.oci.image.manifest.v1+json'; } });
  assertFails(report, ['index.media-type']);
});

test('layers that are not well-formed tar archives fail layer.tar', async () => {
  const report = await check({ layers: [tar([{ name: 'a', content: 'a' }, { name: 'b', content: 'b', badChecksum: true }])] });
  assertFails(report, ['layer.tar']);
  assert.match(byId(report).get('layer.tar')?.message ?? '', /bad checksum/);
  const truncated = await check({ layers: [tar([{ name: 'a', content: 'x'.repeat(2000) }]).subarray(0, 1024)] });
  assertFails(truncated, ['layer.tar']);
});

test('whiteouts not in OCI form fail the whiteout checks', async () => {
  const overlay = await check({ layers: [tar([{ name: 'etc/', type: '5' }, { name: 'etc/gone', type: '3', devmajor: 0, devminor: 0 }])] });
  assertFails(overlay, ['layer.whiteout-oci-form']);
  const notEmpty = await check({ layers: [tar([{ name: '.wh.gone', content: 'not empty' }])] });
  assertFails(notEmpty, ['layer.whiteout-files']);
  const aufs = await check({ layers: [tar([{ name: '.wh..wh.plnk' }])] });
  assertFails(aufs, ['layer.whiteout-files']);
});

test('duplicate entries, escaping paths and a mislabelled compression fail their layer checks', async () => {
  const dup = await check({ layers: [tar([{ name: 'a', content: '1' }, { name: './a', content: '2' }])] });
  assertFails(dup, ['layer.no-duplicates']);
  const escape = await check({ layers: [tar([{ name: '../outside', content: '1' }])] });
  assertFails(escape, ['layer.relative-paths']);
  const plainAsGzip = await check({ layers: twoLayers(), compression: 'none', layerMediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
  assertFails(plainAsGzip, ['layer.compression']);
});

test('a tag the layout does not have is an error, not a report', async () => {
  const dir = writeLayout(join(tmp, 'tagless'), { layers: twoLayers() });
  await assert.rejects(runImageSuite({ dir, tag: 'v2' }), /no manifest tagged "v2".*tags: v1/);
});
