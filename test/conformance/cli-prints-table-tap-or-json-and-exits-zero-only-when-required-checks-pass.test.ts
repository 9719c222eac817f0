// keel-conformance, the built CLI: a table by default, TAP with --tap, JSON with --json; exit 0
// only when every required check passed, 1 when one failed, 2 when the suite could not run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Report } from '../../conformance/report.js';
import { root, runtimeSuiteSkipReason, tempDir, which } from './helpers.js';
import { twoLayers, writeLayout } from './layout-fixture.js';

const cli = join(root, 'dist', 'keel-conformance');
const skip = existsSync(cli) ? false : 'dist/keel-conformance is not built (npm run build)';
const tmp = tempDir('cli');
const good = writeLayout(join(tmp, 'good'), { layers: twoLayers() });
const bad = writeLayout(join(tmp, 'bad'), { layers: twoLayers(), config: (c) => { (c.rootfs as { diff_ids: string[] }).diff_ids.reverse(); } });

function conformance(...args: string[]) {
  return spawnSync(cli, args, { encoding: 'utf8', timeout: 120_000 });
}

test('image: the table names each check, its level and spec link, and the run passes with exit 0', { skip }, () => {
  const r = conformance('image', `${good}:v1`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^PASS +MUST +config\.diff-ids +https:\/\/github\.com\/opencontainers\/image-spec\/blob\/v1\.1\.1\/config\.md#layer-diffid$/m);
  assert.match(r.stdout, /^PASS: \d+ checks: \d+ passed, 0 failed/m);
});

test('image: a broken layout exits 1, and --json and --tap say which check failed', { skip }, () => {
  const json = conformance('image', bad, '--json');
  assert.equal(json.status, 1);
  const report = JSON.parse(json.stdout) as Report;
  assert.equal(report.ok, false);
  assert.equal(report.suite, 'image');
  const failed = report.results.filter((x) => x.status === 'fail');
  assert.deepEqual(failed.map((x) => x.id), ['config.diff-ids']);
  assert.equal(failed[0].required, true);
  assert.match(failed[0].url, /config\.md#layer-diffid$/);
  const tap = conformance('image', bad, '--tap');
  assert.equal(tap.status, 1);
  assert.match(tap.stdout, /^TAP version 13\n1\.\.\d+\n/);
  assert.match(tap.stdout, /^not ok \d+ config\.diff-ids - /m);
  assert.match(tap.stdout, /^ok \d+ layout\.blob-digests - /m);
});

test('image: a directory that is not a layout exits 2 with one line on stderr', { skip }, () => {
  const r = conformance('image', join(tmp, 'nothing-here'));
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /not an image layout directory: .*nothing-here/);
});

test('runtime --list lists dozens of checks with their level and spec section, without running anything', { skip }, () => {
  const r = conformance('runtime', '--runtime', 'true', '--list');
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => /^(MUST|SHOULD) /.test(l));
  assert.ok(lines.length >= 100, `${lines.length} checks listed`);
  assert.ok(lines.every((l) => /https:\/\/github\.com\/opencontainers\/runtime-(spec|tools)\//.test(l)), 'a check without a spec link');
});

test('runtime: a runtime that does not exist exits 2 with one line on stderr', { skip }, () => {
  const r = conformance('runtime', '--runtime', join(tmp, 'no-such-runtime'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /runtime not found or not executable/);
});

test('runtime: runc passes the state checks, printed as TAP, exit 0; `npm run conformance` runs the same CLI', { skip }, async (t) => {
  const why = (await runtimeSuiteSkipReason()) ?? (which('runc') ? null : 'runc not installed');
  if (why) return t.skip(why);
  const r = spawnSync('npm', ['run', '-s', 'conformance', '--', 'runtime', '--runtime', 'runc', '--filter', '^runtime\\.state\\.', '--tap'], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^TAP version 13\n1\.\.\d+\n/);
  assert.match(r.stdout, /^ok \d+ runtime\.state\.running - /m);
  assert.doesNotMatch(r.stdout, /^not ok/m);
});
