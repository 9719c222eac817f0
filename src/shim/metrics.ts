// A container's statistics (keel's runtime gives them in runc's `events --stats` shape) as
// containerd's cgroup metrics, what runc's shim answers to Stats and `ctr task metrics` and the CRI
// plugin decode: io.containerd.cgroups.v1.Metrics on a host with cgroup v1 controllers,
// io.containerd.cgroups.v2.Metrics on a pure cgroup v2 host.
import { create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { MetricsSchema, type Metrics } from './generated/cgroup1/stats/metrics_pb.js';
import { MetricsSchema as MetricsV2Schema, type Metrics as MetricsV2 } from './generated/cgroup2/stats/metrics_pb.js';

/** The statistics keel's runtime reports (its RuncStats), as far as they are read here. */
export interface RuntimeStats {
  cpu: { usage: { total?: number; percpu?: number[]; kernel: number; user: number }; throttling: { periods?: number; throttledPeriods?: number; throttledTime?: number } };
  memory: {
    usage: MemoryEntry; swap: MemoryEntry; kernel: MemoryEntry; kernelTCP: MemoryEntry;
    raw?: Record<string, number>;
  };
  pids: { current?: number; limit?: number };
  blkio: Record<string, { major?: number; minor?: number; op?: string; value?: number }[] | undefined>;
  hugetlb: Record<string, { usage?: number; max?: number; failcnt: number }>;
}
interface MemoryEntry { limit: number; usage?: number; max?: number; failcnt: number }

const U64_MAX = 2n ** 64n - 1n;
/** A uint64 field: absent or negative is 0; "unlimited" (2^64 - 1, which a double rounds up to 2^64) stays the largest uint64. */
const u = (n: number | undefined): bigint => {
  if (n === undefined || Number.isNaN(n) || n < 0) return 0n;
  if (n === Infinity) return U64_MAX;
  const b = BigInt(Math.trunc(n));
  return b > U64_MAX ? U64_MAX : b;
};

/** memory.stat keys (cgroup v1) → MemoryStat fields. */
const MEMORY_STAT: [string, string][] = [
  ['cache', 'cache'], ['rss', 'rss'], ['rss_huge', 'rssHuge'], ['mapped_file', 'mappedFile'], ['dirty', 'dirty'],
  ['writeback', 'writeback'], ['pgpgin', 'pgPgIn'], ['pgpgout', 'pgPgOut'], ['pgfault', 'pgFault'],
  ['pgmajfault', 'pgMajFault'], ['inactive_anon', 'inactiveAnon'], ['active_anon', 'activeAnon'],
  ['inactive_file', 'inactiveFile'], ['active_file', 'activeFile'], ['unevictable', 'unevictable'],
  ['hierarchical_memory_limit', 'hierarchicalMemoryLimit'], ['hierarchical_memsw_limit', 'hierarchicalSwapLimit'],
];

const BLKIO: [string, string][] = [
  ['ioServiceBytesRecursive', 'ioServiceBytesRecursive'], ['ioServicedRecursive', 'ioServicedRecursive'],
  ['ioQueueRecursive', 'ioQueuedRecursive'], ['ioServiceTimeRecursive', 'ioServiceTimeRecursive'],
  ['ioWaitTimeRecursive', 'ioWaitTimeRecursive'], ['ioMergedRecursive', 'ioMergedRecursive'],
  ['ioTimeRecursive', 'ioTimeRecursive'], ['sectorsRecursive', 'sectorsRecursive'],
];

export function toMetrics(s: RuntimeStats): Metrics {
  const entry = (e: MemoryEntry) => ({ limit: u(e.limit), usage: u(e.usage), max: u(e.max), failcnt: u(e.failcnt) });
  const memory: Record<string, unknown> = {
    usage: entry(s.memory.usage), swap: entry(s.memory.swap), kernel: entry(s.memory.kernel), kernelTcp: entry(s.memory.kernelTCP),
  };
  const raw = s.memory.raw ?? {};
  for (const [key, field] of MEMORY_STAT) {
    memory[field] = u(raw[key]);
    const total = `total${field[0]!.toUpperCase()}${field.slice(1)}`;
    if (!key.startsWith('hierarchical')) memory[total] = u(raw[`total_${key}`]);
  }
  const blkio: Record<string, unknown> = {};
  for (const [from, to] of BLKIO) {
    blkio[to] = (s.blkio[from] ?? []).map((e) => ({ op: e.op ?? '', major: u(e.major), minor: u(e.minor), value: u(e.value) }));
  }
  const init: MessageInitShape<typeof MetricsSchema> = {
    pids: { current: u(s.pids.current), limit: u(s.pids.limit) },
    cpu: {
      usage: { total: u(s.cpu.usage.total), kernel: u(s.cpu.usage.kernel), user: u(s.cpu.usage.user), perCpu: (s.cpu.usage.percpu ?? []).map(u) },
      throttling: { periods: u(s.cpu.throttling.periods), throttledPeriods: u(s.cpu.throttling.throttledPeriods), throttledTime: u(s.cpu.throttling.throttledTime) },
    },
    memory: memory as MessageInitShape<typeof MetricsSchema>['memory'],
    blkio: blkio as MessageInitShape<typeof MetricsSchema>['blkio'],
    hugetlb: Object.entries(s.hugetlb).map(([pagesize, h]) => ({ pagesize, usage: u(h.usage), max: u(h.max), failcnt: u(h.failcnt) })),
  };
  return create(MetricsSchema, init);
}

/** memory.stat keys (cgroup v2) → v2 MemoryStat fields. */
const MEMORY_STAT_V2 = ['anon', 'file', 'kernel_stack', 'slab', 'sock', 'shmem', 'file_mapped', 'file_dirty', 'file_writeback',
  'anon_thp', 'inactive_anon', 'active_anon', 'inactive_file', 'active_file', 'unevictable', 'slab_reclaimable',
  'slab_unreclaimable', 'pgfault', 'pgmajfault', 'workingset_nodereclaim', 'pgrefill', 'pgscan', 'pgsteal', 'pgactivate',
  'pgdeactivate', 'pglazyfree', 'pglazyfreed', 'thp_fault_alloc', 'thp_collapse_alloc', 'workingset_refault_anon',
  'workingset_refault_file', 'workingset_activate_anon', 'workingset_activate_file'];

const camel = (k: string) => k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * The v2 metrics. keel's runtime reports v2 counters the way runc does (CPU times in ns, memory
 * and swap as v1-style figures, io.stat as Read/Write blkio entries); they are turned back here.
 */
export function toMetricsV2(s: RuntimeStats): MetricsV2 {
  const raw = s.memory.raw ?? {};
  const memory: Record<string, bigint> = {};
  for (const key of MEMORY_STAT_V2) memory[camel(key)] = u(raw[key]);
  const usage = s.memory.usage.usage ?? 0;
  memory.usage = u(usage);
  memory.usageLimit = u(s.memory.usage.limit);
  memory.maxUsage = u(s.memory.usage.max);
  // runc's swap entry is memory + swap; the limit of it is swap.max + memory.max.
  memory.swapUsage = u(Math.max((s.memory.swap.usage ?? 0) - usage, 0));
  const MAX = 2 ** 64 - 1;
  memory.swapLimit = s.memory.swap.limit >= MAX || s.memory.usage.limit >= MAX ? u(s.memory.swap.limit) : u(s.memory.swap.limit - s.memory.usage.limit);
  const io = new Map<string, { major: bigint; minor: bigint; rbytes: bigint; wbytes: bigint; rios: bigint; wios: bigint }>();
  const device = (e: { major?: number; minor?: number }) => {
    const key = `${e.major ?? 0}:${e.minor ?? 0}`;
    let d = io.get(key);
    if (!d) io.set(key, d = { major: u(e.major), minor: u(e.minor), rbytes: 0n, wbytes: 0n, rios: 0n, wios: 0n });
    return d;
  };
  for (const e of s.blkio.ioServiceBytesRecursive ?? []) { const d = device(e); if (e.op === 'Read') d.rbytes = u(e.value); if (e.op === 'Write') d.wbytes = u(e.value); }
  for (const e of s.blkio.ioServicedRecursive ?? []) { const d = device(e); if (e.op === 'Read') d.rios = u(e.value); if (e.op === 'Write') d.wios = u(e.value); }
  const ns = (n: number | undefined) => u(n === undefined ? undefined : n / 1000);
  return create(MetricsV2Schema, {
    pids: { current: u(s.pids.current), limit: u(s.pids.limit) },
    cpu: {
      usageUsec: ns(s.cpu.usage.total), userUsec: ns(s.cpu.usage.user), systemUsec: ns(s.cpu.usage.kernel),
      nrPeriods: u(s.cpu.throttling.periods), nrThrottled: u(s.cpu.throttling.throttledPeriods), throttledUsec: ns(s.cpu.throttling.throttledTime),
    },
    memory,
    io: { usage: [...io.values()] },
    hugetlb: Object.entries(s.hugetlb).map(([pagesize, h]) => ({ pagesize, current: u(h.usage), max: u(h.max), failcnt: u(h.failcnt) })),
  });
}
