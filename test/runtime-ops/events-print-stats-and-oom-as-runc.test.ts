// keel events: runc's JSON lines — one stats event with --stats, else stats every interval and oom
// notices from the OOM killer, until the container stops.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, waitFor, which, sh, tempDir, removeTemps } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => { keel.cleanup(); removeTemps(); });

function lines(out: string): any[] {
  assert.ok(out.endsWith('\n'), 'each event ends with a newline');
  return out.trimEnd().split('\n').map((l) => JSON.parse(l));
}

test('events --stats prints one stats event of the container (pids, memory, cpu) and exits', { skip }, () => {
  const bundle = makeBundle(['sh', '-c', 'sleep 1000 & sleep 1000 & wait']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ev1']).status, 0);
  assert.ok(waitFor(() => JSON.parse(keel(['ps', '-f', 'json', 'ev1']).stdout)?.length === 3));
  const r = keel(['events', '--stats', 'ev1']);
  assert.equal(r.status, 0, r.stderr);
  const events = lines(r.stdout);
  assert.equal(events.length, 1);
  const [e] = events;
  assert.deepEqual(Object.keys(e), ['type', 'id', 'data']);
  assert.equal(e.type, 'stats');
  assert.equal(e.id, 'ev1');
  assert.equal(e.data.pids.current, 3, 'three processes');
  assert.ok(e.data.memory.usage.usage > 0, 'memory in use');
  assert.ok(e.data.cpu.usage.total > 0, 'cpu time used');
});

/** The key paths of a JSON value (arrays as one element), to compare document shapes. */
function shape(v: unknown, at = ''): string[] {
  if (Array.isArray(v)) return v.length ? shape(v[0], `${at}[]`) : [`${at}[]`];
  if (v && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => [`${at}.${k}`, ...shape(x, `${at}.${k}`)]);
  return [];
}

test('events --stats has the shape runc events --stats has for the same bundle', { skip: skip || (!which('runc') && 'runc not installed') }, () => {
  const bundle = makeBundle(['sleep', '1000'], (c) => { c.linux.resources = { memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 100 } }; });
  const runcRoot = tempDir('keel-ops-runc-');
  assert.equal(keel(['run', '-d', '-b', bundle, 'ev2']).status, 0);
  const rr = spawnSync('runc', ['--root', runcRoot, 'run', '-d', '-b', bundle, 'ev2r'], { stdio: 'ignore' });
  assert.equal(rr.status, 0, 'runc run -d');
  try {
    const k = lines(keel(['events', '--stats', 'ev2']).stdout)[0];
    const r = sh('runc', ['--root', runcRoot, 'events', '--stats', 'ev2r']);
    assert.equal(r.status, 0, r.stderr);
    const rdoc = lines(r.stdout)[0];
    assert.deepEqual(Object.keys(k), Object.keys(rdoc));
    // Counters differ; the fields present must not (runc leaves zero values out as keel does).
    const ks = shape(k.data).filter((p) => !p.startsWith('.memory.raw.')).sort();
    const rs = shape(rdoc.data).filter((p) => !p.startsWith('.memory.raw.')).sort();
    // (I/O and throttling entries appear only once there was I/O or throttling, the page cache
    // only once the cgroup was charged for some: a file cached by the other container is not.)
    const activity = (p: string) => /^\.(blkio|cpu\.throttling)\./.test(p) || p === '.memory.cache';
    assert.deepEqual(rs.filter((p) => !ks.includes(p) && !activity(p)), [], 'fields runc reports that keel does not');
    assert.deepEqual(ks.filter((p) => !rs.includes(p) && !activity(p)), [], 'fields keel reports that runc does not');
    assert.equal(k.data.pids.limit, rdoc.data.pids.limit);
    assert.equal(k.data.memory.usage.limit, rdoc.data.memory.usage.limit);
  } finally {
    sh('runc', ['--root', runcRoot, 'delete', '--force', 'ev2r']);
  }
});

test('events streams stats every interval and ends when the container stops', { skip }, () => {
  const bundle = makeBundle(['sleep', '1.3']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ev3']).status, 0);
  const t0 = Date.now();
  const r = keel(['events', '--interval', '300ms', 'ev3'], { timeout: 10_000 });
  const took = Date.now() - t0;
  assert.equal(r.status, 0, r.stderr);
  const events = lines(r.stdout);
  assert.ok(events.length >= 2 && events.length <= 5, `about 1.3 s / 300 ms events, got ${events.length}`);
  for (const e of events) { assert.equal(e.type, 'stats'); assert.equal(e.id, 'ev3'); assert.ok(e.data.memory); }
  assert.ok(took < 8000, `the stream ended with the container (${took} ms)`);
});

test('events reports the OOM killer acting in the container', { skip }, () => {
  // 16 MiB of memory; tail keeps 64 MB of its input in memory.
  const bundle = makeBundle(['sh', '-c', 'sleep 0.5; head -c 80000000 /dev/zero | tail -c 64000000 > /dev/null; sleep 0.5'], (c) => {
    c.linux.resources = { memory: { limit: 16 * 1024 * 1024 } };
  });
  assert.equal(keel(['run', '-d', '-b', bundle, 'ev4']).status, 0);
  const r = keel(['events', '--interval', '10s', 'ev4'], { timeout: 15_000 });
  assert.equal(r.status, 0, r.stderr);
  const events = lines(r.stdout);
  // The kernel notifies each time the cgroup hits its limit and the killer runs: one or more notices.
  const oom = events.filter((e) => e.type === 'oom');
  assert.ok(oom.length >= 1, r.stdout);
  for (const e of oom) assert.deepEqual(e, { type: 'oom', id: 'ev4' }, 'runc\'s oom event: no data');
});

test('events refuses a bad interval and a stopped container as runc does', { skip }, () => {
  const bundle = makeBundle(['sleep', '1000']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ev5']).status, 0);
  const zero = keel(['events', '--interval', '0s', 'ev5']);
  assert.equal(zero.status, 1);
  assert.equal(zero.stderr, 'duration interval must be greater than 0\n');
  const bad = keel(['events', '--interval', '5 parsecs', 'ev5']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^invalid value for --interval: "5 parsecs" is not a duration/);
  assert.equal(keel(['kill', 'ev5', 'KILL']).status, 0);
  assert.ok(waitFor(() => JSON.parse(keel(['state', 'ev5']).stdout).status === 'stopped'));
  for (const args of [['events', '--stats', 'ev5'], ['events', 'ev5']]) {
    const r = keel(args);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'container with id ev5 is not running\n');
  }
});
