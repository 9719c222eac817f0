// The cgroup manager: creates a container's cgroup in every hierarchy, moves processes into it, sets
// OCI linux.resources, freezes, kills, reports statistics and OOM kills, and removes it.
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmdirSync, watch, type FSWatcher } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { KeelError } from '../../util/errors.js';
import type { Linux } from '../../spec/index.js';
import { detectCgroupLayout, readProcCgroups, type CgroupLayout } from './layout.js';
import { resolveCgroupPaths, type CgroupPaths } from './paths.js';
import { describeFsError, errnoCode, readKeyValues, readNumber, readOptional, sleep, writeCgroup, writeRaw } from './fsutil.js';
import { DeviceEmulator, deviceFilterInstructions, emulatorFromList, encodeEbpf, parseDeviceRules, v1DeviceWrites } from './devices.js';
import { hugePageSizes, readStats, type ControllerDirs, type RuncStats } from './stats.js';
// These bind libc through koffi lazily: koffi loads on the first call, not on import.
import * as bpf from '../sys/bpf.js';
import { closeEventFd, createEventFd, drainEventFd, watchReadable } from '../sys/eventfd.js';

export type LinuxResources = NonNullable<Linux['resources']>;

export interface CgroupManagerOptions {
  /** linux.cgroupsPath ("" or undefined: the container ID, relative). */
  cgroupsPath?: string;
  containerId: string;
  /** --systemd-cgroup: cgroupsPath is "slice:prefix:name"; needs systemd running. */
  systemd?: boolean;
  /** Rootless: hierarchies keel may not write are skipped (setting limits in them is then an error). */
  rootless?: boolean;
  /** Override the detected layout (tests, or a caller that already detected it). */
  layout?: CgroupLayout;
  /** The runtime's own cgroups (default: /proc/self/cgroup), the base of relative paths. */
  ownCgroups?: Record<string, string>;
}

export type FreezerState = 'frozen' | 'thawed' | 'freezing';

export interface OomWatch {
  close(): void;
}

// v2 names of v1 controllers.
const V2_NAME: Record<string, string> = { blkio: 'io', cpuacct: 'cpu' };

const PERMISSION = new Set(['EACCES', 'EPERM', 'EROFS']);

export class CgroupManager {
  readonly layout: CgroupLayout;
  readonly paths: CgroupPaths;
  private readonly rootless: boolean;
  /** The systemd driver: the cgroup is a transient unit, stopped on destroy. */
  readonly systemd: boolean;
  /** Hierarchies (by directory) that could not be created or joined in rootless mode. */
  private readonly skipped = new Set<string>();

  constructor(opts: CgroupManagerOptions) {
    if (!opts.containerId) throw new KeelError('a cgroup needs a container ID');
    this.layout = opts.layout ?? detectCgroupLayout();
    this.rootless = opts.rootless ?? false;
    this.systemd = opts.systemd ?? false;
    if (this.layout.mode === 'v2' && !this.layout.unified) throw new KeelError('no cgroup hierarchy is mounted on this host');
    this.paths = resolveCgroupPaths(this.layout, opts, opts.ownCgroups ?? readProcCgroups());
  }

  /** Every directory of this cgroup: one per v1 hierarchy (co-mounted controllers share one), plus unified. */
  dirs(): string[] {
    const out = new Set(Object.values(this.paths.v1));
    if (this.paths.unified) out.add(this.paths.unified);
    return [...out];
  }

  /** Where a controller's files are: its v1 hierarchy, else the unified hierarchy if it offers it. */
  controller(name: string): { version: 1 | 2; dir: string } | undefined {
    const v1 = this.paths.v1[name];
    if (v1 && this.layout.v1[name]) return this.skipped.has(v1) ? undefined : { version: 1, dir: v1 };
    const u = this.paths.unified;
    if (!u || this.skipped.has(u)) return undefined;
    const v2name = V2_NAME[name] ?? name;
    if (this.layout.v1[name] || (v2name !== name && this.layout.v1[v2name])) return undefined;
    return this.layout.unifiedControllers.includes(v2name) ? { version: 2, dir: u } : undefined;
  }

  private controllerDirs(): ControllerDirs {
    return { get: (c) => this.controller(c) };
  }

  /** The hierarchy whose cgroup.procs lists the container's processes. */
  private mainDir(): string | undefined {
    if (this.layout.mode === 'v2') return this.paths.unified;
    for (const c of ['freezer', 'pids', 'memory', 'cpu', 'devices', 'cpuset', 'blkio']) {
      const d = this.paths.v1[c];
      if (d && !this.skipped.has(d)) return d;
    }
    if (this.paths.unified && !this.skipped.has(this.paths.unified)) return this.paths.unified;
    return Object.values(this.paths.v1).find((d) => !this.skipped.has(d));
  }

  /** Whether the cgroup exists (in its main hierarchy). */
  exists(): boolean {
    const d = this.mainDir();
    return d !== undefined && existsSync(d);
  }

  // -------------------------------------------------------------------------------------------
  // create / apply

  /**
   * Creates the cgroup directories (and missing parents). On pure v2, enables the available
   * controllers down the path, as runc does. On failure, removes what it created.
   */
  create(): void {
    const made: string[] = [];
    try {
      for (const [controller, dir] of Object.entries(this.paths.v1)) {
        if (this.skipped.has(dir)) continue;
        const mount = this.layout.v1[controller]!.mountpoint;
        if (!this.mkdirs(dir, mount, made)) continue;
        if (controller === 'cpuset') this.inheritCpuset(dir, mount);
      }
      if (this.paths.unified) {
        const mount = this.layout.unified!.mountpoint;
        if (this.mkdirs(this.paths.unified, mount, made) && this.layout.mode === 'v2') {
          this.enableControllers(this.paths.unified, mount, this.layout.unifiedControllers);
        }
      }
    } catch (err) {
      for (const d of made.reverse()) {
        try {
          rmdirSync(d);
        } catch {
          /* best effort */
        }
      }
      throw err;
    }
  }

  private mkdirs(dir: string, mount: string, made: string[]): boolean {
    const missing: string[] = [];
    for (let d = dir; d !== mount && d.startsWith(mount) && !existsSync(d); d = dirname(d)) missing.unshift(d);
    for (const d of missing) {
      try {
        mkdirSync(d);
        made.push(d);
      } catch (err) {
        if (errnoCode(err) === 'EEXIST') continue;
        if (this.rootless && PERMISSION.has(errnoCode(err) ?? '')) {
          this.skipped.add(dir);
          return false;
        }
        throw new KeelError(`cannot create cgroup ${d}: ${describeFsError(err)}`, { cause: err });
      }
    }
    return true;
  }

  /** A new v1 cpuset cgroup starts with no CPUs or memory nodes; copy them from the parent. */
  private inheritCpuset(dir: string, mount: string): void {
    const chain: string[] = [];
    for (let d = dir; d.startsWith(mount) && d !== mount; d = dirname(d)) chain.unshift(d);
    for (const d of chain) {
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        if ((readOptional(d, f) ?? '') !== '') continue;
        const parent = readOptional(dirname(d), f) ?? '';
        if (parent) writeCgroup(d, f, parent, `${f} (inherited from the parent cgroup)`);
      }
    }
  }

  /** Enables controllers in cgroup.subtree_control of each ancestor of `dir` (best effort, like runc). */
  private enableControllers(dir: string, mount: string, controllers: string[]): void {
    const ancestors: string[] = [];
    for (let d = dirname(dir); d.startsWith(mount); d = dirname(d)) {
      ancestors.unshift(d);
      if (d === mount) break;
    }
    for (const d of ancestors) {
      const available = (readOptional(d, 'cgroup.controllers') ?? '').split(/\s+/).filter((c) => controllers.includes(c));
      const enabled = new Set((readOptional(d, 'cgroup.subtree_control') ?? '').split(/\s+/));
      const wanted = available.filter((c) => !enabled.has(c));
      if (wanted.length === 0) continue;
      try {
        writeRaw(join(d, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' '));
      } catch {
        for (const c of wanted) {
          try {
            writeRaw(join(d, 'cgroup.subtree_control'), `+${c}`);
          } catch {
            /* unavailable here; setting a limit on it will say so */
          }
        }
      }
    }
  }

  /** Moves a process (and its threads) into the cgroup in every hierarchy. */
  apply(pid: number): void {
    if (!Number.isInteger(pid) || pid <= 0) throw new KeelError(`invalid pid ${pid} for cgroup ${this.paths.inner}`);
    for (const dir of this.dirs()) {
      if (this.skipped.has(dir)) continue;
      try {
        writeRaw(join(dir, 'cgroup.procs'), String(pid));
      } catch (err) {
        const code = errnoCode(err) ?? '';
        if (this.rootless && (PERMISSION.has(code) || code === 'ENOENT')) {
          this.skipped.add(dir);
          continue;
        }
        throw new KeelError(`cannot move process ${pid} into cgroup ${dir}: ${describeFsError(err)}`, { cause: err });
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // set

  private need(controller: string, field: string): { version: 1 | 2; dir: string } {
    const c = this.controller(controller);
    if (c) return c;
    const d = this.paths.v1[controller] ?? this.paths.unified;
    if (d && this.skipped.has(d)) {
      throw new KeelError(`cannot set ${field}: keel may not create or join the ${controller} cgroup (rootless, ${d})`);
    }
    throw new KeelError(
      `cannot set ${field}: the ${V2_NAME[controller] ?? controller} cgroup controller is not available on this host (${this.describeLayout()})`,
    );
  }

  private describeLayout(): string {
    const v1 = Object.keys(this.layout.v1).filter((c) => !c.startsWith('name='));
    const parts = [];
    if (v1.length) parts.push(`cgroup v1: ${v1.join(', ')}`);
    if (this.layout.unified) parts.push(`cgroup v2 at ${this.layout.unified.mountpoint}: ${this.layout.unifiedControllers.join(', ') || 'no controllers'}`);
    return parts.join('; ');
  }

  /**
   * Applies OCI linux.resources. Everything is checked before anything is written; a value the
   * host cannot honour throws one KeelError naming the resource (and the file).
   */
  set(resources: LinuxResources | undefined, field = 'linux.resources'): void {
    if (!resources) return;
    const steps: (() => void)[] = [];
    const r = resources;

    // cpuset
    if (r.cpu?.cpus !== undefined && r.cpu.cpus !== '') {
      const c = this.need('cpuset', `${field}.cpu.cpus`);
      const v = r.cpu.cpus;
      if (!/^[0-9,\-\s]+$/.test(v)) throw new KeelError(`invalid CPU list ${JSON.stringify(v)} in ${field}.cpu.cpus`);
      steps.push(() => writeCgroup(c.dir, 'cpuset.cpus', v, `${field}.cpu.cpus`));
    }
    if (r.cpu?.mems !== undefined && r.cpu.mems !== '') {
      const c = this.need('cpuset', `${field}.cpu.mems`);
      const v = r.cpu.mems;
      if (!/^[0-9,\-\s]+$/.test(v)) throw new KeelError(`invalid memory node list ${JSON.stringify(v)} in ${field}.cpu.mems`);
      steps.push(() => writeCgroup(c.dir, 'cpuset.mems', v, `${field}.cpu.mems`));
    }

    // devices
    if (r.devices) {
      const rules = parseDeviceRules(r.devices, `${field}.devices`);
      const target = DeviceEmulator.fromRules(rules);
      steps.push(() => this.setDevices(target, `${field}.devices`));
    }

    if (r.memory) steps.push(...this.memorySteps(r.memory, `${field}.memory`));
    if (r.cpu) steps.push(...this.cpuSteps(r.cpu, `${field}.cpu`));

    if (r.pids && r.pids.limit !== undefined && r.pids.limit !== 0) {
      const c = this.need('pids', `${field}.pids.limit`);
      const limit = r.pids.limit > 0 ? String(r.pids.limit) : 'max';
      steps.push(() => writeCgroup(c.dir, 'pids.max', limit, `${field}.pids.limit`));
    }

    if (r.blockIO) steps.push(...this.blockIOSteps(r.blockIO, `${field}.blockIO`));

    if (r.hugepageLimits?.length) {
      const sizes = hugePageSizes();
      r.hugepageLimits.forEach((h, i) => {
        const at = `${field}.hugepageLimits[${i}]`;
        if (!sizes.includes(h.pageSize)) {
          throw new KeelError(`huge page size ${JSON.stringify(h.pageSize)} in ${at}.pageSize is not supported by this host (it has ${sizes.join(', ') || 'none'})`);
        }
        const c = this.need('hugetlb', `${at}.limit`);
        steps.push(() => {
          if (c.version === 2) this.enableUnified('hugetlb', `${at}.limit`);
          const base = c.version === 1 ? `hugetlb.${h.pageSize}.limit_in_bytes` : `hugetlb.${h.pageSize}.max`;
          writeCgroup(c.dir, base, h.limit, `${at}.limit`);
          const rsvd = c.version === 1 ? `hugetlb.${h.pageSize}.rsvd.limit_in_bytes` : `hugetlb.${h.pageSize}.rsvd.max`;
          if (existsSync(join(c.dir, rsvd))) writeCgroup(c.dir, rsvd, h.limit, `${at}.limit`);
        });
      });
    }

    if (r.network?.classID !== undefined) {
      const c = this.need('net_cls', `${field}.network.classID`);
      if (c.version !== 1) throw new KeelError(`cannot set ${field}.network.classID: net_cls exists only in cgroup v1`);
      steps.push(() => writeCgroup(c.dir, 'net_cls.classid', r.network!.classID!, `${field}.network.classID`));
    }
    if (r.network?.priorities?.length) {
      const c = this.need('net_prio', `${field}.network.priorities`);
      r.network.priorities.forEach((p, i) => {
        steps.push(() => writeCgroup(c.dir, 'net_prio.ifpriomap', `${p.name} ${p.priority}`, `${field}.network.priorities[${i}]`));
      });
    }

    if (r.rdma && Object.keys(r.rdma).length) {
      const c = this.need('rdma', `${field}.rdma`);
      for (const [dev, lim] of Object.entries(r.rdma)) {
        const parts = [dev];
        if (lim.hcaHandles !== undefined) parts.push(`hca_handle=${lim.hcaHandles}`);
        if (lim.hcaObjects !== undefined) parts.push(`hca_object=${lim.hcaObjects}`);
        if (parts.length > 1) steps.push(() => writeCgroup(c.dir, 'rdma.max', parts.join(' '), `${field}.rdma.${dev}`));
      }
    }

    if (r.unified && Object.keys(r.unified).length) {
      if (this.layout.mode === 'v1' || !this.paths.unified) {
        throw new KeelError(`cannot set ${field}.unified: this host has no cgroup v2 hierarchy`);
      }
      const dir = this.paths.unified;
      for (const [key, value] of Object.entries(r.unified)) {
        const at = `${field}.unified[${JSON.stringify(key)}]`;
        if (!/^[a-z0-9_]+\.[a-zA-Z0-9_.]+$/.test(key) || key.includes('..')) {
          throw new KeelError(`invalid cgroup file name in ${at}`);
        }
        const ctrl = key.split('.')[0]!;
        if (ctrl !== 'cgroup' && !this.layout.unifiedControllers.includes(ctrl)) {
          throw new KeelError(`cannot set ${at}: the ${ctrl} controller is not available in cgroup v2 on this host (${this.describeLayout()})`);
        }
        steps.push(() => {
          if (ctrl !== 'cgroup') this.enableUnified(ctrl, at);
          writeCgroup(dir, key, value, at);
        });
      }
    }

    for (const step of steps) step();
  }

  /** In hybrid mode, a v2 controller has to be switched on down the path before its files appear. */
  private enableUnified(controller: string, field: string): void {
    const dir = this.paths.unified!;
    if (existsSync(join(dir, 'cgroup.controllers')) && (readOptional(dir, 'cgroup.controllers') ?? '').split(/\s+/).includes(controller)) return;
    this.enableControllers(dir, this.layout.unified!.mountpoint, [controller]);
    if (!(readOptional(dir, 'cgroup.controllers') ?? '').split(/\s+/).includes(controller)) {
      throw new KeelError(`cannot set ${field}: the ${controller} controller could not be enabled for ${dir}`);
    }
  }

  private memorySteps(m: NonNullable<LinuxResources['memory']>, field: string): (() => void)[] {
    const steps: (() => void)[] = [];
    const any = m.limit !== undefined || m.swap !== undefined || m.reservation !== undefined || m.kernelTCP !== undefined
      || (m.swappiness !== undefined && m.swappiness !== -1) || m.disableOOMKiller || m.useHierarchy !== undefined;
    if (!any) return steps;
    const c = this.need('memory', field);
    const limit = m.limit ?? 0;
    let swap = m.swap ?? 0;
    if (m.swappiness !== undefined && m.swappiness !== -1 && (m.swappiness < 0 || m.swappiness > 100)) {
      throw new KeelError(`invalid ${field}.swappiness ${m.swappiness}: the range is 0-100`);
    }
    if (c.version === 1) {
      const d = c.dir;
      const memsw = existsSync(join(d, 'memory.memsw.limit_in_bytes'));
      if (limit === -1 && swap === 0 && memsw) swap = -1;
      if (swap !== 0 && swap !== -1 && !memsw) {
        throw new KeelError(`cannot set ${field}.swap: this host has no swap accounting (${join(d, 'memory.memsw.limit_in_bytes')} is missing)`);
      }
      const setLimit = () => {
        if (limit === 0) return;
        try {
          writeRaw(join(d, 'memory.limit_in_bytes'), String(limit));
        } catch (err) {
          if (errnoCode(err) === 'EBUSY') {
            const usage = readNumber(d, 'memory.usage_in_bytes');
            throw new KeelError(`cannot set ${field}.limit to ${limit}: the cgroup already uses ${usage} bytes (${join(d, 'memory.limit_in_bytes')})`, { cause: err });
          }
          throw new KeelError(`cannot set ${field}.limit to ${JSON.stringify(String(limit))}: writing ${join(d, 'memory.limit_in_bytes')}: ${describeFsError(err)}`, { cause: err });
        }
      };
      const setSwap = () => {
        if (swap !== 0 && memsw) writeCgroup(d, 'memory.memsw.limit_in_bytes', swap, `${field}.swap`);
      };
      steps.push(() => {
        // runc's order: raise memsw before the limit when it grows, so the kernel never sees limit > memsw.
        const cur = readNumber(d, 'memory.limit_in_bytes') ?? 0;
        if (limit !== 0 && swap !== 0 && (swap === -1 || cur < swap)) {
          setSwap();
          setLimit();
        } else {
          setLimit();
          setSwap();
        }
      });
      if (m.reservation !== undefined && m.reservation !== 0) {
        steps.push(() => writeCgroup(d, 'memory.soft_limit_in_bytes', m.reservation!, `${field}.reservation`));
      }
      if (m.kernelTCP !== undefined && m.kernelTCP !== 0) {
        steps.push(() => writeCgroup(d, 'memory.kmem.tcp.limit_in_bytes', m.kernelTCP!, `${field}.kernelTCP`));
      }
      if (m.swappiness !== undefined && m.swappiness !== -1) {
        steps.push(() => writeCgroup(d, 'memory.swappiness', m.swappiness!, `${field}.swappiness`));
      }
      if (m.disableOOMKiller) steps.push(() => writeCgroup(d, 'memory.oom_control', 1, `${field}.disableOOMKiller`));
      if (m.useHierarchy !== undefined) {
        steps.push(() => writeCgroup(d, 'memory.use_hierarchy', m.useHierarchy ? 1 : 0, `${field}.useHierarchy`));
      }
      return steps;
    }
    // cgroup v2
    const d = c.dir;
    if (m.swappiness !== undefined && m.swappiness !== -1) {
      throw new KeelError(`cannot set ${field}.swappiness: cgroup v2 has no per-cgroup swappiness`);
    }
    if (m.disableOOMKiller) throw new KeelError(`cannot set ${field}.disableOOMKiller: cgroup v2 cannot disable the OOM killer`);
    if (m.kernelTCP !== undefined && m.kernelTCP !== 0) throw new KeelError(`cannot set ${field}.kernelTCP: cgroup v2 has no separate TCP memory limit`);
    // runc's ConvertMemorySwapToCgroupV2Value: v1 swap is memory+swap, v2 swap.max is swap alone.
    let swapMax: string | undefined;
    if (limit === -1 && swap === 0) swapMax = 'max';
    else if (swap === -1) swapMax = 'max';
    else if (swap !== 0) {
      if (limit === 0 || limit === -1) throw new KeelError(`cannot set ${field}.swap without a ${field}.limit`);
      if (swap < limit) throw new KeelError(`${field}.swap (${swap}) must be at least ${field}.limit (${limit}): on cgroups it counts memory plus swap`);
      swapMax = String(swap - limit);
    }
    const num = (v: number) => (v === -1 ? 'max' : String(v));
    if (m.checkBeforeUpdate && limit > 0) {
      steps.push(() => {
        const usage = readNumber(d, 'memory.current') ?? 0;
        if (usage >= limit) throw new KeelError(`cannot set ${field}.limit to ${limit}: the cgroup already uses ${usage} bytes`);
      });
    }
    if (swapMax !== undefined) steps.push(() => writeCgroup(d, 'memory.swap.max', swapMax!, `${field}.swap`));
    if (limit !== 0) steps.push(() => writeCgroup(d, 'memory.max', num(limit), `${field}.limit`));
    if (m.reservation !== undefined && m.reservation !== 0) steps.push(() => writeCgroup(d, 'memory.low', num(m.reservation!), `${field}.reservation`));
    return steps;
  }

  private cpuSteps(cpu: NonNullable<LinuxResources['cpu']>, field: string): (() => void)[] {
    const steps: (() => void)[] = [];
    const wants = cpu.shares || cpu.quota || cpu.period || cpu.burst !== undefined || cpu.realtimePeriod || cpu.realtimeRuntime || cpu.idle !== undefined;
    if (!wants) return steps;
    const c = this.need('cpu', field);
    const d = c.dir;
    if (c.version === 1) {
      if (cpu.realtimePeriod) steps.push(() => writeCgroup(d, 'cpu.rt_period_us', cpu.realtimePeriod!, `${field}.realtimePeriod`));
      if (cpu.realtimeRuntime) steps.push(() => writeCgroup(d, 'cpu.rt_runtime_us', cpu.realtimeRuntime!, `${field}.realtimeRuntime`));
      if (cpu.shares) {
        steps.push(() => {
          writeCgroup(d, 'cpu.shares', cpu.shares!, `${field}.shares`);
          const got = readNumber(d, 'cpu.shares');
          if (got !== undefined && got !== cpu.shares) {
            throw new KeelError(`cannot set ${field}.shares to ${cpu.shares}: the kernel allows ${got < cpu.shares! ? 'at most' : 'at least'} ${got}`);
          }
        });
      }
      if (cpu.period || cpu.quota) {
        steps.push(() => {
          let retryPeriod = false;
          if (cpu.period) {
            try {
              writeRaw(join(d, 'cpu.cfs_period_us'), String(cpu.period));
            } catch (err) {
              // A smaller period can exceed the parent's quota until the quota is lowered (runc).
              if (errnoCode(err) !== 'EINVAL' || !cpu.quota) writeCgroup(d, 'cpu.cfs_period_us', cpu.period, `${field}.period`);
              retryPeriod = true;
            }
          }
          if (cpu.quota) writeCgroup(d, 'cpu.cfs_quota_us', cpu.quota, `${field}.quota`);
          if (retryPeriod) writeCgroup(d, 'cpu.cfs_period_us', cpu.period!, `${field}.period`);
        });
      }
      if (cpu.burst !== undefined) steps.push(() => writeCgroup(d, 'cpu.cfs_burst_us', cpu.burst!, `${field}.burst`));
      if (cpu.idle !== undefined) steps.push(() => writeCgroup(d, 'cpu.idle', cpu.idle!, `${field}.idle`));
      return steps;
    }
    if (cpu.realtimePeriod || cpu.realtimeRuntime) {
      throw new KeelError(`cannot set ${field}.realtimeRuntime/realtimePeriod: cgroup v2 has no real-time CPU budget`);
    }
    if (cpu.idle !== undefined) steps.push(() => writeCgroup(d, 'cpu.idle', cpu.idle!, `${field}.idle`));
    if (cpu.shares) {
      // runc's ConvertCPUSharesToCgroupV2Value: [2, 262144] → [1, 10000].
      const weight = 1 + Math.floor(((cpu.shares - 2) * 9999) / 262142);
      steps.push(() => writeCgroup(d, 'cpu.weight', weight, `${field}.shares`));
    }
    if (cpu.quota || cpu.period) {
      let v = cpu.quota && cpu.quota > 0 ? String(cpu.quota) : 'max';
      if (cpu.period) v += ` ${cpu.period}`;
      steps.push(() => writeCgroup(d, 'cpu.max', v, `${field}.quota`));
    }
    if (cpu.burst !== undefined) steps.push(() => writeCgroup(d, 'cpu.max.burst', cpu.burst!, `${field}.burst`));
    return steps;
  }

  private blockIOSteps(b: NonNullable<LinuxResources['blockIO']>, field: string): (() => void)[] {
    const steps: (() => void)[] = [];
    const throttles = [
      ['throttleReadBpsDevice', 'read_bps_device', 'rbps'],
      ['throttleWriteBpsDevice', 'write_bps_device', 'wbps'],
      ['throttleReadIOPSDevice', 'read_iops_device', 'riops'],
      ['throttleWriteIOPSDevice', 'write_iops_device', 'wiops'],
    ] as const;
    const wants = b.weight || b.leafWeight || b.weightDevice?.length || throttles.some(([k]) => b[k]?.length);
    if (!wants) return steps;
    const c = this.need('blkio', field);
    const d = c.dir;
    if (c.version === 1) {
      const cfq = existsSync(join(d, 'blkio.weight'));
      const bfq = !cfq && existsSync(join(d, 'blkio.bfq.weight'));
      const weightFile = cfq ? 'blkio.weight' : 'blkio.bfq.weight';
      const weightDeviceFile = cfq ? 'blkio.weight_device' : 'blkio.bfq.weight_device';
      const noWeights = (what: string) =>
        new KeelError(`cannot set ${what}: this host's block I/O scheduler offers no weights (no ${join(d, 'blkio.weight')} or blkio.bfq.weight)`);
      if (b.weight) {
        if (!cfq && !bfq) throw noWeights(`${field}.weight`);
        steps.push(() => writeCgroup(d, weightFile, b.weight!, `${field}.weight`));
      }
      if (b.leafWeight) {
        if (!cfq) throw new KeelError(`cannot set ${field}.leafWeight: this host has no ${join(d, 'blkio.leaf_weight')} (CFQ scheduler)`);
        steps.push(() => writeCgroup(d, 'blkio.leaf_weight', b.leafWeight!, `${field}.leafWeight`));
      }
      b.weightDevice?.forEach((w, i) => {
        const at = `${field}.weightDevice[${i}]`;
        if (w.weight) {
          if (!cfq && !bfq) throw noWeights(at);
          steps.push(() => writeCgroup(d, weightDeviceFile, `${w.major}:${w.minor} ${w.weight}`, at));
        }
        if (w.leafWeight) {
          if (!cfq) throw new KeelError(`cannot set ${at}.leafWeight: this host has no blkio.leaf_weight_device (CFQ scheduler)`);
          steps.push(() => writeCgroup(d, 'blkio.leaf_weight_device', `${w.major}:${w.minor} ${w.leafWeight}`, at));
        }
      });
      for (const [key, file] of throttles) {
        b[key]?.forEach((t, i) => {
          steps.push(() => writeCgroup(d, `blkio.throttle.${file}`, `${t.major}:${t.minor} ${t.rate ?? 0}`, `${field}.${key}[${i}]`));
        });
      }
      return steps;
    }
    // cgroup v2: io controller
    if (b.leafWeight) throw new KeelError(`cannot set ${field}.leafWeight: cgroup v2 has no leaf weights`);
    const bfq = existsSync(join(d, 'io.bfq.weight'));
    if (b.weight) {
      if (bfq) steps.push(() => writeCgroup(d, 'io.bfq.weight', b.weight!, `${field}.weight`));
      else {
        const w = 1 + Math.floor(((b.weight - 10) * 9999) / 990); // runc's ConvertBlkIOToIOWeightValue
        steps.push(() => writeCgroup(d, 'io.weight', w, `${field}.weight`));
      }
    }
    b.weightDevice?.forEach((w, i) => {
      if (!w.weight) return;
      const at = `${field}.weightDevice[${i}]`;
      if (bfq) steps.push(() => writeCgroup(d, 'io.bfq.weight', `${w.major}:${w.minor} ${w.weight}`, at));
      else steps.push(() => writeCgroup(d, 'io.weight', `${w.major}:${w.minor} ${1 + Math.floor(((w.weight! - 10) * 9999) / 990)}`, at));
    });
    for (const [key, , v2key] of throttles) {
      b[key]?.forEach((t, i) => {
        steps.push(() => writeCgroup(d, 'io.max', `${t.major}:${t.minor} ${v2key}=${t.rate ?? 0}`, `${field}.${key}[${i}]`));
      });
    }
    return steps;
  }

  private setDevices(target: DeviceEmulator, field: string): void {
    const v1 = this.paths.v1.devices && this.layout.v1.devices ? this.paths.v1.devices : undefined;
    if (v1) {
      if (this.skipped.has(v1)) {
        if (this.rootless) return; // runc ignores device errors when rootless
        throw new KeelError(`cannot set ${field}: the devices cgroup ${v1} was not created`);
      }
      const list = readOptional(v1, 'devices.list');
      const current = list === undefined ? undefined : emulatorFromList(list);
      try {
        for (const w of v1DeviceWrites(current, target)) writeCgroup(v1, w.file, w.line, field);
      } catch (err) {
        if (this.rootless) return;
        throw err;
      }
      return;
    }
    const u = this.paths.unified;
    if (!u || this.skipped.has(u)) {
      if (this.rootless) return;
      throw new KeelError(`cannot set ${field}: this host has neither a v1 devices controller nor a cgroup v2 hierarchy`);
    }
    try {
      attachDeviceFilter(u, target);
    } catch (err) {
      if (this.rootless) return;
      throw err;
    }
  }

  // -------------------------------------------------------------------------------------------
  // freezer

  private freezerDir(): { version: 1 | 2; dir: string } | undefined {
    const v1 = this.paths.v1.freezer;
    if (v1 && this.layout.v1.freezer && !this.skipped.has(v1)) return { version: 1, dir: v1 };
    const u = this.paths.unified;
    if (u && !this.skipped.has(u) && existsSync(join(u, 'cgroup.freeze'))) return { version: 2, dir: u };
    return undefined;
  }

  /** The file that holds the freezer state (v1 freezer.state, v2 cgroup.freeze), if there is a freezer. */
  freezerFile(): string | undefined {
    const f = this.freezerDir();
    return f && join(f.dir, f.version === 1 ? 'freezer.state' : 'cgroup.freeze');
  }

  /** The freezer state, or undefined where there is no freezer. */
  freezerState(): FreezerState | undefined {
    const f = this.freezerDir();
    if (!f) return undefined;
    if (f.version === 1) {
      const s = readOptional(f.dir, 'freezer.state');
      return s === 'FROZEN' ? 'frozen' : s === 'FREEZING' ? 'freezing' : s === undefined ? undefined : 'thawed';
    }
    const want = readOptional(f.dir, 'cgroup.freeze');
    if (want === undefined) return undefined;
    const frozen = readKeyValues(f.dir, 'cgroup.events').frozen === 1;
    return want === '1' ? (frozen ? 'frozen' : 'freezing') : 'thawed';
  }

  /** Freezes every process of the container; resolves once the kernel reports them frozen. */
  async freeze(timeoutMs = 5000): Promise<void> {
    const f = this.freezerDir();
    if (!f) throw new KeelError(`cannot freeze cgroup ${this.paths.inner}: this host has no freezer for it`);
    if (f.version === 1) {
      const deadline = Date.now() + timeoutMs;
      for (let i = 0; Date.now() < deadline; i++) {
        if (i % 50 === 49) {
          // Thawing now and then helps when new processes keep appearing (runc does the same).
          writeCgroup(f.dir, 'freezer.state', 'THAWED', 'freezer.state');
          await sleep(10);
        }
        writeCgroup(f.dir, 'freezer.state', 'FROZEN', 'freezer.state');
        const s = readOptional(f.dir, 'freezer.state');
        if (s === 'FROZEN') return;
        if (s !== 'FREEZING') throw new KeelError(`unexpected freezer state ${s} while freezing ${f.dir}`);
        await sleep(i < 10 ? 1 : 5);
      }
      writeCgroup(f.dir, 'freezer.state', 'THAWED', 'freezer.state');
      throw new KeelError(`cannot freeze ${f.dir}: processes did not stop within ${timeoutMs} ms`);
    }
    writeCgroup(f.dir, 'cgroup.freeze', '1', 'cgroup.freeze');
    if (!(await waitEvents(f.dir, (e) => e.frozen === 1, timeoutMs))) {
      writeCgroup(f.dir, 'cgroup.freeze', '0', 'cgroup.freeze');
      throw new KeelError(`cannot freeze ${f.dir}: cgroup.events did not report frozen within ${timeoutMs} ms`);
    }
  }

  /** Thaws the container. */
  async thaw(timeoutMs = 5000): Promise<void> {
    const f = this.freezerDir();
    if (!f) throw new KeelError(`cannot thaw cgroup ${this.paths.inner}: this host has no freezer for it`);
    if (f.version === 1) {
      writeCgroup(f.dir, 'freezer.state', 'THAWED', 'freezer.state');
      const deadline = Date.now() + timeoutMs;
      while (readOptional(f.dir, 'freezer.state') !== 'THAWED') {
        if (Date.now() > deadline) throw new KeelError(`cannot thaw ${f.dir} within ${timeoutMs} ms`);
        await sleep(1);
      }
      return;
    }
    writeCgroup(f.dir, 'cgroup.freeze', '0', 'cgroup.freeze');
    if (!(await waitEvents(f.dir, (e) => e.frozen !== 1, timeoutMs))) {
      throw new KeelError(`cannot thaw ${f.dir}: cgroup.events still reports frozen after ${timeoutMs} ms`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // processes, signals

  /** Every process in the container's cgroup and its descendants. */
  pids(): number[] {
    const dir = this.mainDir();
    if (!dir) return [];
    const out = new Set<number>();
    const walk = (d: string) => {
      let text: string;
      try {
        text = readFileSync(join(d, 'cgroup.procs'), 'utf8');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return;
        throw err;
      }
      for (const line of text.split('\n')) if (line) out.add(Number(line));
      let entries: import('node:fs').Dirent[] = [];
      try {
        entries = readdirSync(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) if (e.isDirectory()) walk(join(d, e.name));
    };
    walk(dir);
    return [...out];
  }

  /**
   * Sends `signal` to every process in the container. SIGKILL uses cgroup.kill where the kernel has
   * it (cgroup v2, also the unified hierarchy of a hybrid host); otherwise the cgroup is frozen, each
   * process signalled, and thawed (as runc does), so no process escapes by forking.
   * With SIGKILL, resolves once the cgroup is empty.
   */
  async killAll(signal: NodeJS.Signals | number = 'SIGKILL', timeoutMs = 5000): Promise<void> {
    const isKill = signal === 'SIGKILL' || signal === 9;
    const u = this.paths.unified;
    const killFile = u && !this.skipped.has(u) ? join(u, 'cgroup.kill') : undefined;
    if (isKill && killFile && existsSync(killFile) && (readOptional(u!, 'cgroup.procs') ?? '') !== '') {
      writeCgroup(u!, 'cgroup.kill', '1', 'cgroup.kill');
    } else {
      const canFreeze = this.freezerDir() !== undefined && this.exists();
      if (canFreeze) await this.freeze(timeoutMs).catch(() => undefined);
      try {
        for (const pid of this.pids()) {
          try {
            process.kill(pid, signal);
          } catch (err) {
            if (errnoCode(err) !== 'ESRCH') throw err;
          }
        }
      } finally {
        if (canFreeze) await this.thaw(timeoutMs).catch(() => undefined);
      }
    }
    if (!isKill) return;
    const deadline = Date.now() + timeoutMs;
    while (this.pids().length > 0) {
      if (Date.now() > deadline) {
        throw new KeelError(`processes ${this.pids().join(', ')} of cgroup ${this.paths.inner} did not die within ${timeoutMs} ms`);
      }
      await sleep(2);
    }
  }

  // -------------------------------------------------------------------------------------------
  // statistics, OOM

  /** Statistics in the shape of `runc events --stats` (its "data"). */
  stats(): RuncStats {
    return readStats(this.controllerDirs());
  }

  /** How many processes the OOM killer has killed in this cgroup (undefined without memory accounting). */
  oomKillCount(): number | undefined {
    const m = this.controller('memory');
    if (!m) return undefined;
    const file = m.version === 1 ? 'memory.oom_control' : 'memory.events';
    const kv = readKeyValues(m.dir, file);
    return kv.oom_kill;
  }

  /**
   * Calls `onOom(count)` whenever the OOM killer acts in this cgroup (v1: an eventfd registered on
   * memory.oom_control through cgroup.event_control; v2: inotify on memory.events). The watch ends
   * by itself when the cgroup is removed. `count` is the oom_kill counter when the kernel has one.
   */
  async watchOom(onOom: (count: number | undefined) => void): Promise<OomWatch> {
    const m = this.controller('memory');
    if (!m) throw new KeelError(`cannot watch OOM events of cgroup ${this.paths.inner}: no memory controller`);
    if (m.version === 1) {
      const efd = createEventFd();
      let ofd = -1;
      try {
        ofd = openSync(join(m.dir, 'memory.oom_control'), 'r');
        writeCgroup(m.dir, 'cgroup.event_control', `${efd} ${ofd}`, 'cgroup.event_control');
      } catch (err) {
        closeEventFd(efd);
        if (ofd >= 0) closeSync(ofd);
        throw err;
      }
      let closed = false;
      const close = () => {
        if (closed) return;
        closed = true;
        w.close();
        closeEventFd(efd);
        closeSync(ofd);
      };
      const w = watchReadable(efd, () => {
        if (drainEventFd(efd) === 0n) return;
        // The kernel also signals the eventfd when the cgroup goes away.
        if (!existsSync(join(m.dir, 'cgroup.event_control'))) return close();
        onOom(readKeyValues(m.dir, 'memory.oom_control').oom_kill);
      });
      return { close };
    }
    let last = readKeyValues(m.dir, 'memory.events').oom_kill ?? 0;
    let watcher: FSWatcher | undefined;
    const check = () => {
      if (!existsSync(m.dir)) return watcher?.close();
      const now = readKeyValues(m.dir, 'memory.events').oom_kill ?? 0;
      if (now > last) {
        last = now;
        onOom(now);
      }
    };
    watcher = watch(join(m.dir, 'memory.events'), check);
    watcher.on('error', () => watcher?.close());
    return { close: () => watcher?.close() };
  }

  // -------------------------------------------------------------------------------------------
  // destroy

  /**
   * Removes the cgroup (and any cgroups created inside it) from every hierarchy, killing the
   * processes first when asked. Busy directories are retried a few times, as runc does.
   */
  async destroy(opts: { kill?: boolean } = {}): Promise<void> {
    if (opts.kill && this.exists()) await this.killAll('SIGKILL');
    if (this.systemd) await (await import('./systemd.js')).stopScope(posix.basename(this.paths.inner));
    const failures: string[] = [];
    for (const dir of this.dirs()) {
      const err = await removeTree(dir);
      if (err) failures.push(err);
    }
    if (failures.length) throw new KeelError(`cannot remove cgroup: ${failures.join('; ')}`);
  }
}

/** Removes a cgroup directory and its sub-cgroups (leaves first), retrying EBUSY. */
async function removeTree(dir: string): Promise<string | undefined> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    return errnoCode(err) === 'ENOENT' ? undefined : `${dir}: ${describeFsError(err)}`;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const sub = await removeTree(join(dir, e.name));
    if (sub) return sub;
  }
  let delay = 10;
  for (let attempt = 0; ; attempt++) {
    try {
      rmdirSync(dir);
      return undefined;
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') return undefined;
      if (code !== 'EBUSY' || attempt >= 6) {
        const procs = readOptional(dir, 'cgroup.procs');
        return `${dir}: ${describeFsError(err)}${procs ? ` (processes still in it: ${procs.split('\n').join(', ')})` : ''}`;
      }
      await sleep(delay);
      delay *= 2;
    }
  }
}

/** Waits until cgroup.events satisfies `ok` (inotify, with a polling fallback). */
async function waitEvents(dir: string, ok: (e: Record<string, number>) => boolean, timeoutMs: number): Promise<boolean> {
  const file = join(dir, 'cgroup.events');
  if (ok(readKeyValues(dir, 'cgroup.events'))) return true;
  return new Promise<boolean>((resolve) => {
    let done = false;
    let watcher: FSWatcher | undefined;
    const finish = (v: boolean) => {
      if (done) return;
      done = true;
      clearInterval(poll);
      clearTimeout(timer);
      watcher?.close();
      resolve(v);
    };
    const check = () => {
      try {
        if (ok(readKeyValues(dir, 'cgroup.events'))) finish(true);
      } catch {
        finish(false);
      }
    };
    try {
      watcher = watch(file, check);
      watcher.on('error', () => undefined);
    } catch {
      /* polling only */
    }
    const poll = setInterval(check, 10);
    const timer = setTimeout(() => finish(false), timeoutMs);
    check();
  });
}

/**
 * Installs a device-filter BPF program for `state` on a cgroup v2 directory, replacing the
 * programs a previous call attached (attach the new one first, then detach the old ones, so there is
 * no moment without a filter).
 */
export function attachDeviceFilter(dir: string, state: DeviceEmulator): void {
  const prog = encodeEbpf(deviceFilterInstructions(state));
  const cgfd = openSync(dir, 'r');
  try {
    const old = bpf.queryDevicePrograms(cgfd);
    const progFd = bpf.loadDeviceProgram(prog);
    try {
      bpf.attachDeviceProgram(cgfd, progFd);
    } finally {
      bpf.closeFd(progFd);
    }
    for (const id of old) {
      const fd = bpf.programFdById(id);
      try {
        bpf.detachDeviceProgram(cgfd, fd);
      } finally {
        bpf.closeFd(fd);
      }
    }
  } finally {
    closeSync(cgfd);
  }
}

/** Creates a manager for a container's cgroup (nothing is touched until create()/apply()). */
export function createCgroupManager(opts: CgroupManagerOptions): CgroupManager {
  return new CgroupManager(opts);
}
