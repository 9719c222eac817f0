// Container statistics in the shape `runc events --stats` prints (runc's types.Stats), read from
// cgroup v1 or v2 files. Zero-valued fields that runc marks omitempty are left out.
import { readdirSync, statSync } from 'node:fs';
import { readKeyValues, readNumber, readOptional } from './fsutil.js';

export interface BlkioEntry { major?: number; minor?: number; op?: string; value?: number }
export interface MemoryEntry { limit: number; usage?: number; max?: number; failcnt: number }
export interface HugetlbStats { usage?: number; max?: number; failcnt: number }

export interface RuncStats {
  cpu: {
    usage: { total?: number; percpu?: number[]; percpu_kernel?: number[]; percpu_user?: number[]; kernel: number; user: number };
    throttling: { periods?: number; throttledPeriods?: number; throttledTime?: number };
  };
  cpuset: {
    cpus?: number[];
    cpu_exclusive: number;
    mems?: number[];
    mem_hardwall: number;
    mem_exclusive: number;
    memory_migrate: number;
    memory_spread_page: number;
    memory_spread_slab: number;
    memory_pressure: number;
    sched_load_balance: number;
    sched_relax_domain_level: number;
  };
  memory: {
    cache?: number;
    usage: MemoryEntry;
    swap: MemoryEntry;
    kernel: MemoryEntry;
    kernelTCP: MemoryEntry;
    raw?: Record<string, number>;
  };
  pids: { current?: number; limit?: number };
  blkio: {
    ioServiceBytesRecursive?: BlkioEntry[];
    ioServicedRecursive?: BlkioEntry[];
    ioQueueRecursive?: BlkioEntry[];
    ioServiceTimeRecursive?: BlkioEntry[];
    ioWaitTimeRecursive?: BlkioEntry[];
    ioMergedRecursive?: BlkioEntry[];
    ioTimeRecursive?: BlkioEntry[];
    sectorsRecursive?: BlkioEntry[];
  };
  hugetlb: Record<string, HugetlbStats>;
  intel_rdt: Record<string, never>;
  network_interfaces: null;
}

/** 2^64 - 1, what runc reports for "no limit" on cgroup v2. */
export const MAX_UINT64 = 18446744073709551615;

/** Where each controller's files are, and which cgroup version serves it. */
export interface ControllerDirs {
  get(controller: string): { version: 1 | 2; dir: string } | undefined;
}

function omitZero<T extends object>(o: T): T {
  for (const [k, v] of Object.entries(o)) if (v === 0 || v === undefined) delete (o as Record<string, unknown>)[k];
  return o;
}

function parseList(text: string | undefined): number[] | undefined {
  if (!text) return undefined;
  const out: number[] = [];
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number);
    if (a === undefined || !Number.isFinite(a)) continue;
    for (let i = a; i <= (b ?? a); i++) out.push(i);
  }
  return out.length ? out : undefined;
}

const NS_PER_TICK = 1e9 / 100; // cpuacct.stat counts USER_HZ (100) ticks

function cpuStats(dirs: ControllerDirs, s: RuncStats): void {
  const acct = dirs.get('cpuacct');
  const cpu = dirs.get('cpu');
  if (acct?.version === 1) {
    const total = readNumber(acct.dir, 'cpuacct.usage');
    if (total !== undefined) s.cpu.usage.total = total;
    const percpu = readOptional(acct.dir, 'cpuacct.usage_percpu');
    if (percpu) s.cpu.usage.percpu = percpu.split(/\s+/).map(Number);
    const all = readOptional(acct.dir, 'cpuacct.usage_all');
    if (all) {
      const rows = all.split('\n').slice(1).map((l) => l.trim().split(/\s+/).map(Number));
      s.cpu.usage.percpu_user = rows.map((r) => r[1] ?? 0);
      s.cpu.usage.percpu_kernel = rows.map((r) => r[2] ?? 0);
    }
    const st = readKeyValues(acct.dir, 'cpuacct.stat');
    s.cpu.usage.user = (st.user ?? 0) * NS_PER_TICK;
    s.cpu.usage.kernel = (st.system ?? 0) * NS_PER_TICK;
  }
  if (cpu?.version === 1) {
    const st = readKeyValues(cpu.dir, 'cpu.stat');
    s.cpu.throttling = omitZero({ periods: st.nr_periods, throttledPeriods: st.nr_throttled, throttledTime: st.throttled_time });
  } else if (cpu?.version === 2) {
    const st = readKeyValues(cpu.dir, 'cpu.stat');
    if (st.usage_usec !== undefined) s.cpu.usage.total = st.usage_usec * 1000;
    s.cpu.usage.user = (st.user_usec ?? 0) * 1000;
    s.cpu.usage.kernel = (st.system_usec ?? 0) * 1000;
    s.cpu.throttling = omitZero({
      periods: st.nr_periods,
      throttledPeriods: st.nr_throttled,
      throttledTime: st.throttled_usec === undefined ? undefined : st.throttled_usec * 1000,
    });
  }
  omitZero(s.cpu.usage);
  s.cpu.usage.kernel ??= 0;
  s.cpu.usage.user ??= 0;
}

function cpusetStats(dirs: ControllerDirs, s: RuncStats): void {
  const c = dirs.get('cpuset');
  if (c?.version !== 1) return;
  const n = (f: string) => readNumber(c.dir, `cpuset.${f}`) ?? 0;
  const cpus = parseList(readOptional(c.dir, 'cpuset.cpus'));
  const mems = parseList(readOptional(c.dir, 'cpuset.mems'));
  s.cpuset = {
    ...(cpus ? { cpus } : {}),
    cpu_exclusive: n('cpu_exclusive'),
    ...(mems ? { mems } : {}),
    mem_hardwall: n('mem_hardwall'),
    mem_exclusive: n('mem_exclusive'),
    memory_migrate: n('memory_migrate'),
    memory_spread_page: n('memory_spread_page'),
    memory_spread_slab: n('memory_spread_slab'),
    memory_pressure: n('memory_pressure'),
    sched_load_balance: n('sched_load_balance'),
    sched_relax_domain_level: Number(readOptional(c.dir, 'cpuset.sched_relax_domain_level') ?? 0),
  };
}

function v1MemoryEntry(dir: string, prefix: string): MemoryEntry {
  const e: MemoryEntry = {
    limit: readNumber(dir, `${prefix}.limit_in_bytes`) ?? 0,
    usage: readNumber(dir, `${prefix}.usage_in_bytes`),
    max: readNumber(dir, `${prefix}.max_usage_in_bytes`),
    failcnt: readNumber(dir, `${prefix}.failcnt`) ?? 0,
  };
  if (!e.usage) delete e.usage;
  if (!e.max) delete e.max;
  return e;
}

function memoryStats(dirs: ControllerDirs, s: RuncStats): void {
  const m = dirs.get('memory');
  if (!m) return;
  if (m.version === 1) {
    const raw = readKeyValues(m.dir, 'memory.stat');
    s.memory = {
      ...(raw.cache ? { cache: raw.cache } : {}),
      usage: v1MemoryEntry(m.dir, 'memory'),
      swap: v1MemoryEntry(m.dir, 'memory.memsw'),
      kernel: v1MemoryEntry(m.dir, 'memory.kmem'),
      kernelTCP: v1MemoryEntry(m.dir, 'memory.kmem.tcp'),
      ...(Object.keys(raw).length ? { raw } : {}),
    };
    return;
  }
  const raw = readKeyValues(m.dir, 'memory.stat');
  const limitOf = (f: string) => {
    const v = readNumber(m.dir, f);
    return v === undefined || v === Infinity ? MAX_UINT64 : v;
  };
  const usage: MemoryEntry = { limit: limitOf('memory.max'), usage: readNumber(m.dir, 'memory.current') ?? 0, failcnt: 0 };
  const peak = readNumber(m.dir, 'memory.peak');
  if (peak) usage.max = peak;
  const swapCurrent = readNumber(m.dir, 'memory.swap.current');
  const swapMax = limitOf('memory.swap.max');
  // runc reports v1-style memory+swap figures on v2.
  const swap: MemoryEntry = {
    limit: swapCurrent === undefined ? 0 : swapMax === MAX_UINT64 || usage.limit === MAX_UINT64 ? MAX_UINT64 : swapMax + usage.limit,
    usage: (swapCurrent ?? 0) + (usage.usage ?? 0),
    failcnt: 0,
  };
  const events = readKeyValues(m.dir, 'memory.events');
  usage.failcnt = events.max ?? 0;
  if (!usage.usage) delete usage.usage;
  if (!swap.usage) delete swap.usage;
  s.memory = {
    ...(raw.file ? { cache: raw.file } : {}),
    usage,
    swap,
    kernel: { limit: 0, failcnt: 0 },
    kernelTCP: { limit: 0, failcnt: 0 },
    ...(Object.keys(raw).length ? { raw } : {}),
  };
}

function pidsStats(dirs: ControllerDirs, s: RuncStats): void {
  const p = dirs.get('pids');
  if (!p) return;
  const max = readNumber(p.dir, 'pids.max');
  s.pids = omitZero({ current: readNumber(p.dir, 'pids.current'), limit: max === Infinity ? 0 : max });
}

function blkioEntries(dir: string, file: string): BlkioEntry[] | undefined {
  const text = readOptional(dir, file);
  if (!text) return undefined;
  const out: BlkioEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length === 3) {
      const [major, minor] = f[0]!.split(':').map(Number);
      out.push(omitZero({ major, minor, op: f[1], value: Number(f[2]) }));
    } else if (f.length === 2 && f[0]!.includes(':')) {
      const [major, minor] = f[0]!.split(':').map(Number);
      out.push(omitZero({ major, minor, value: Number(f[1]) }));
    }
  }
  return out.length ? out : undefined;
}

function blkioStats(dirs: ControllerDirs, s: RuncStats): void {
  const b = dirs.get('blkio') ?? dirs.get('io');
  if (!b) return;
  const out: RuncStats['blkio'] = {};
  if (b.version === 1) {
    // runc: CFQ files when they have data, else BFQ, else the throttle counters.
    const cfq = blkioEntries(b.dir, 'blkio.io_serviced_recursive');
    const bfq = readOptional(b.dir, 'blkio.bfq.io_serviced_recursive') !== undefined;
    const prefix = cfq ? 'blkio.' : bfq ? 'blkio.bfq.' : 'blkio.throttle.';
    out.ioServiceBytesRecursive = blkioEntries(b.dir, `${prefix}io_service_bytes_recursive`);
    out.ioServicedRecursive = blkioEntries(b.dir, `${prefix}io_serviced_recursive`);
    if (cfq) {
      out.ioQueueRecursive = blkioEntries(b.dir, 'blkio.io_queued_recursive');
      out.ioServiceTimeRecursive = blkioEntries(b.dir, 'blkio.io_service_time_recursive');
      out.ioWaitTimeRecursive = blkioEntries(b.dir, 'blkio.io_wait_time_recursive');
      out.ioMergedRecursive = blkioEntries(b.dir, 'blkio.io_merged_recursive');
      out.ioTimeRecursive = blkioEntries(b.dir, 'blkio.time_recursive');
      out.sectorsRecursive = blkioEntries(b.dir, 'blkio.sectors_recursive');
    }
    // Debian kernels print "Total N" lines; runc drops device-less entries too.
  } else {
    const text = readOptional(b.dir, 'io.stat');
    const bytes: BlkioEntry[] = [];
    const ios: BlkioEntry[] = [];
    for (const line of (text ?? '').split('\n')) {
      const f = line.trim().split(/\s+/);
      if (!f[0]?.includes(':')) continue;
      const [major, minor] = f[0].split(':').map(Number);
      const kv = Object.fromEntries(f.slice(1).map((x) => x.split('=')).map(([k, v]) => [k, Number(v)]));
      const entry = (op: string, value: number | undefined) => omitZero({ major, minor, op, value });
      bytes.push(entry('Read', kv.rbytes), entry('Write', kv.wbytes));
      ios.push(entry('Read', kv.rios), entry('Write', kv.wios));
    }
    if (bytes.length) out.ioServiceBytesRecursive = bytes;
    if (ios.length) out.ioServicedRecursive = ios;
  }
  for (const k of Object.keys(out) as (keyof typeof out)[]) if (!out[k]) delete out[k];
  s.blkio = out;
}

/** Huge page sizes the kernel offers, as cgroup file names use them ("2MB", "1GB"). */
export function hugePageSizes(): string[] {
  let names: string[] = [];
  try {
    names = readdirSync('/sys/kernel/mm/hugepages');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    const m = /^hugepages-(\d+)kB$/.exec(n);
    if (!m) continue;
    let kb = Number(m[1]);
    const units = ['KB', 'MB', 'GB', 'TB'];
    let u = 0;
    while (kb >= 1024 && kb % 1024 === 0 && u < units.length - 1) {
      kb /= 1024;
      u++;
    }
    out.push(`${kb}${units[u]}`);
  }
  return out;
}

function hugetlbStats(dirs: ControllerDirs, s: RuncStats): void {
  const h = dirs.get('hugetlb');
  if (!h) return;
  for (const size of hugePageSizes()) {
    if (h.version === 1) {
      const e: HugetlbStats = {
        usage: readNumber(h.dir, `hugetlb.${size}.usage_in_bytes`),
        max: readNumber(h.dir, `hugetlb.${size}.max_usage_in_bytes`),
        failcnt: readNumber(h.dir, `hugetlb.${size}.failcnt`) ?? 0,
      };
      s.hugetlb[size] = omitZeroKeepFailcnt(e);
    } else {
      const current = readNumber(h.dir, `hugetlb.${size}.current`);
      if (current === undefined) continue;
      const events = readKeyValues(h.dir, `hugetlb.${size}.events`);
      s.hugetlb[size] = omitZeroKeepFailcnt({ usage: current, failcnt: events.max ?? 0 });
    }
  }
}

function omitZeroKeepFailcnt(e: HugetlbStats): HugetlbStats {
  const failcnt = e.failcnt;
  omitZero(e);
  e.failcnt = failcnt;
  return e;
}

/** Reads the statistics of a container's cgroup. */
export function readStats(dirs: ControllerDirs): RuncStats {
  const s: RuncStats = {
    cpu: { usage: { kernel: 0, user: 0 }, throttling: {} },
    cpuset: {
      cpu_exclusive: 0, mem_hardwall: 0, mem_exclusive: 0, memory_migrate: 0, memory_spread_page: 0,
      memory_spread_slab: 0, memory_pressure: 0, sched_load_balance: 0, sched_relax_domain_level: 0,
    },
    memory: { usage: { limit: 0, failcnt: 0 }, swap: { limit: 0, failcnt: 0 }, kernel: { limit: 0, failcnt: 0 }, kernelTCP: { limit: 0, failcnt: 0 } },
    pids: {},
    blkio: {},
    hugetlb: {},
    intel_rdt: {},
    network_interfaces: null,
  };
  cpuStats(dirs, s);
  cpusetStats(dirs, s);
  memoryStats(dirs, s);
  pidsStats(dirs, s);
  blkioStats(dirs, s);
  hugetlbStats(dirs, s);
  return s;
}

/** JSON with integers printed exactly (JSON.stringify rounds 2^63-4096 to 9223372036854772000). */
export function exactJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return 'null';
    if (Number.isInteger(value) && Math.abs(value) > Number.MAX_SAFE_INTEGER) {
      return value >= MAX_UINT64 ? '18446744073709551615' : BigInt(value).toString();
    }
    return JSON.stringify(value);
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(exactJson).join(',')}]`;
  const parts: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === undefined) continue;
    parts.push(`${JSON.stringify(k)}:${exactJson(v)}`);
  }
  return `{${parts.join(',')}}`;
}

/** A `runc events` line: {"type":"stats","id":ID,"data":STATS}, numbers exact. */
export function formatEvent(type: string, id: string, data?: unknown): string {
  return exactJson({ type, id, ...(data === undefined ? {} : { data }) });
}

/** Whether a path is a directory (a cgroup). */
export function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
