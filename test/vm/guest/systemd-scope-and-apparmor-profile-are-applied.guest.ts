// With systemd as PID 1: `keel --systemd-cgroup` puts the container in a transient scope made over
// D-Bus (Delegate=yes, limits as unit properties, changed by update too) and stops it on delete. With AppArmor in the
// kernel: process.apparmorProfile confines the container's process; an unknown profile is one
// clear error that leaves nothing behind.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundle, cgRead, cgroupDirOf, CG, exists, notGuest, ok, pidOf, runtime, tempDir } from './helpers.js';

const MiB = 1024 * 1024;

function unitProps(unit: string, props: string[]): Record<string, string> {
  const r = spawnSync('systemctl', ['show', unit, '-p', props.join(',')], { encoding: 'utf8' });
  return Object.fromEntries(r.stdout.trim().split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

describe('the systemd cgroup driver', { skip: notGuest }, () => {
  const keel = runtime(undefined, ['--systemd-cgroup']);
  const id = `sd-${process.pid}`;
  const unit = `keel-${id}.scope`;
  let pid = 0;
  before(() => {
    const b = bundle('sleep 100000', (c) => {
      c.linux.cgroupsPath = `system.slice:keel:${id}`;
      c.linux.resources = { memory: { limit: 64 * MiB }, pids: { limit: 30 }, cpu: { shares: 2048, quota: 25000, period: 100000 } };
    });
    ok(keel(['run', '-d', '--bundle', b, id]), 'run -d --systemd-cgroup');
    pid = pidOf(keel, id);
  });
  after(() => keel.cleanup());

  test('the container is a transient scope in the slice of cgroupsPath, delegated, holding the init', () => {
    const p = unitProps(unit, ['ActiveState', 'Delegate', 'Slice', 'ControlGroup']);
    assert.equal(p.ActiveState, 'active');
    assert.equal(p.Delegate, 'yes');
    assert.equal(p.Slice, 'system.slice');
    assert.equal(p.ControlGroup, `/system.slice/${unit}`);
    assert.equal(cgroupDirOf(pid), join(CG, 'system.slice', unit));
  });

  test('limits systemd owns are unit properties, and the cgroup files agree', () => {
    const p = unitProps(unit, ['MemoryMax', 'TasksMax', 'CPUWeight', 'CPUQuotaPerSecUSec']);
    assert.equal(p.MemoryMax, String(64 * MiB));
    assert.equal(p.TasksMax, '30');
    assert.equal(p.CPUWeight, '79');
    assert.equal(p.CPUQuotaPerSecUSec, '250ms');
    const dir = `system.slice/${unit}`;
    assert.equal(cgRead(dir, 'memory.max'), String(64 * MiB));
    assert.equal(cgRead(dir, 'pids.max'), '30');
    assert.equal(cgRead(dir, 'cpu.max'), '25000 100000');
  });

  test('update changes the unit properties with the files, so a daemon-reload keeps the new limits', () => {
    ok(keel(['update', '--memory', String(96 * MiB), '--pids-limit', '40', '--cpu-quota', '50000', id]), 'update');
    ok(keel(['update', '--memory', '-1', id]), 'update --memory -1 (unlimited)');
    // systemd applies its unit properties to the cgroup again on a reload: they must be the new ones.
    const reload = spawnSync('systemctl', ['daemon-reload'], { encoding: 'utf8' });
    assert.equal(reload.status, 0, reload.stderr);
    const p = unitProps(unit, ['MemoryMax', 'TasksMax', 'CPUQuotaPerSecUSec']);
    assert.equal(p.MemoryMax, 'infinity');
    assert.equal(p.TasksMax, '40');
    assert.equal(p.CPUQuotaPerSecUSec, '500ms');
    const dir = `system.slice/${unit}`;
    assert.equal(cgRead(dir, 'memory.max'), 'max');
    assert.equal(cgRead(dir, 'pids.max'), '40');
    assert.equal(cgRead(dir, 'cpu.max'), '50000 100000');
  });

  test('delete stops the scope and its cgroup is gone', () => {
    ok(keel(['delete', '--force', id]), 'delete');
    const p = unitProps(unit, ['ActiveState']);
    assert.notEqual(p.ActiveState, 'active');
    assert.ok(!exists(join(CG, 'system.slice', unit)));
  });

  test('a cgroupsPath that is not slice:prefix:name is one clear error, and no unit is made', () => {
    const bad = `sdbad-${process.pid}`;
    const b = bundle('true', (c) => { c.linux.cgroupsPath = '/not/a/slice'; });
    const r = keel(['run', '--bundle', b, bad]);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /linux\.cgroupsPath "\/not\/a\/slice" must have the form "slice:prefix:name"/);
    assert.equal(keel(['list', '-q']).stdout.trim(), '');
  });
});

describe('AppArmor', { skip: notGuest }, () => {
  const keel = runtime();
  const profile = `keel-vm-test-${process.pid}`;
  before(() => {
    const file = join(tempDir(), 'profile');
    writeFileSync(file, `#include <tunables/global>
profile ${profile} flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>
  file,
  capability,
  network,
  signal,
  deny /tmp/denied w,
}
`);
    const r = spawnSync('apparmor_parser', ['-r', '-K', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, `apparmor_parser: ${r.stderr}`);
  });
  after(() => keel.cleanup());

  test('process.apparmorProfile confines the container process (enforce mode, its deny rule holds)', () => {
    const b = bundle('cat /proc/1/attr/current; echo; if touch /tmp/denied 2>/dev/null; then echo WROTE; else echo DENIED; fi; touch /tmp/allowed && echo ALLOWED', (c) => {
      c.process.apparmorProfile = profile;
      c.linux.cgroupsPath = `/keel-vm/aa-${process.pid}`;
    });
    const r = keel(['run', '--bundle', b, `aa-${process.pid}`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^${profile} \\(enforce\\)`, 'm'));
    assert.match(r.stdout, /^DENIED$/m);
    assert.match(r.stdout, /^ALLOWED$/m);
  });

  test('an AppArmor profile the kernel does not know is one clear error, and leaves no cgroup', () => {
    const cid = `aabad-${process.pid}`;
    const b = bundle('true', (c) => {
      c.process.apparmorProfile = 'keel-no-such-profile';
      c.linux.cgroupsPath = `/keel-vm/${cid}`;
    });
    const r = keel(['run', '--bundle', b, cid]);
    assert.notEqual(r.status, 0, `exit ${r.status}, stdout ${r.stdout}`);
    assert.match(r.stderr, /./, `exit ${r.status} without an error message; stdout ${r.stdout}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /AppArmor profile "keel-no-such-profile"/);
    assert.ok(!exists(join(CG, 'keel-vm', cid)), 'the cgroup was left behind');
    assert.equal(keel(['list', '-q']).stdout.trim(), '');
  });
});
