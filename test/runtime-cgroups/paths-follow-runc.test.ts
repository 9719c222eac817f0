// Where a container's cgroup goes: the same directories runc 1.1 uses for the same cgroupsPath
// (empty, relative, absolute), checked against real runc containers on this host.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeelError } from '../../src/util/errors.js';
import {
  cleanCgroupPath, createCgroupManager, detectCgroupLayout, expandSlice, parseCgroupMounts, readProcCgroups, systemdCgroupPath,
} from '../../src/runtime/cgroups/index.js';
import { cleanupParent, isRoot, parentGone, uniqueParent } from './helpers.js';
import { busyboxMissing, makeBusyboxBundle } from '../fixtures/busybox-bundle.js';

const runc = spawnSync('runc', ['--version']).status === 0;
const skipRunc = !isRoot ? 'needs root' : !runc ? 'runc not installed' : busyboxMissing ?? false;

const parents: string[] = [];
after(() => parents.forEach(cleanupParent));

test('the layout of this host: v1 controller hierarchies plus the unified cgroup2 mount', () => {
  const l = detectCgroupLayout();
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  if (/ - cgroup cgroup /.test(mounts)) {
    assert.notEqual(l.mode, 'v2');
    for (const c of ['memory', 'pids', 'freezer']) if (mounts.includes(`,${c}\n`)) assert.ok(l.v1[c], c);
  }
  if (/ - cgroup2 /.test(mounts)) {
    assert.ok(l.unified);
    assert.deepEqual(l.unifiedControllers, readFileSync(join(l.unified.mountpoint, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean));
  }
});

test('mountinfo parsing: pure v2, pure v1 with co-mounted cpu,cpuacct, hybrid', () => {
  const v2 = parseCgroupMounts('30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n', () => ['cpu', 'memory', 'pids']);
  assert.equal(v2.mode, 'v2');
  assert.deepEqual(v2.unified, { mountpoint: '/sys/fs/cgroup', root: '/' });
  assert.deepEqual(v2.unifiedControllers, ['cpu', 'memory', 'pids']);
  const v1 = parseCgroupMounts(
    [
      '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct',
      '33 31 0:30 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory',
      '34 31 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd',
    ].join('\n'),
    () => [],
  );
  assert.equal(v1.mode, 'v1');
  assert.equal(v1.v1.cpu, v1.v1.cpuacct);
  assert.equal(v1.v1.memory!.root, '/docker/abc');
  assert.ok(v1.v1['name=systemd']);
});

test('cgroupsPath is cleaned so it cannot climb out of the hierarchy', () => {
  assert.equal(cleanCgroupPath('/a/../../b'), '/b');
  assert.equal(cleanCgroupPath('a/../../b/./c/'), 'b/c');
  assert.equal(cleanCgroupPath('../..'), '');
  const m = createCgroupManager({ cgroupsPath: '../../../etc', containerId: 'x', ownCgroups: { memory: '/p', '': '/' } });
  for (const d of [...Object.values(m.paths.v1), m.paths.unified ?? '']) assert.ok(!d.includes('..') && d.startsWith('/sys/fs/cgroup/'), d);
});

test('--systemd-cgroup: slice:prefix:name becomes a scope in the expanded slice; without systemd it is refused', () => {
  assert.equal(expandSlice('machine-qemu-1.slice', 'x'), '/machine.slice/machine-qemu.slice/machine-qemu-1.slice');
  assert.equal(systemdCgroupPath('system.slice:docker:abc', 'abc'), '/system.slice/docker-abc.scope');
  assert.equal(systemdCgroupPath('', 'id1'), '/system.slice/keel-id1.scope');
  assert.throws(() => systemdCgroupPath('not-a-triple', 'x'), /slice:prefix:name/);
  if (!existsSync('/run/systemd/system')) {
    assert.throws(() => createCgroupManager({ cgroupsPath: 'system.slice:keel:x', containerId: 'x', systemd: true }), (e: unknown) =>
      e instanceof KeelError && /systemd.*not running.*\/run\/systemd\/system/.test(e.message));
  }
});

test('relative and absolute paths resolve like runc: per-hierarchy own cgroup for relative ones', () => {
  const own = { memory: '/process_api/abc', cpu: '/', '': '/' };
  const layout = parseCgroupMounts(
    '1 1 0:1 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n2 1 0:2 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n3 1 0:3 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n',
    () => [],
  );
  const rel = createCgroupManager({ containerId: 'c1', layout, ownCgroups: own });
  assert.equal(rel.paths.v1.memory, '/sys/fs/cgroup/memory/process_api/abc/c1');
  assert.equal(rel.paths.v1.cpu, '/sys/fs/cgroup/cpu/c1');
  assert.equal(rel.paths.unified, '/sys/fs/cgroup/unified/c1');
  const abs = createCgroupManager({ cgroupsPath: '/keel/c1', containerId: 'c1', layout, ownCgroups: own });
  assert.equal(abs.paths.v1.memory, '/sys/fs/cgroup/memory/keel/c1');
  // Pure v2: relative paths go under the parent of the runtime's own cgroup.
  const v2 = parseCgroupMounts('1 1 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n', () => ['memory']);
  const r2 = createCgroupManager({ cgroupsPath: 'x/y', containerId: 'c1', layout: v2, ownCgroups: { '': '/user.slice/session-1.scope' } });
  assert.equal(r2.paths.unified, '/sys/fs/cgroup/user.slice/x/y');
});

function runcCgroups(cgroupsPath: string | undefined, id: string): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'keel-cg-bundle-'));
  try {
    makeBusyboxBundle(dir, ['sleep', '30'], (cfg) => {
      if (cgroupsPath !== undefined) cfg.linux.cgroupsPath = cgroupsPath;
    });
    // The detached container inherits runc's stdio: no pipes, or spawnSync waits for it to exit.
    const run = spawnSync('runc', ['run', '-d', '--bundle', dir, id], { stdio: 'ignore' });
    assert.equal(run.status, 0, `runc run -d ${id} failed`);
    try {
      const state = JSON.parse(spawnSync('runc', ['state', id], { encoding: 'utf8' }).stdout);
      return readProcCgroups(state.pid);
    } finally {
      spawnSync('runc', ['delete', '-f', id]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('empty, relative and absolute cgroupsPath: the directories runc uses for the same config', { skip: skipRunc }, () => {
  const parent = uniqueParent('runc');
  parents.push(parent);
  const l = detectCgroupLayout();
  for (const [label, cgroupsPath] of [['empty', undefined], ['relative', `${parent.slice(1)}/rel`], ['absolute', `${parent}/abs`]] as const) {
    const id = `keel-cgtest-${process.pid}-${label}`;
    const theirs = runcCgroups(cgroupsPath, id);
    const mine = createCgroupManager({ containerId: id, ...(cgroupsPath ? { cgroupsPath } : {}) });
    for (const [controller, dir] of Object.entries(mine.paths.v1)) {
      const h = l.v1[controller]!;
      assert.equal(dir, join(h.mountpoint, theirs[controller]!), `${label}: ${controller}`);
    }
    if (mine.paths.unified && theirs[''] !== undefined) {
      assert.equal(mine.paths.unified, join(l.unified!.mountpoint, theirs['']!), `${label}: unified`);
    }
  }
  cleanupParent(parent);
  assert.ok(parentGone(parent), 'test cgroups removed');
});
