// stats() has the shape and the values `runc events --stats` reports: both read the same cgroup of a
// running runc container here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCgroupManager, exactJson, formatEvent, MAX_UINT64 } from '../../src/runtime/cgroups/index.js';
import { isRoot, layout } from './helpers.js';
import { busyboxMissing, makeBusyboxBundle } from '../fixtures/busybox-bundle.js';

const runc = spawnSync('runc', ['--version']).status === 0;
const skip = !isRoot ? 'needs root' : !runc ? 'runc not installed' : busyboxMissing ? busyboxMissing : layout().mode === 'v2' ? 'compares v1 files' : false;

/** Key paths of a JSON value ("memory.usage.limit", "cpu.usage.percpu[]" ...). */
function shape(v: unknown, at = ''): string[] {
  if (Array.isArray(v)) return [`${at}[]`];
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).filter((k) => !(at === 'memory.raw'));
    return keys.flatMap((k) => shape((v as Record<string, unknown>)[k], at ? `${at}.${k}` : k)).concat(at === 'memory.raw' ? ['memory.raw{}'] : []);
  }
  return [at];
}

test('stats() of a runc container: same fields and the same limits, counts and cpuset as runc events --stats', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-stats-'));
  const id = `keel-stats-${process.pid}`;
  try {
    makeBusyboxBundle(dir, ['sh', '-c', 'sleep 30 & sleep 30'], (cfg) => {
      cfg.linux.resources = { memory: { limit: 64 << 20, reservation: 16 << 20 }, pids: { limit: 50 }, cpu: { shares: 512, cpus: '0' } };
    });
    assert.equal(spawnSync('runc', ['run', '-d', '--bundle', dir, id], { stdio: 'ignore' }).status, 0, 'runc run');
    try {
      spawnSync('sleep', ['0.2']);
      const theirs = JSON.parse(spawnSync('runc', ['events', '--stats', id], { encoding: 'utf8' }).stdout);
      const cg = createCgroupManager({ containerId: id }); // same cgroupsPath (none) → same directories as runc
      const mine = cg.stats();
      assert.equal(theirs.type, 'stats');
      // Same fields, except counters that are zero on one side at its moment of reading.
      const a = new Set(shape(theirs.data));
      const b = new Set(shape(JSON.parse(exactJson(mine))));
      const volatile = /^(cpu\.(usage\.(total|kernel|user)|throttling)|memory\.(cache|usage\.(usage|max)|swap\.(usage|max)|kernel\.(usage|max)|kernelTCP\.(usage|max)))/;
      const onlyTheirs = [...a].filter((k) => !b.has(k) && !volatile.test(k));
      const onlyMine = [...b].filter((k) => !a.has(k) && !volatile.test(k));
      assert.deepEqual(onlyTheirs, [], 'fields only runc reports');
      assert.deepEqual(onlyMine, [], 'fields only keel reports');
      // Limits, pid counts, cpuset: equal.
      assert.equal(mine.memory.usage.limit, theirs.data.memory.usage.limit);
      assert.equal(mine.memory.usage.limit, 64 << 20);
      assert.equal(mine.memory.swap.limit, theirs.data.memory.swap.limit);
      assert.equal(mine.memory.kernel.limit, theirs.data.memory.kernel.limit);
      assert.equal(mine.memory.kernelTCP.limit, theirs.data.memory.kernelTCP.limit);
      assert.deepEqual(mine.pids, theirs.data.pids);
      assert.equal(mine.pids.limit, 50);
      assert.ok((mine.pids.current ?? 0) >= 2);
      assert.deepEqual(mine.cpuset, theirs.data.cpuset);
      assert.deepEqual(Object.keys(mine.memory.raw ?? {}).sort(), Object.keys(theirs.data.memory.raw).sort());
      assert.deepEqual(mine.hugetlb, theirs.data.hugetlb);
      assert.deepEqual(mine.blkio, theirs.data.blkio);
      assert.ok((mine.cpu.usage.total ?? 0) >= (theirs.data.cpu.usage.total ?? 0), 'cpu time only grows');
      assert.equal(mine.cpu.usage.percpu?.length, theirs.data.cpu.usage.percpu?.length);
      // The event line prints big limits exactly, as Go does.
      const line = formatEvent('stats', id, mine);
      assert.match(line, /"kernel":\{"limit":9223372036854771712/);
      assert.ok(line.startsWith(`{"type":"stats","id":"${id}","data":{"cpu":`));
    } finally {
      spawnSync('runc', ['delete', '-f', id]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('exact JSON: 2^64-1 and 2^63-4096 print as Go prints them', () => {
  assert.equal(exactJson({ a: MAX_UINT64, b: 9223372036854771712, c: [1, 'x', null] }), '{"a":18446744073709551615,"b":9223372036854771712,"c":[1,"x",null]}');
});
