// On a pure cgroup v2 host: every resource of config.json is written to its v2 file, `keel update`
// changes them, `keel events --stats` reports them, pause freezes through cgroup.freeze, the OOM
// killer's work shows in memory.events and as an event, the device filter (eBPF) is enforced, nested
// cgroupsPath is made and removed, and the init is born in its cgroup (CLONE_INTO_CGROUP).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { bundle, cgRead, cgroupDirOf, CG, diskDevice, exists, notGuest, ok, pidOf, runtime, until } from './helpers.js';

const MiB = 1024 * 1024;

describe('cgroup v2 resources of a keel container', { skip: notGuest }, () => {
  const keel = runtime();
  const id = `v2res-${process.pid}`;
  const cgPath = `/keel-vm/${id}`;
  let dir = '';
  let pid = 0;
  let disk: { major: number; minor: number };

  before(() => {
    disk = diskDevice();
    const b = bundle('echo ready; sleep 100000', (c) => {
      c.linux.cgroupsPath = cgPath;
      c.linux.resources = {
        memory: { limit: 64 * MiB, swap: 96 * MiB, reservation: 32 * MiB },
        cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0', mems: '0' },
        blockIO: {
          weight: 500,
          throttleReadBpsDevice: [{ major: disk.major, minor: disk.minor, rate: MiB }],
          throttleWriteIOPSDevice: [{ major: disk.major, minor: disk.minor, rate: 100 }],
        },
        pids: { limit: 42 },
        hugepageLimits: [{ pageSize: '2MB', limit: 4 * MiB }],
        unified: { 'memory.high': String(48 * MiB) },
      };
    });
    ok(keel(['run', '-d', '--bundle', b, id]), 'run -d');
    pid = pidOf(keel, id);
    dir = join(CG, cgPath);
  });
  after(() => keel.cleanup());

  test('the container init is in the cgroup of cgroupsPath', () => {
    assert.equal(cgroupDirOf(pid), dir);
    assert.ok(cgRead(dir, 'cgroup.procs').split('\n').includes(String(pid)));
  });
  test('memory.limit is memory.max', () => assert.equal(cgRead(dir, 'memory.max'), String(64 * MiB)));
  test('memory.swap (memory plus swap) becomes memory.swap.max = swap - limit', () => assert.equal(cgRead(dir, 'memory.swap.max'), String(32 * MiB)));
  test('memory.reservation is memory.low', () => assert.equal(cgRead(dir, 'memory.low'), String(32 * MiB)));
  test('cpu.shares is converted to cpu.weight as runc does', () => assert.equal(cgRead(dir, 'cpu.weight'), '20'));
  test('cpu.quota and cpu.period are cpu.max', () => assert.equal(cgRead(dir, 'cpu.max'), '50000 100000'));
  test('cpu.cpus and cpu.mems are cpuset.cpus and cpuset.mems', () => {
    assert.equal(cgRead(dir, 'cpuset.cpus'), '0');
    assert.equal(cgRead(dir, 'cpuset.mems'), '0');
  });
  test('blockIO.weight is converted to io.weight', () => assert.equal(cgRead(dir, 'io.weight'), 'default 4950'));
  test('blockIO throttles of the virtio disk are io.max', () => {
    assert.equal(cgRead(dir, 'io.max'), `${disk.major}:${disk.minor} rbps=${MiB} wbps=max riops=max wiops=100`);
  });
  test('pids.limit is pids.max', () => assert.equal(cgRead(dir, 'pids.max'), '42'));
  test('hugepageLimits are hugetlb.<size>.max (and the reservation limit)', () => {
    assert.equal(cgRead(dir, 'hugetlb.2MB.max'), String(4 * MiB));
    assert.equal(cgRead(dir, 'hugetlb.2MB.rsvd.max'), String(4 * MiB));
  });
  test('unified key/values are written as they are', () => assert.equal(cgRead(dir, 'memory.high'), String(48 * MiB)));

  test('keel update changes memory, pids and cpu on v2', () => {
    ok(keel(['update', '--memory', String(80 * MiB), '--memory-swap', String(80 * MiB), '--pids-limit', '50', '--cpu-quota', '20000', '--cpu-period', '100000', id]), 'update');
    assert.equal(cgRead(dir, 'memory.max'), String(80 * MiB));
    assert.equal(cgRead(dir, 'memory.swap.max'), '0');
    assert.equal(cgRead(dir, 'pids.max'), '50');
    assert.equal(cgRead(dir, 'cpu.max'), '20000 100000');
    const r = keel(['update', '--resources', '-', id], { input: JSON.stringify({ pids: { limit: 60 }, unified: { 'memory.high': String(70 * MiB) } }) });
    ok(r, 'update --resources -');
    assert.equal(cgRead(dir, 'pids.max'), '60');
    assert.equal(cgRead(dir, 'memory.high'), String(70 * MiB));
  });

  test('keel events --stats reports the v2 counters', () => {
    const ev = JSON.parse(ok(keel(['events', '--stats', id]), 'events --stats'));
    assert.equal(ev.type, 'stats');
    assert.equal(ev.id, id);
    const d = ev.data;
    assert.ok(d.memory.usage.usage > 0, 'memory usage');
    assert.equal(d.memory.usage.limit, 80 * MiB);
    assert.ok(d.pids.current >= 1, `pids.current ${d.pids.current}`);
    assert.equal(d.pids.limit, 60);
    assert.ok(d.cpu.usage.total > 0, 'cpu usage');
    assert.ok('2MB' in (d.hugetlb ?? {}), 'hugetlb stats of 2MB pages');
  });

  test('pause and resume go through cgroup.freeze', () => {
    ok(keel(['pause', id]), 'pause');
    assert.equal(cgRead(dir, 'cgroup.freeze'), '1');
    assert.match(cgRead(dir, 'cgroup.events'), /^frozen 1$/m);
    assert.equal(JSON.parse(ok(keel(['state', id]), 'state')).status, 'paused');
    ok(keel(['resume', id]), 'resume');
    assert.equal(cgRead(dir, 'cgroup.freeze'), '0');
    assert.match(cgRead(dir, 'cgroup.events'), /^frozen 0$/m);
    assert.equal(JSON.parse(ok(keel(['state', id]), 'state')).status, 'running');
  });

  test('the device filter (eBPF) denies a block device the config does not allow', () => {
    // In /dev (the config's /tmp is nodev, which would refuse the open before the filter does).
    const script = `mknod /dev/disk b ${disk.major} ${disk.minor} && if head -c 1 /dev/disk >/dev/null 2>/tmp/err; then echo READ; else cat /tmp/err; fi; echo x > /dev/null && echo NULL-OK`;
    const b = bundle(script, (c) => {
      c.linux.cgroupsPath = `/keel-vm/${id}-dev`;
      for (const k of ['bounding', 'effective', 'permitted']) c.process.capabilities[k].push('CAP_MKNOD');
      c.linux.devices = [{ path: '/dev/null', type: 'c', major: 1, minor: 3, fileMode: 0o666 }];
    });
    const r = keel(['run', '--bundle', b, `${id}-dev`]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Operation not permitted/);
    assert.doesNotMatch(r.stdout, /READ/);
    assert.match(r.stdout, /NULL-OK/);
  });

  test('the OOM killer shows in memory.events and as an oom event', async () => {
    const oomId = `${id}-oom`;
    const b = bundle('sleep 100000', (c) => {
      c.linux.cgroupsPath = `/keel-vm/${oomId}`;
      c.linux.resources = { memory: { limit: 24 * MiB, swap: 24 * MiB } };
    });
    ok(keel(['run', '-d', '--bundle', b, oomId]), 'run -d');
    const events = spawn(keel.bin, ['--root', keel.root, 'events', '--interval', '1h', oomId], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    events.stdout.on('data', (d) => (out += d));
    try {
      await new Promise((r) => setTimeout(r, 3000)); // events is watching memory.events
      const r = keel(['exec', oomId, 'sh', '-c', 'tail /dev/zero']);
      assert.equal(r.status, 137, `the memory hog was not OOM-killed: exit ${r.status} ${r.stderr}`);
      const oomKills = Number(/^oom_kill (\d+)$/m.exec(cgRead(`/keel-vm/${oomId}`, 'memory.events'))?.[1]);
      assert.ok(oomKills >= 1, `memory.events oom_kill ${oomKills}`);
      assert.ok(await until(() => /"type":"oom"/.test(out), 20_000), `no oom event from keel events: ${out}`);
    } finally {
      events.kill();
      keel(['delete', '--force', oomId]);
    }
  });

  test('delete removes the container cgroup and leaves its parents', () => {
    ok(keel(['delete', '--force', id]), 'delete');
    assert.ok(!exists(dir), `${dir} is still there`);
    assert.ok(exists(join(CG, 'keel-vm')));
  });
});

describe('nested cgroupsPath and the init born in its cgroup', { skip: notGuest }, () => {
  const keel = runtime();
  after(() => keel.cleanup());

  test('a nested cgroupsPath is created (controllers enabled down the path) and removed on delete', () => {
    const id = `nested-${process.pid}`;
    const path = `/keel-vm-nest/a/b/${id}`;
    const b = bundle('sleep 100000', (c) => {
      c.linux.cgroupsPath = path;
      c.linux.resources = { memory: { limit: 32 * MiB }, pids: { limit: 10 } };
    });
    ok(keel(['run', '-d', '--bundle', b, id]), 'run -d');
    assert.equal(cgroupDirOf(pidOf(keel, id)), join(CG, path));
    assert.equal(cgRead(path, 'memory.max'), String(32 * MiB));
    assert.match(cgRead('/keel-vm-nest/a/b', 'cgroup.subtree_control'), /memory.*pids/);
    ok(keel(['delete', '--force', id]), 'delete');
    assert.ok(!exists(join(CG, path)));
  });

  test('the init is born in its cgroup: pids.max 0 leaves no room for it (a migrated init would not count)', () => {
    const id = `born-${process.pid}`;
    const path = `/keel-vm/${id}`;
    const b = bundle('true', (c) => {
      c.linux.cgroupsPath = path;
      c.linux.resources = { unified: { 'pids.max': '0' } };
    });
    const r = keel(['run', '--bundle', b, id]);
    assert.notEqual(r.status, 0);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /cannot start the container's init in cgroup .*Resource temporarily unavailable/);
    assert.ok(!exists(join(CG, path)), 'the cgroup was left behind');
    assert.equal(keel(['list', '-q']).stdout.trim(), '');
  });
});
