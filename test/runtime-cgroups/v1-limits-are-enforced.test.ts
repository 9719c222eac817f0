// cgroup v1 on this host: processes are moved in, and the limits keel writes are the kernel's —
// the memory limit OOM-kills, the pids limit refuses forks, the freezer stops processes, device
// rules deny, CPU settings read back. Every cgroup made here is removed.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCgroupManager, DeviceEmulator, parseDeviceRules, type CgroupManager } from '../../src/runtime/cgroups/index.js';
import { cleanupParent, isRoot, layout, parentGone, spawnWaiting, uniqueParent, wait } from './helpers.js';

const l = layout();
const skip = !isRoot ? 'needs root' : l.mode === 'v2' ? 'no cgroup v1 hierarchies on this host' : false;
const parents: string[] = [];
after(() => parents.forEach(cleanupParent));

function manager(tag: string): CgroupManager {
  const parent = uniqueParent(tag);
  parents.push(parent);
  return createCgroupManager({ cgroupsPath: `${parent}/c`, containerId: tag });
}

const read = (dir: string, file: string) => readFileSync(join(dir, file), 'utf8').trim();

test('create() makes the directory in every hierarchy and apply() moves the process into each', { skip }, async () => {
  const cg = manager('apply');
  cg.create();
  for (const d of cg.dirs()) assert.ok(existsSync(d), d);
  const p = spawnWaiting('sleep 30');
  try {
    cg.apply(p.pid);
    for (const d of cg.dirs()) assert.ok(read(d, 'cgroup.procs').split('\n').includes(String(p.pid)), d);
    const mine = readFileSync(`/proc/${p.pid}/cgroup`, 'utf8');
    assert.ok(mine.includes(`memory:${cg.paths.inner}`) || mine.includes(`${cg.paths.inner}\n`), mine);
    assert.deepEqual(cg.pids(), [p.pid]);
    // A v1 cpuset cgroup starts empty; create() copied the parent's CPUs and memory nodes.
    if (cg.paths.v1.cpuset) assert.notEqual(read(cg.paths.v1.cpuset, 'cpuset.cpus'), '');
  } finally {
    await cg.destroy({ kill: true });
  }
  assert.equal((await p.done).signal, 'SIGKILL');
  for (const d of cg.dirs()) assert.ok(!existsSync(d), d);
});

test('memory limit: a process that allocates past it is OOM-killed, and the kill is reported', { skip }, async (t) => {
  const cg = manager('oom');
  cg.create();
  cg.set({ memory: { limit: 16 << 20, swap: 16 << 20, swappiness: 0 } });
  assert.equal(read(cg.paths.v1.memory!, 'memory.limit_in_bytes'), String(16 << 20));
  const events: (number | undefined)[] = [];
  const watch = await cg.watchOom((n) => events.push(n));
  try {
    const before = cg.oomKillCount() ?? 0;
    // tail keeps the current line in memory; /dev/zero never ends it.
    const p = spawnWaiting('exec tail /dev/zero');
    cg.apply(p.pid);
    p.go();
    const r = await p.done;
    assert.equal(r.signal, 'SIGKILL', `tail ended with ${r.code} ${r.signal} ${r.stderr}`);
    const after = cg.oomKillCount();
    if (after === undefined) return t.skip('kernel without oom_kill counter');
    assert.ok(after > before, `oom_kill ${before} → ${after}`);
    for (let i = 0; i < 100 && events.length === 0; i++) await wait(10);
    assert.ok(events.length >= 1, 'the eventfd on memory.oom_control fired');
    const stats = cg.stats();
    assert.equal(stats.memory.usage.limit, 16 << 20);
    assert.equal(stats.memory.usage.max, 16 << 20, 'peak usage reached the limit');
  } finally {
    watch.close();
    await cg.destroy({ kill: true });
  }
});

test('pids limit: forks beyond it fail', { skip }, async () => {
  const cg = manager('pids');
  cg.create();
  cg.set({ pids: { limit: 4 } });
  assert.equal(read(cg.paths.v1.pids!, 'pids.max'), '4');
  try {
    const p = spawnWaiting('for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; echo spawned; jobs -p | wc -l');
    cg.apply(p.pid);
    p.go();
    await wait(300);
    const current = Number(read(cg.paths.v1.pids!, 'pids.current'));
    assert.ok(current <= 4, `pids.current ${current}`);
    assert.ok(cg.stats().pids.limit === 4);
    await cg.killAll('SIGKILL');
    const r = await p.done;
    assert.match(r.stderr, /fork/i, r.stderr);
    cg.set({ pids: { limit: -1 } });
    assert.equal(read(cg.paths.v1.pids!, 'pids.max'), 'max');
  } finally {
    await cg.destroy({ kill: true });
  }
});

test('freezer: frozen processes stop making progress until thawed', { skip }, async () => {
  const cg = manager('freeze');
  cg.create();
  const dir = mkdtempSync(join(tmpdir(), 'keel-freeze-'));
  const counter = join(dir, 'n');
  try {
    const p = spawnWaiting(`while :; do printf x >> ${counter}; done`);
    cg.apply(p.pid);
    p.go();
    await wait(100);
    await cg.freeze();
    assert.equal(cg.freezerState(), 'frozen');
    assert.equal(read(cg.paths.v1.freezer!, 'freezer.state'), 'FROZEN');
    const size = () => statSync(counter).size;
    const a = size();
    await wait(200);
    assert.equal(size(), a, 'no progress while frozen');
    await cg.thaw();
    assert.equal(cg.freezerState(), 'thawed');
    await wait(100);
    assert.ok(size() > a, 'progress after thaw');
    await cg.killAll('SIGKILL');
    assert.equal((await p.done).signal, 'SIGKILL');
  } finally {
    await cg.destroy({ kill: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test('killAll with SIGTERM reaches every process, also ones forked later', { skip }, async () => {
  const cg = manager('killall');
  cg.create();
  try {
    const p = spawnWaiting('sleep 30 & sleep 30 & wait');
    cg.apply(p.pid);
    p.go();
    await wait(100);
    assert.equal(cg.pids().length, 3);
    await cg.killAll('SIGTERM');
    for (let i = 0; i < 200 && cg.pids().length; i++) await wait(10);
    assert.deepEqual(cg.pids(), []);
  } finally {
    await cg.destroy({ kill: true });
  }
});

test('device rules: deny all but /dev/null; devices.list is what the rules say; updates transition', { skip }, async () => {
  const cg = manager('devices');
  cg.create();
  const rules = [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' },
    { allow: true, type: 'c', major: 136, access: 'rwm' },
  ];
  cg.set({ devices: rules });
  const dir = cg.paths.v1.devices!;
  const expected = DeviceEmulator.fromRules(parseDeviceRules(rules, 'x')).listLines().sort();
  assert.deepEqual(read(dir, 'devices.list').split('\n').sort(), expected);
  try {
    const p = spawnWaiting('echo hi > /dev/null && echo null-ok; (head -c1 /dev/zero >/dev/null) 2>/dev/null && echo zero-ok || echo zero-denied');
    cg.apply(p.pid);
    p.go();
    const r = await p.done;
    assert.match(r.stdout, /null-ok/);
    assert.match(r.stdout, /zero-denied/);
    // An update: /dev/zero read-only added, /dev/null loses write.
    cg.set({ devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'r' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'r' }] });
    assert.deepEqual(read(dir, 'devices.list').split('\n').sort(), ['c 1:3 r', 'c 1:5 r']);
    // Allow-all with one denial.
    cg.set({ devices: [{ allow: true, access: 'rwm' }, { allow: false, type: 'b', major: 8, access: 'w' }] });
    assert.equal(read(dir, 'devices.list'), 'a *:* rwm');
  } finally {
    await cg.destroy({ kill: true });
  }
});

test('cpu and cpuset settings are written and read back; rt runtime a nested cgroup cannot have is a clear error', { skip }, async () => {
  const cg = manager('cpu');
  cg.create();
  try {
    cg.set({ cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0', mems: '0' } });
    assert.equal(read(cg.paths.v1.cpu!, 'cpu.shares'), '512');
    assert.equal(read(cg.paths.v1.cpu!, 'cpu.cfs_quota_us'), '50000');
    assert.equal(read(cg.paths.v1.cpu!, 'cpu.cfs_period_us'), '100000');
    assert.equal(read(cg.paths.v1.cpuset!, 'cpuset.cpus'), '0');
    // A smaller period than the current one with a quota: runc's write order makes it pass.
    cg.set({ cpu: { quota: 20000, period: 40000 } });
    assert.equal(read(cg.paths.v1.cpu!, 'cpu.cfs_period_us'), '40000');
    assert.throws(() => cg.set({ cpu: { cpus: '4096' } }), /cannot set linux\.resources\.cpu\.cpus to "4096": writing .*cpuset\.cpus: (EINVAL|ERANGE)/);
    assert.throws(() => cg.set({ cpu: { shares: 1 } }), /cpu\.shares.*at least 2/);
    if (existsSync(join(cg.paths.v1.cpu!, 'cpu.rt_runtime_us'))) {
      assert.throws(() => cg.set({ cpu: { realtimeRuntime: 10000, realtimePeriod: 1000000 } }), /linux\.resources\.cpu\.realtimeRuntime.*cpu\.rt_runtime_us/);
    }
  } finally {
    await cg.destroy({ kill: true });
  }
});

test('memory settings: reservation, swappiness, OOM killer switch, limit below usage is refused with the usage', { skip }, async () => {
  const cg = manager('memset');
  cg.create();
  const d = cg.paths.v1.memory!;
  try {
    cg.set({ memory: { limit: 64 << 20, reservation: 32 << 20, swappiness: 30, disableOOMKiller: true } });
    assert.equal(read(d, 'memory.limit_in_bytes'), String(64 << 20));
    assert.equal(read(d, 'memory.soft_limit_in_bytes'), String(32 << 20));
    assert.equal(read(d, 'memory.swappiness'), '30');
    assert.match(read(d, 'memory.oom_control'), /oom_kill_disable 1/);
    // Growing memory+swap after a lower memsw: memsw must go first.
    cg.set({ memory: { limit: 64 << 20, swap: 64 << 20 } });
    cg.set({ memory: { limit: 128 << 20, swap: 256 << 20 } });
    assert.equal(read(d, 'memory.memsw.limit_in_bytes'), String(256 << 20));
    cg.set({ memory: { limit: -1 } });
    assert.equal(read(d, 'memory.memsw.limit_in_bytes'), read(d, 'memory.limit_in_bytes'));
    assert.throws(() => cg.set({ memory: { swappiness: 101 } }), /swappiness 101: the range is 0-100/);
    const p = spawnWaiting('x=$(head -c 8000000 /dev/zero | tr "\\0" a); sleep 30');
    cg.apply(p.pid);
    p.go();
    for (let i = 0; i < 300 && Number(read(d, 'memory.usage_in_bytes')) < 4 << 20; i++) await wait(10);
    assert.throws(() => cg.set({ memory: { limit: 4096 } }), /cannot set linux\.resources\.memory\.limit to 4096: the cgroup already uses \d+ bytes/);
  } finally {
    await cg.destroy({ kill: true });
  }
});

test('destroy retries while the last process exits and leaves nothing behind', { skip }, async () => {
  const cg = manager('destroy');
  const parent = parents[parents.length - 1]!;
  cg.create();
  const p = spawnWaiting('sleep 30');
  cg.apply(p.pid);
  await cg.destroy({ kill: true });
  assert.equal(cg.exists(), false);
  cleanupParent(parent);
  assert.ok(parentGone(parent));
});
