// What the host cannot honour is one KeelError naming the resource (and file), raised before
// anything is written; failures while creating leave nothing behind; rootless mode skips
// hierarchies it may not write until a limit needs them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeelError } from '../../src/util/errors.js';
import { createCgroupManager, type CgroupLayout } from '../../src/runtime/cgroups/index.js';
import { cleanupParent, isRoot, layout, uniqueParent } from './helpers.js';

const host = layout();
const skip = !isRoot ? 'needs root' : host.mode === 'v2' ? 'written for v1/hybrid hosts' : false;
const parents: string[] = [];
after(() => parents.forEach(cleanupParent));

function manager(tag: string) {
  const parent = uniqueParent(tag);
  parents.push(parent);
  return createCgroupManager({ cgroupsPath: `${parent}/c`, containerId: tag });
}

const keelError = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof KeelError, String(e));
  assert.match(e.message, re);
  assert.ok(!e.message.includes('\n'));
  return true;
};

test('a controller the host does not mount: the resource and the missing controller are named', { skip }, async () => {
  const cg = manager('missing');
  cg.create();
  try {
    if (!host.v1.net_cls) {
      assert.throws(() => cg.set({ network: { classID: 0x100001 } }),
        keelError(/^cannot set linux\.resources\.network\.classID: the net_cls cgroup controller is not available on this host \(cgroup v1: .*memory/));
    }
    if (!host.v1.rdma && !host.unifiedControllers.includes('rdma')) {
      assert.throws(() => cg.set({ rdma: { mlx5_0: { hcaHandles: 3 } } }), keelError(/linux\.resources\.rdma: the rdma cgroup controller is not available/));
    }
    assert.throws(() => cg.set({ unified: { 'memory.high': '1000' } }), keelError(/linux\.resources\.unified\["memory\.high"\]/));
    assert.throws(() => cg.set({ unified: { '../x': '1' } }), keelError(/invalid cgroup file name in linux\.resources\.unified\["\.\.\/x"\]/));
  } finally {
    await cg.destroy();
  }
});

test('nothing is written when one of the resources cannot be set', { skip }, async () => {
  const cg = manager('atomic');
  cg.create();
  try {
    assert.throws(() => cg.set({ pids: { limit: 5 }, memory: { limit: 1 << 26, swappiness: 500 } }), keelError(/swappiness 500/));
    assert.equal(readFileSync(join(cg.paths.v1.pids!, 'pids.max'), 'utf8').trim(), 'max');
    assert.notEqual(readFileSync(join(cg.paths.v1.memory!, 'memory.limit_in_bytes'), 'utf8').trim(), String(1 << 26));
    assert.throws(() => cg.set({ pids: { limit: 5 }, hugepageLimits: [{ pageSize: '7MB', limit: 1 }] }), keelError(/huge page size "7MB"/));
    assert.equal(readFileSync(join(cg.paths.v1.pids!, 'pids.max'), 'utf8').trim(), 'max');
  } finally {
    await cg.destroy();
  }
});

test('block I/O: throttles on a real device are written; weights need a scheduler that has them', { skip }, async () => {
  const cg = manager('blkio');
  cg.create();
  const d = cg.paths.v1.blkio!;
  try {
    const root = statSync('/');
    const major = Math.floor(Number(root.dev) / 256) & 0xfff; // glibc's gnu_dev_major for small numbers
    const minor = Number(root.dev) & 0xff;
    // Throttles apply to whole disks; find one from /sys/dev/block.
    const disk = existsSync(`/sys/dev/block/${major}:${minor}/partition`)
      ? readFileSync(`/sys/dev/block/${major}:${minor}/../dev`, 'utf8').trim()
      : `${major}:${minor}`;
    const [M, m] = disk.split(':').map(Number) as [number, number];
    cg.set({ blockIO: { throttleReadBpsDevice: [{ major: M, minor: m, rate: 1048576 }], throttleWriteIOPSDevice: [{ major: M, minor: m, rate: 100 }] } });
    assert.match(readFileSync(join(d, 'blkio.throttle.read_bps_device'), 'utf8'), new RegExp(`^${M}:${m} 1048576`, 'm'));
    assert.match(readFileSync(join(d, 'blkio.throttle.write_iops_device'), 'utf8'), new RegExp(`^${M}:${m} 100`, 'm'));
    assert.throws(() => cg.set({ blockIO: { throttleReadBpsDevice: [{ major: 4095, minor: 4095, rate: 1 }] } }),
      keelError(/^cannot set linux\.resources\.blockIO\.throttleReadBpsDevice\[0\] to "4095:4095 1": writing .*blkio\.throttle\.read_bps_device: E/));
    if (!existsSync(join(d, 'blkio.weight')) && !existsSync(join(d, 'blkio.bfq.weight'))) {
      assert.throws(() => cg.set({ blockIO: { weight: 500 } }), keelError(/linux\.resources\.blockIO\.weight: this host's block I\/O scheduler offers no weights/));
    }
  } finally {
    await cg.destroy();
  }
});

test('unified keys on a hybrid host go to the cgroup2 directory', { skip: skip || (host.mode !== 'hybrid' ? 'not a hybrid host' : false) }, async () => {
  const cg = manager('unified');
  cg.create();
  try {
    cg.set({ unified: { 'cgroup.max.depth': '3' } });
    assert.equal(readFileSync(join(cg.paths.unified!, 'cgroup.max.depth'), 'utf8').trim(), '3');
  } finally {
    await cg.destroy();
  }
});

test('a hierarchy that cannot be written: an error and no leftovers; rootless skips it until a limit needs it', { skip }, async (t) => {
  const ro = mkdtempSync(join(tmpdir(), 'keel-ro-'));
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'ro', 'tmpfs', ro]).status !== 0) return t.skip('cannot mount a read-only tmpfs');
  const parent = uniqueParent('ro');
  parents.push(parent);
  try {
    const l: CgroupLayout = {
      mode: 'v1',
      v1: {
        pids: host.v1.pids!,
        memory: { mountpoint: ro, root: '/', controllers: ['memory'] },
      },
      unifiedControllers: [],
    };
    const strict = createCgroupManager({ cgroupsPath: `${parent}/c`, containerId: 'ro', layout: l });
    assert.throws(() => strict.create(), keelError(/^cannot create cgroup .*keel-ro-.*: EROFS/));
    assert.ok(!existsSync(join(host.v1.pids!.mountpoint, parent)), 'the pids cgroup made before the failure was removed');

    const rootless = createCgroupManager({ cgroupsPath: `${parent}/c`, containerId: 'ro', layout: l, rootless: true });
    rootless.create();
    assert.ok(existsSync(rootless.paths.v1.pids!));
    rootless.set({ pids: { limit: 7 } });
    assert.throws(() => rootless.set({ memory: { limit: 1 << 26 } }), keelError(/linux\.resources\.memory: keel may not create or join the memory cgroup \(rootless/));
    await rootless.destroy();
  } finally {
    spawnSync('umount', [ro]);
    rmSync(ro, { recursive: true, force: true });
  }
});
