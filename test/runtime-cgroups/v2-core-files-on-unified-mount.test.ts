// cgroup v2, exercised on this host's cgroup2 mount (/sys/fs/cgroup/unified, which holds no
// controllers but hugetlb): the manager in pure-v2 mode moves processes (cgroup.procs), freezes
// (cgroup.freeze + cgroup.events), kills (cgroup.kill), filters devices with an eBPF program, and
// refuses limits for controllers the hierarchy does not offer.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeelError } from '../../src/util/errors.js';
import { createCgroupManager, hugePageSizes, type CgroupLayout, type CgroupManager } from '../../src/runtime/cgroups/index.js';
import { queryDevicePrograms } from '../../src/runtime/sys/bpf.js';
import { cleanupParent, isRoot, layout, spawnWaiting, uniqueParent, wait } from './helpers.js';

const host = layout();
const unified = host.unified;
const skip = !isRoot ? 'needs root' : !unified ? 'no cgroup2 mount on this host' : false;
const v2Layout: CgroupLayout | undefined = unified && { mode: 'v2', v1: {}, unified, unifiedControllers: host.unifiedControllers };
const parents: string[] = [];
let rootSubtree = '';

before(() => {
  if (unified) rootSubtree = readFileSync(join(unified.mountpoint, 'cgroup.subtree_control'), 'utf8').trim();
});
after(() => {
  parents.forEach(cleanupParent);
  // Leave the root's enabled controllers as they were.
  if (unified && isRoot) {
    const now = readFileSync(join(unified.mountpoint, 'cgroup.subtree_control'), 'utf8').trim().split(/\s+/).filter(Boolean);
    const was = new Set(rootSubtree.split(/\s+/));
    for (const c of now) {
      if (was.has(c)) continue;
      // Removed cgroups linger for a moment (dying); until they are gone the controller is busy.
      for (let i = 0; i < 50; i++) {
        try {
          writeFileSync(join(unified.mountpoint, 'cgroup.subtree_control'), `-${c}`);
          break;
        } catch {
          spawnSync('sleep', ['0.05']);
        }
      }
    }
  }
});

function manager(tag: string, l: CgroupLayout = v2Layout!): CgroupManager {
  const parent = uniqueParent(tag);
  parents.push(parent);
  return createCgroupManager({ cgroupsPath: `${parent}/c`, containerId: tag, layout: l });
}
const read = (dir: string, file: string) => readFileSync(join(dir, file), 'utf8').trim();
const events = (dir: string) => Object.fromEntries(read(dir, 'cgroup.events').split('\n').map((l) => l.split(' ')));

test('v2: a child cgroup, a process moved in through cgroup.procs, cgroup.events says populated', { skip }, async () => {
  const cg = manager('v2procs');
  cg.create();
  const dir = cg.paths.unified!;
  assert.deepEqual(cg.dirs(), [dir]);
  const p = spawnWaiting('sleep 30');
  try {
    cg.apply(p.pid);
    assert.equal(read(dir, 'cgroup.procs'), String(p.pid));
    assert.ok(readFileSync(`/proc/${p.pid}/cgroup`, 'utf8').includes(`0::${cg.paths.inner}\n`));
    assert.equal(events(dir).populated, '1');
    assert.deepEqual(cg.pids(), [p.pid]);
  } finally {
    await cg.destroy({ kill: true });
  }
  assert.equal((await p.done).signal, 'SIGKILL');
  assert.ok(!existsSync(dir));
});

test('v2: freeze writes cgroup.freeze and waits for cgroup.events "frozen 1"; thaw resumes', { skip }, async () => {
  const cg = manager('v2freeze');
  cg.create();
  const dir = cg.paths.unified!;
  const tmp = mkdtempSync(join(tmpdir(), 'keel-v2freeze-'));
  const file = join(tmp, 'n');
  try {
    const p = spawnWaiting(`while :; do printf x >> ${file}; done`);
    cg.apply(p.pid);
    p.go();
    await wait(100);
    await cg.freeze();
    assert.equal(read(dir, 'cgroup.freeze'), '1');
    assert.equal(events(dir).frozen, '1');
    assert.equal(cg.freezerState(), 'frozen');
    const a = statSync(file).size;
    await wait(200);
    assert.equal(statSync(file).size, a);
    await cg.thaw();
    assert.equal(events(dir).frozen, '0');
    await wait(100);
    assert.ok(statSync(file).size > a);
  } finally {
    await cg.destroy({ kill: true });
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('v2: killAll(SIGKILL) uses cgroup.kill and waits until cgroup.events says unpopulated', { skip }, async (t) => {
  const cg = manager('v2kill');
  cg.create();
  const dir = cg.paths.unified!;
  if (!existsSync(join(dir, 'cgroup.kill'))) return t.skip('kernel without cgroup.kill');
  const p = spawnWaiting('sleep 30 & sleep 30 & wait');
  cg.apply(p.pid);
  p.go();
  await wait(100);
  assert.equal(cg.pids().length, 3);
  await cg.killAll('SIGKILL');
  assert.deepEqual(cg.pids(), []);
  assert.equal(events(dir).populated, '0');
  assert.equal((await p.done).signal, 'SIGKILL');
  await cg.destroy();
});

test('v2: device rules become an eBPF program: /dev/null allowed, /dev/zero denied; updates replace it', { skip }, async () => {
  const cg = manager('v2dev');
  cg.create();
  const dir = cg.paths.unified!;
  try {
    cg.set({ devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' }] });
    const fd = (await import('node:fs')).openSync(dir, 'r');
    try {
      assert.equal(queryDevicePrograms(fd).length, 1);
    } finally {
      (await import('node:fs')).closeSync(fd);
    }
    const probe = 'echo hi > /dev/null && echo null-ok; (head -c1 /dev/zero >/dev/null) 2>/dev/null && echo zero-ok || echo zero-denied';
    const p = spawnWaiting(probe);
    cg.apply(p.pid);
    p.go();
    const r = await p.done;
    assert.match(r.stdout, /null-ok/);
    assert.match(r.stdout, /zero-denied/);

    // Allow everything but reading /dev/zero (deny-list mode); the old program is detached.
    cg.set({ devices: [{ allow: true, access: 'rwm' }, { allow: false, type: 'c', major: 1, minor: 5, access: 'r' }] });
    const fd2 = (await import('node:fs')).openSync(dir, 'r');
    try {
      assert.equal(queryDevicePrograms(fd2).length, 1);
    } finally {
      (await import('node:fs')).closeSync(fd2);
    }
    const q = spawnWaiting(`${probe}; echo x > /dev/zero && echo zero-write-ok`);
    cg.apply(q.pid);
    q.go();
    const s = await q.done;
    assert.match(s.stdout, /null-ok/);
    assert.match(s.stdout, /zero-denied/);
    assert.match(s.stdout, /zero-write-ok/);
  } finally {
    await cg.destroy({ kill: true });
  }
});

test('v2: a limit for a controller the hierarchy lacks is one KeelError naming it', { skip }, () => {
  const cg = manager('v2missing');
  cg.create();
  try {
    for (const [resources, field] of [
      [{ memory: { limit: 1 << 26 } }, 'linux.resources.memory'],
      [{ pids: { limit: 10 } }, 'linux.resources.pids.limit'],
      [{ cpu: { shares: 100 } }, 'linux.resources.cpu'],
      [{ unified: { 'memory.max': '100' } }, 'linux.resources.unified["memory.max"]'],
    ] as const) {
      if (host.unifiedControllers.includes(field.split('.')[2]!.split('[')[0]!)) continue;
      assert.throws(() => cg.set(resources), (e: unknown) => {
        assert.ok(e instanceof KeelError);
        assert.ok(e.message.startsWith(`cannot set ${field}`), e.message);
        assert.match(e.message, /not available/);
        return true;
      });
    }
  } finally {
    cg.destroy().catch(() => undefined);
  }
});

test('hugetlb limits: written to the hierarchy that has the controller (v2 here), page size checked', { skip }, async (t) => {
  const sizes = hugePageSizes();
  if (!sizes.includes('2MB')) return t.skip('no 2MB huge pages');
  for (const l of [host, v2Layout!]) {
    const hugetlb = l.v1.hugetlb ? 'v1' : l.unifiedControllers.includes('hugetlb') ? 'v2' : undefined;
    if (!hugetlb) continue;
    const cg = manager(`huge${l.mode}`, l);
    cg.create();
    try {
      cg.set({ hugepageLimits: [{ pageSize: '2MB', limit: 8 << 20 }] });
      const file = hugetlb === 'v1' ? join(cg.paths.v1.hugetlb!, 'hugetlb.2MB.limit_in_bytes') : join(cg.paths.unified!, 'hugetlb.2MB.max');
      assert.equal(readFileSync(file, 'utf8').trim(), String(8 << 20));
      assert.throws(() => cg.set({ hugepageLimits: [{ pageSize: '3MB', limit: 1 }] }), /huge page size "3MB" in linux\.resources\.hugepageLimits\[0\]\.pageSize is not supported/);
      assert.ok('2MB' in cg.stats().hugetlb);
    } finally {
      await cg.destroy({ kill: true });
    }
  }
});
