// The shim's Stats answer: keel's statistics (runc's shape) as containerd's cgroup v1 and v2 metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toMetrics, toMetricsV2, type RuntimeStats } from '../../src/shim/metrics.js';

const MAX = 2 ** 64 - 1;

function sample(): RuntimeStats {
  return {
    cpu: { usage: { total: 5_000_000, percpu: [1_000_000, 4_000_000], kernel: 2_000_000, user: 3_000_000 }, throttling: { periods: 10, throttledPeriods: 2, throttledTime: 7_000 } },
    memory: {
      usage: { limit: 64 << 20, usage: 1 << 20, max: 2 << 20, failcnt: 1 },
      swap: { limit: (64 << 20) + (16 << 20), usage: (1 << 20) + 4096, failcnt: 0 },
      kernel: { limit: 0, failcnt: 0 }, kernelTCP: { limit: 0, failcnt: 0 },
      raw: { cache: 8192, rss: 4096, total_rss: 12288, pgfault: 33, anon: 4096, file: 8192, pgmajfault: 1 },
    },
    pids: { current: 3, limit: 100 },
    blkio: {
      ioServiceBytesRecursive: [{ major: 8, minor: 0, op: 'Read', value: 512 }, { major: 8, minor: 0, op: 'Write', value: 1024 }],
      ioServicedRecursive: [{ major: 8, minor: 0, op: 'Read', value: 1 }, { major: 8, minor: 0, op: 'Write', value: 2 }],
    },
    hugetlb: { '2MB': { usage: 0, max: 0, failcnt: 0 } },
  };
}

test('v1 metrics: cpu, memory.stat fields, memory entries, pids, blkio, hugetlb', () => {
  const m = toMetrics(sample());
  assert.equal(m.cpu?.usage?.total, 5_000_000n);
  assert.deepEqual(m.cpu?.usage?.perCpu, [1_000_000n, 4_000_000n]);
  assert.equal(m.cpu?.throttling?.throttledPeriods, 2n);
  assert.equal(m.memory?.cache, 8192n);
  assert.equal(m.memory?.rss, 4096n);
  assert.equal(m.memory?.totalRss, 12288n);
  assert.equal(m.memory?.pgFault, 33n);
  assert.equal(m.memory?.usage?.limit, 64n << 20n);
  assert.equal(m.memory?.usage?.max, 2n << 20n);
  assert.equal(m.pids?.limit, 100n);
  assert.deepEqual(m.blkio?.ioServiceBytesRecursive.map((e) => [e.op, e.major, e.value]), [['Read', 8n, 512n], ['Write', 8n, 1024n]]);
  assert.deepEqual(m.hugetlb.map((h) => h.pagesize), ['2MB']);
});

test('v2 metrics: times back in microseconds, swap apart from memory, io.stat per device', () => {
  const m = toMetricsV2(sample());
  assert.deepEqual([m.cpu?.usageUsec, m.cpu?.userUsec, m.cpu?.systemUsec, m.cpu?.throttledUsec], [5000n, 3000n, 2000n, 7n]);
  assert.equal(m.memory?.usage, 1n << 20n);
  assert.equal(m.memory?.usageLimit, 64n << 20n);
  assert.equal(m.memory?.swapUsage, 4096n);
  assert.equal(m.memory?.swapLimit, 16n << 20n);
  assert.equal(m.memory?.anon, 4096n);
  assert.equal(m.memory?.file, 8192n);
  assert.equal(m.memory?.pgmajfault, 1n);
  assert.deepEqual(m.io?.usage.map((e) => [e.major, e.minor, e.rbytes, e.wbytes, e.rios, e.wios]), [[8n, 0n, 512n, 1024n, 1n, 2n]]);
  const unlimited = sample();
  unlimited.memory.usage.limit = MAX;
  unlimited.memory.swap.limit = MAX;
  assert.equal(toMetricsV2(unlimited).memory?.swapLimit, 2n ** 64n - 1n);
});
