// Engines kill runtimes (timeouts, OOM kills, node drains). keel-conformance's crash sweep SIGKILLs
// keel's create, start, exec, run and delete at delays calibrated on this machine and spread over
// each whole command (and just after the container process appears), on plain bundles, bundles
// with a user namespace and bundles with every kind of hook; after each kill it runs
// `keel delete --force ID` and looks for anything left: processes, cgroup directories in every
// hierarchy, mounts of the bundle, state entries, stray files. keel must leave nothing in 500
// kills. runc's figure from the same sweep is reported beside it (runc leaves cgroup directories
// after some of its kills; it is not asserted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { CrashReport } from '../../conformance/crash/index.js';
import { canRunContainers, repo, skipReason, which } from './helpers.js';

const cli = join(repo, 'dist/keel-conformance');
const skip = !canRunContainers ? skipReason : !existsSync(cli) ? 'dist/keel-conformance not built (npm run build)' : !which('gcc') ? 'gcc not installed (the sweep\'s probe is compiled with gcc -static)' : false;
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;

function sweep(runtime: string, kills: number): CrashReport {
  const r = spawnSync(cli, ['crash', '--runtime', runtime, '--kills', String(kills), '--json'], { encoding: 'utf8', env, maxBuffer: 64 << 20 });
  assert.ok(r.status === 0 || r.status === 1, `the sweep of ${runtime} could not run (exit ${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as CrashReport;
}

function summary(r: CrashReport): string {
  const kinds = Object.entries(r.total.byKind).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n} (${r.total.items[k as keyof typeof r.total.items]})`);
  return `${r.total.withLeftovers} of ${r.total.kills} kills left something${kinds.length ? `: ${kinds.join(', ')}` : ''} (${r.total.landed} landed, ${r.total.aimed} aimed, seed ${r.seed})`;
}

test('keel: 500 kills across create, start, exec, run and delete leave nothing after delete --force', { skip }, (t) => {
  const r = sweep(join(repo, 'dist/keel'), 500);
  t.diagnostic(`keel: ${summary(r)}`);
  const what = r.failures.slice(0, 10).map((k) => `#${k.n} ${k.command} (${k.variant}, ${k.mode} ${k.delayMs} ms): ${k.leftovers.map((l) => `${l.kind} ${l.what}`).join('; ')}${k.deleteError ? `; delete --force failed: ${k.deleteError}` : ''}`).join('\n');
  assert.equal(r.total.withLeftovers, 0, `${summary(r)}\n${what}`);
  assert.equal(r.total.deleteFailures, 0, 'delete --force always succeeds');
  assert.equal(r.setupFailures, 0, 'keel never fails to create, start or run a container of the sweep unless killed');
  // The sweep is only worth its figure if the kills hit the commands while they ran.
  for (const [command, f] of Object.entries(r.perCommand)) assert.ok(f!.landed >= f!.kills / 4, `${command}: only ${f!.landed} of ${f!.kills} kills landed before the command finished`);
});

test('runc: the same sweep, reported beside keel\'s', { skip: skip || (!which('runc') && 'runc not installed') }, (t) => {
  const r = sweep('runc', 150);
  t.diagnostic(`runc: ${summary(r)}`);
  assert.equal(r.total.kills, 150);
  assert.ok(r.total.landed >= r.total.kills / 4, `only ${r.total.landed} of ${r.total.kills} kills landed before runc finished`);
});
