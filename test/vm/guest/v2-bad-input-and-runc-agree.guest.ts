// On pure cgroup v2: a resource the hierarchy cannot offer, or a controller missing where the
// container's cgroup goes, is one clear error line and leaves no cgroup; and the same bundle run by
// runc and by keel gives the same cgroup files and the same `events --stats` fields.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundle, cgRead, CG, diskDevice, exists, notGuest, ok, runtime } from './helpers.js';

const MiB = 1024 * 1024;

function oneLineFailure(r: { status: number | null; stderr: string }, pattern: RegExp): void {
  assert.notEqual(r.status, 0, 'the command succeeded');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `more than one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
}

describe('bad input on cgroup v2', { skip: notGuest }, () => {
  const keel = runtime();
  after(() => keel.cleanup());

  const cases: [string, any, RegExp][] = [
    ['memory.swappiness', { memory: { limit: 32 * MiB, swappiness: 10 } }, /cannot set linux\.resources\.memory\.swappiness: cgroup v2 has no per-cgroup swappiness/],
    ['cpu.realtimeRuntime', { cpu: { realtimeRuntime: 1000, realtimePeriod: 10000 } }, /cgroup v2 has no real-time CPU budget/],
    ['memory.kernelTCP', { memory: { kernelTCP: 4 * MiB } }, /cgroup v2 has no separate TCP memory limit/],
    ['an unknown unified controller', { unified: { 'nosuch.max': '1' } }, /the nosuch controller is not available in cgroup v2/],
  ];
  for (const [what, resources, pattern] of cases) {
    test(`${what} is refused in one line and no cgroup is left`, () => {
      const id = `bad-${process.pid}-${what.replace(/[^a-z]/gi, '')}`;
      const b = bundle('true', (c) => { c.linux.cgroupsPath = `/keel-vm-bad/${id}`; c.linux.resources = resources; });
      oneLineFailure(keel(['run', '--bundle', b, id]), pattern);
      assert.ok(!exists(join(CG, 'keel-vm-bad', id)), 'the cgroup was left behind');
      assert.equal(keel(['list', '-q']).stdout.trim(), '');
    });
  }

  test('a controller the parent cgroup cannot hand down is one error line, and the new cgroup is removed', async () => {
    // A parent that holds a process cannot enable controllers for its children (no internal processes).
    const parent = join(CG, `keel-vm-busy-${process.pid}`);
    mkdirSync(parent);
    const sleeper = spawn('sleep', ['1000']);
    try {
      writeFileSync(join(parent, 'cgroup.procs'), String(sleeper.pid));
      const id = `nomem-${process.pid}`;
      const b = bundle('true', (c) => { c.linux.cgroupsPath = `/keel-vm-busy-${process.pid}/${id}`; c.linux.resources = { memory: { limit: 32 * MiB } }; });
      oneLineFailure(keel(['run', '--bundle', b, id]), /memory/);
      assert.deepEqual(readdirSync(parent, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name), []);
    } finally {
      sleeper.kill('SIGKILL');
      await new Promise((r) => sleeper.once('exit', r));
      rmdirSync(parent);
    }
  });
});

describe('runc and keel on cgroup v2', { skip: notGuest }, () => {
  const keel = runtime();
  const runc = runtime('runc');
  after(() => { keel.cleanup(); runc.cleanup(); });
  const FILES = [
    'memory.max', 'memory.swap.max', 'memory.low', 'memory.high', 'cpu.weight', 'cpu.max', 'cpuset.cpus', 'cpuset.mems',
    'pids.max', 'io.weight', 'io.max', 'hugetlb.2MB.max', 'cgroup.type', 'cgroup.controllers',
  ];
  const dirs: Record<string, string> = {};
  const stats: Record<string, any> = {};

  test('the same bundle gives the same cgroup files', () => {
    const disk = diskDevice();
    for (const [name, rt] of [['keel', keel], ['runc', runc]] as const) {
      const id = `diff-${name}-${process.pid}`;
      const b = bundle('sleep 100000', (c) => {
        c.linux.cgroupsPath = `/keel-vm-diff/${id}`;
        c.linux.resources = {
          memory: { limit: 48 * MiB, swap: 64 * MiB, reservation: 16 * MiB },
          cpu: { shares: 1024, quota: 30000, period: 60000, cpus: '0-1', mems: '0' },
          pids: { limit: 25 },
          blockIO: { weight: 300, throttleWriteBpsDevice: [{ major: disk.major, minor: disk.minor, rate: 2 * MiB }] },
          hugepageLimits: [{ pageSize: '2MB', limit: 2 * MiB }],
          unified: { 'memory.high': String(40 * MiB) },
        };
      });
      ok(rt(['run', '-d', '--bundle', b, id]), `${name} run -d`);
      dirs[name] = `/keel-vm-diff/${id}`;
      stats[name] = JSON.parse(ok(rt(['events', '--stats', id]), `${name} events --stats`));
    }
    const read = (d: string) => Object.fromEntries(FILES.map((f) => [f, exists(join(CG, d, f)) ? cgRead(d, f) : '(missing)']));
    assert.deepEqual(read(dirs.keel!), read(dirs.runc!));
  });

  test('events --stats has the same fields and limits', () => {
    const shape = (v: any): any => (v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, shape(v[k])])) : typeof v);
    const k = stats.keel!.data, r = stats.runc!.data;
    assert.deepEqual(Object.keys(k).sort(), Object.keys(r).sort());
    for (const area of ['pids', 'hugetlb']) assert.deepEqual(shape(k[area]), shape(r[area]), area);
    assert.deepEqual(Object.keys(k.memory).sort(), Object.keys(r.memory).sort());
    assert.equal(k.memory.usage.limit, r.memory.usage.limit);
    assert.equal(k.memory.swap.limit, r.memory.swap.limit);
    assert.equal(k.pids.limit, r.pids.limit);
    assert.deepEqual(Object.keys(k.memory.raw ?? {}).sort(), Object.keys(r.memory.raw ?? {}).sort());
  });
});
