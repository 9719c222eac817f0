// keel update: runc's flags and --resources JSON change the live cgroup and the stored config;
// unchanged values stay; the cgroup files get what runc writes for the same flags.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, waitFor, which, sh, tempDir, removeTemps } from './helpers.js';
import { parseMemorySize } from '../../src/runtime/index.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => { keel.cleanup(); removeTemps(); });

/** The directory of `pid`'s cgroup in a v1 hierarchy (from /proc/PID/cgroup, as the host sees it). */
function cgroupDir(pid: number, controller: string): string {
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const [, ctrls, path] = line.split(':');
    if (ctrls?.split(',').includes(controller)) return join('/sys/fs/cgroup', controller, path!);
  }
  throw new Error(`no ${controller} cgroup for ${pid}`);
}

function read(pid: number, controller: string, file: string): string {
  return readFileSync(join(cgroupDir(pid, controller), file), 'utf8').trim();
}

function initPid(id: string): number {
  return JSON.parse(keel(['state', id]).stdout).pid;
}

function storedResources(id: string): any {
  return JSON.parse(readFileSync(join(keel.root, id, 'state.json'), 'utf8')).config.linux.resources;
}

const v1 = existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes') && existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') && existsSync('/sys/fs/cgroup/pids');
const skipV1 = skip || (!v1 && 'needs cgroup v1 memory, cpu and pids hierarchies (this test reads their files)');

test('memory sizes are read as runc reads them (binary units, optional i and b, decimals, -1)', () => {
  assert.equal(parseMemorySize('67108864', '--memory'), 67108864);
  assert.equal(parseMemorySize('64m', '--memory'), 64 * 1024 * 1024);
  assert.equal(parseMemorySize('64M', '--memory'), 64 * 1024 * 1024);
  assert.equal(parseMemorySize('64MiB', '--memory'), 64 * 1024 * 1024);
  assert.equal(parseMemorySize('64 mb', '--memory'), 64 * 1024 * 1024);
  assert.equal(parseMemorySize('512k', '--memory'), 512 * 1024);
  assert.equal(parseMemorySize('1.5g', '--memory'), 1.5 * 1024 ** 3);
  assert.equal(parseMemorySize('2t', '--memory'), 2 * 1024 ** 4);
  assert.equal(parseMemorySize('-1', '--memory-swap'), -1);
  assert.throws(() => parseMemorySize('12x', '--memory'), /invalid value for --memory: "12x" is not a size/);
  assert.throws(() => parseMemorySize('-5m', '--memory'), /invalid value for --memory/);
});

test('update flags change the cgroup files and the stored config; other limits stay as they were', { skip: skipV1 }, () => {
  const bundle = makeBundle(['sleep', '1000'], (c) => { c.linux.resources = { memory: { limit: 128 * 1024 * 1024 }, pids: { limit: 200 } }; });
  assert.equal(keel(['run', '-d', '-b', bundle, 'up1']).status, 0);
  const pid = initPid('up1');
  const r = keel(['update', '--memory', '64m', '--memory-reservation', '32m', '--cpu-share', '512', '--cpu-period', '50000', '--cpu-quota', '25000', '--cpuset-cpus', '0', 'up1']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(read(pid, 'memory', 'memory.limit_in_bytes'), String(64 * 1024 * 1024));
  assert.equal(read(pid, 'memory', 'memory.soft_limit_in_bytes'), String(32 * 1024 * 1024));
  assert.equal(read(pid, 'cpu', 'cpu.shares'), '512');
  assert.equal(read(pid, 'cpu', 'cpu.cfs_period_us'), '50000');
  assert.equal(read(pid, 'cpu', 'cpu.cfs_quota_us'), '25000');
  assert.equal(read(pid, 'cpuset', 'cpuset.cpus'), '0');
  assert.equal(read(pid, 'pids', 'pids.max'), '200', 'pids limit untouched');
  assert.deepEqual(storedResources('up1'), {
    memory: { limit: 64 * 1024 * 1024, reservation: 32 * 1024 * 1024 }, pids: { limit: 200 },
    cpu: { shares: 512, period: 50000, quota: 25000, cpus: '0' },
  });

  // A quota alone keeps the period (runc); flags may follow the id; -1 is unlimited.
  const q = keel(['update', 'up1', '--cpu-quota', '10000', '--pids-limit', '-1', '--memory-swap', '-1']);
  assert.equal(q.status, 0, q.stderr);
  assert.equal(read(pid, 'cpu', 'cpu.cfs_quota_us'), '10000');
  assert.equal(read(pid, 'cpu', 'cpu.cfs_period_us'), '50000');
  assert.equal(read(pid, 'pids', 'pids.max'), 'max');
  assert.equal(read(pid, 'memory', 'memory.limit_in_bytes'), String(64 * 1024 * 1024), 'memory limit untouched');
  const s = storedResources('up1');
  assert.deepEqual(s.cpu, { shares: 512, period: 50000, quota: 10000, cpus: '0' });
  assert.equal(s.pids.limit, -1);
  assert.equal(s.memory.swap, -1);
});

test('update --resources takes runc\'s JSON from a file or stdin; zero values are unchanged', { skip: skipV1 }, () => {
  const bundle = makeBundle(['sleep', '1000']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'up2']).status, 0);
  const pid = initPid('up2');
  const file = join(tempDir(), 'res.json');
  writeFileSync(file, JSON.stringify({ memory: { limit: 50331648, reservation: 0, swap: 0 }, cpu: { shares: 0, quota: 0, cpus: '' }, pids: { limit: 42 }, blockIO: { weight: 0 } }));
  const f = keel(['update', '--resources', file, 'up2']);
  assert.equal(f.status, 0, f.stderr);
  assert.equal(read(pid, 'memory', 'memory.limit_in_bytes'), '50331648');
  assert.equal(read(pid, 'pids', 'pids.max'), '42');
  const stdin = keel(['update', '-r', '-', '--memory', '1g', 'up2'], { input: '{"pids":{"limit":43}}' });
  assert.equal(stdin.status, 0, stdin.stderr);
  assert.equal(read(pid, 'pids', 'pids.max'), '43');
  assert.equal(read(pid, 'memory', 'memory.limit_in_bytes'), '50331648', 'with --resources the other flags are ignored, as in runc');
  assert.deepEqual(storedResources('up2'), { memory: { limit: 50331648 }, pids: { limit: 43 } });

  const bad = keel(['update', '-r', '-', 'up2'], { input: '{"memory":{"limit":"lots"}}' });
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr, 'standard input: /memory/limit: must be integer\n');
  const broken = keel(['update', '-r', '-', 'up2'], { input: '{"memory":' });
  assert.equal(broken.status, 1);
  assert.match(broken.stderr, /^standard input: invalid JSON/);
  assert.deepEqual(storedResources('up2'), { memory: { limit: 50331648 }, pids: { limit: 43 } }, 'refused input changes nothing');
});

test('update refuses bad values, unknown flags and stopped containers, and ignores kernel memory with a warning', { skip }, () => {
  const bundle = makeBundle(['sleep', '1000']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'up3']).status, 0);
  const cases: [string[], RegExp][] = [
    [['--memory', '12x'], /^invalid value for --memory: "12x" is not a size/],
    [['--cpu-share', 'lots'], /^invalid value for --cpu-share: "lots" is not an unsigned integer/],
    [['--pids-limit', '1.5'], /^invalid value for --pids-limit: "1.5" is not an integer/],
    [['--blkio-weight', '5'], /^invalid value for --blkio-weight: 5 is outside 10-1000/],
    [['--l3-cache-schema', 'L3:0=f'], /^cannot update --l3-cache-schema: keel does not support Intel RDT/],
    [['--memroy', '1m'], /^update: unknown flag --memroy/],
    [['up3', '--memory'], /^update: flag --memory needs a value/],
  ];
  for (const [args, re] of cases) {
    const r = keel(['update', ...args, ...(args[0] === 'up3' ? [] : ['up3'])]);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, re);
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
  }
  const none = keel(['update', '--memory', '1m']);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /update: missing the container id/);
  const kmem = keel(['update', '--kernel-memory', '10m', 'up3']);
  assert.equal(kmem.status, 0, kmem.stderr);
  assert.match(kmem.stderr, /Kernel memory settings are ignored/);
  assert.equal(storedResources('up3'), undefined, 'nothing recorded for ignored values');

  assert.equal(keel(['kill', 'up3', 'KILL']).status, 0);
  assert.ok(waitFor(() => JSON.parse(keel(['state', 'up3']).stdout).status === 'stopped'));
  const stopped = keel(['update', '--memory', '64m', 'up3']);
  assert.equal(stopped.status, 1);
  assert.equal(stopped.stderr, 'cannot update container up3: container not running\n');
});

test('update writes the cgroup values runc writes for the same flags', { skip: skipV1 || (!which('runc') && 'runc not installed') }, () => {
  const bundle = makeBundle(['sleep', '1000']);
  const runcRoot = tempDir('keel-ops-runc-');
  assert.equal(keel(['run', '-d', '-b', bundle, 'up4']).status, 0);
  assert.equal(spawnSync('runc', ['--root', runcRoot, 'run', '-d', '-b', bundle, 'up4r'], { stdio: 'ignore' }).status, 0, 'runc run -d');
  const runc = (args: string[]) => sh('runc', ['--root', runcRoot, ...args]);
  try {
    const rpid = JSON.parse(runc(['state', 'up4r']).stdout).pid;
    const kpid = initPid('up4');
    const files: [string, string][] = [
      ['memory', 'memory.limit_in_bytes'], ['memory', 'memory.soft_limit_in_bytes'], ['memory', 'memory.memsw.limit_in_bytes'],
      ['cpu', 'cpu.shares'], ['cpu', 'cpu.cfs_period_us'], ['cpu', 'cpu.cfs_quota_us'], ['pids', 'pids.max'], ['cpuset', 'cpuset.cpus'],
    ];
    const steps = [
      ['--memory', '1.5g', '--memory-reservation', '100MiB', '--cpu-share', '300', '--pids-limit', '77'],
      ['--memory', '96 mb', '--memory-swap', '192m', '--cpu-period', '40000', '--cpu-quota', '20000'],
      ['--cpu-quota', '-1', '--memory-swap', '-1', '--cpuset-cpus', '0'],
      ['--memory', '-1', '--pids-limit', '-1'],
    ];
    for (const step of steps) {
      const k = keel(['update', ...step, 'up4']);
      const r = runc(['update', ...step, 'up4r']);
      assert.equal(k.status, r.status, `${step.join(' ')}: keel ${k.stderr} runc ${r.stderr}`);
      for (const [c, f] of files) {
        if (!existsSync(join(cgroupDir(rpid, c), f))) continue;
        assert.equal(read(kpid, c, f), read(rpid, c, f), `${f} after update ${step.join(' ')}`);
      }
    }
  } finally {
    runc(['delete', '--force', 'up4r']);
  }
});
