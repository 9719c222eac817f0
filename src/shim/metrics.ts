// A container's statistics (keel's runtime gives them in runc's `events --stats` shape) as
// containerd's cgroup v1 metrics (io.containerd.cgroups.v1.Metrics), what runc's shim answers to
// Stats and `ctr task metrics` and the CRI plugin decode.
import { create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { MetricsSchema, type Metrics } from './generated/cgroup1/stats/metrics_pb.js';

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

const u = (n: number | undefined): bigint => (n === undefined || !Number.isFinite(n) || n < 0 ? 0n : BigInt(Math.trunc(n)));

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
