// The runtime's commands beyond the lifecycle, with runc's behaviour: pause and resume (the cgroup
// freezer), ps (the container's host pids), events (statistics and OOM notices as runc's JSON lines)
// and update (changing linux.resources of a live container, in its cgroup and in its stored config).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { Linux } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import { StateStore, checkId, type ContainerRecord } from './state.js';
import { statusOf, containerPids, type RuntimeContext, type Status } from './container.js';
import { cgroupOf } from './resources.js';
import type { CgroupManager, RuncStats } from './cgroups/index.js';

export type LinuxResources = NonNullable<Linux['resources']>;

function store(ctx: RuntimeContext): StateStore { return new StateStore(ctx.root); }

/** Whether the record's init is the process it was (same start time) and not a zombie. */
function initAlive(rec: ContainerRecord): boolean {
  if (!(rec.pid > 0)) return false;
  let text: string;
  try { text = readFileSync(`/proc/${rec.pid}/stat`, 'utf8'); } catch { return false; }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return fields[19] === rec.pidStartTime && fields[0] !== 'Z' && fields[0] !== 'X';
}

/** The container's cgroup manager, or a KeelError saying why `what` cannot be done without one. */
function needCgroup(rec: ContainerRecord, what: string): CgroupManager {
  const cg = cgroupOf(rec);
  if (!cg) throw new KeelError(`cannot ${what} container ${rec.id}: keel did not give it a cgroup`);
  return cg;
}

/**
 * Whether the container is frozen. statusOf() reports a created container as created even when it
 * is frozen; runc looks at the freezer first, and so do pause and resume here.
 */
function isFrozen(rec: ContainerRecord): boolean {
  if (!rec.cgroup || !initAlive(rec)) return false;
  const s = cgroupOf(rec)?.freezerState();
  return s === 'frozen' || s === 'freezing';
}

// ---------------------------------------------------------------------------------------------
// pause, resume

/** `keel pause`: freezes every process of a running (or created) container, as runc does. */
export async function pause(ctx: RuntimeContext, id: string): Promise<void> {
  checkId(id);
  const st = store(ctx);
  await st.withLock(id, async () => {
    const rec = st.load(id);
    if (isFrozen(rec)) throw new KeelError(`cannot pause container ${id}: container already paused`);
    const status: Status = statusOf(ctx, rec);
    if (status !== 'running' && status !== 'created') throw new KeelError(`cannot pause container ${id}: container not running (status ${status})`);
    await needCgroup(rec, 'pause').freeze();
  });
}

/** `keel resume`: thaws a paused container. */
export async function resume(ctx: RuntimeContext, id: string): Promise<void> {
  checkId(id);
  const st = store(ctx);
  await st.withLock(id, async () => {
    const rec = st.load(id);
    if (!isFrozen(rec)) throw new KeelError(`cannot resume container ${id}: container not paused (status ${statusOf(ctx, rec)})`);
    await needCgroup(rec, 'resume').thaw();
  });
}

// ---------------------------------------------------------------------------------------------
// ps

/** `keel ps --format json`: the host pids of the container's processes, ascending. */
export async function ps(ctx: RuntimeContext, id: string): Promise<number[]> {
  checkId(id);
  const rec = store(ctx).load(id);
  if (!rec.cgroup && statusOf(ctx, rec) === 'stopped') return [];
  return containerPids(rec);
}

/** The index of the PID column in a `ps` header line. */
function pidColumn(header: string): number {
  const i = header.trim().split(/\s+/).indexOf('PID');
  if (i < 0) throw new KeelError(`ps: cannot find a PID column in its output header ${JSON.stringify(header)}`);
  return i;
}

/**
 * `keel ps ID [ps options]`: runs the host's `ps` (default `-ef`) and keeps its header and the lines
 * of the container's processes, as runc does.
 */
export async function psTable(ctx: RuntimeContext, id: string, psArgs: string[] = []): Promise<string> {
  const pids = new Set(await ps(ctx, id));
  const args = psArgs.length ? psArgs : ['-ef'];
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync('ps', args, { encoding: 'utf8' });
  if (r.error) throw new KeelError(`cannot run ps ${args.join(' ')}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`);
  if (r.status !== 0) throw new KeelError(`ps ${args.join(' ')} failed (exit status ${r.status}): ${(r.stderr + r.stdout).trim().split('\n')[0]}`);
  const lines = r.stdout.split('\n');
  const header = lines[0] ?? '';
  const col = pidColumn(header);
  const out = [header];
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const field = line.trim().split(/\s+/)[col];
    const pid = Number(field);
    if (!Number.isInteger(pid)) throw new KeelError(`ps: cannot parse the pid ${JSON.stringify(field)} in ${JSON.stringify(line)}`);
    if (pids.has(pid)) out.push(line);
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// events

/** Parses a Go duration ("5s", "1m30s", "250ms", "1.5h"), as runc's --interval; returns milliseconds. */
export function parseDuration(text: string, flag = '--interval'): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const bad = () => new KeelError(`invalid value for ${flag}: ${JSON.stringify(text)} is not a duration (examples: 5s, 500ms, 1m30s)`);
  let s = text.trim();
  let sign = 1;
  if (s.startsWith('-') || s.startsWith('+')) { if (s[0] === '-') sign = -1; s = s.slice(1); }
  if (s === '0') return 0;
  if (!s) throw bad();
  let total = 0;
  const re = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (s) {
    const m = re.exec(s);
    if (!m) throw bad();
    total += Number(m[1]) * units[m[2]!]!;
    s = s.slice(m[0].length);
  }
  return sign * total;
}

export interface EventsOptions {
  /** Print one stats event and return (runc's --stats). */
  stats?: boolean;
  /** Milliseconds between stats events of the stream (default 5000). */
  intervalMs?: number;
  /** How often to check whether the container has stopped (default 100 ms). */
  pollMs?: number;
  /** Ends the stream early. */
  signal?: AbortSignal;
}

/** The container's statistics, in the shape of `runc events --stats` data. */
export async function stats(ctx: RuntimeContext, id: string): Promise<RuncStats> {
  checkId(id);
  const rec = store(ctx).load(id);
  if (statusOf(ctx, rec) === 'stopped') throw new KeelError(`container with id ${id} is not running`);
  return needCgroup(rec, 'read the statistics of').stats();
}

/**
 * `keel events`: with `stats`, one {"type":"stats",...} line; otherwise a stats line every interval
 * and an {"type":"oom",...} line whenever the OOM killer acts in the container, until the
 * container stops (or its cgroup is removed, or `signal` aborts). Each line goes to `emit`.
 */
export async function events(ctx: RuntimeContext, id: string, opts: EventsOptions, emit: (line: string) => void): Promise<void> {
  checkId(id);
  const interval = opts.intervalMs ?? 5000;
  if (!(interval > 0)) throw new KeelError('duration interval must be greater than 0');
  const st = store(ctx);
  const rec = st.load(id);
  if (statusOf(ctx, rec) === 'stopped') throw new KeelError(`container with id ${id} is not running`);
  const cg = needCgroup(rec, 'watch the events of');
  const { formatEvent } = await import('./cgroups/index.js');
  if (opts.stats) {
    emit(formatEvent('stats', id, cg.stats()) + '\n');
    return;
  }
  let oom: { close(): void } | undefined;
  try {
    oom = await cg.watchOom(() => emit(formatEvent('oom', id) + '\n'));
  } catch (err) {
    // Without a memory controller there are no OOM notices to give; statistics still flow.
    ctx.warn?.(`events ${id}: no OOM notices: ${(err as Error).message}`);
  }
  await new Promise<void>((resolveDone) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearInterval(tick);
      clearInterval(poll);
      opts.signal?.removeEventListener('abort', finish);
      oom?.close();
      resolveDone();
    };
    const gone = () => !initAlive(rec) || !cg.exists() || !st.exists(id);
    const tick = setInterval(() => {
      if (gone()) return finish();
      try {
        emit(formatEvent('stats', id, cg.stats()) + '\n');
      } catch (err) {
        if (gone()) return finish();
        ctx.warn?.(`events ${id}: reading statistics: ${(err as Error).message}`);
      }
    }, interval);
    const poll = setInterval(() => { if (gone()) finish(); }, Math.min(opts.pollMs ?? 100, interval));
    if (opts.signal?.aborted) finish();
    opts.signal?.addEventListener('abort', finish);
  });
}

// ---------------------------------------------------------------------------------------------
// update

/** runc's `update` flags, as strings from the command line. */
export interface UpdateFlags {
  memory?: string;
  memoryReservation?: string;
  memorySwap?: string;
  kernelMemory?: string;
  kernelMemoryTcp?: string;
  cpuShares?: string;
  cpuPeriod?: string;
  cpuQuota?: string;
  cpuRtPeriod?: string;
  cpuRtRuntime?: string;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: string;
  blkioWeight?: string;
  l3CacheSchema?: string;
  memBwSchema?: string;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * A memory size as runc's flags take it (docker's RAMInBytes): a number with an optional binary
 * unit, "64m", "1.5g", "512k", "64MiB", "128 MB" (k, m, g, t, p are powers of 1024); "-1" is unlimited.
 */
export function parseMemorySize(text: string, flag: string): number {
  if (text.trim() === '-1') return -1;
  const m = /^(\d+(?:\.\d+)*) ?([kmgtp])?i?b?$/i.exec(text.trim());
  if (!m) throw new KeelError(`invalid value for ${flag}: ${JSON.stringify(text)} is not a size (examples: 67108864, 64m, 1.5g)`);
  const n = Number.parseFloat(m[1]!);
  if (!Number.isFinite(n)) throw new KeelError(`invalid value for ${flag}: ${JSON.stringify(text)} is not a size`);
  return Math.trunc(n * SIZE_UNITS[(m[2] ?? '').toLowerCase()]!);
}

function uintFlag(text: string, flag: string): number {
  if (!/^\d+$/.test(text.trim())) throw new KeelError(`invalid value for ${flag}: ${JSON.stringify(text)} is not an unsigned integer`);
  return Number(text.trim());
}

function intFlag(text: string, flag: string): number {
  if (!/^-?\d+$/.test(text.trim())) throw new KeelError(`invalid value for ${flag}: ${JSON.stringify(text)} is not an integer`);
  return Number(text.trim());
}

/** The linux.resources that runc's update flags describe (fields not given are left out: unchanged). */
export function resourcesFromFlags(f: UpdateFlags): LinuxResources {
  if (f.l3CacheSchema !== undefined || f.memBwSchema !== undefined) {
    throw new KeelError(`cannot update ${f.l3CacheSchema !== undefined ? '--l3-cache-schema' : '--mem-bw-schema'}: keel does not support Intel RDT`);
  }
  const r: LinuxResources = {};
  const memory: NonNullable<LinuxResources['memory']> = {};
  if (f.memory !== undefined && f.memory !== '') memory.limit = parseMemorySize(f.memory, '--memory');
  if (f.memoryReservation !== undefined && f.memoryReservation !== '') memory.reservation = parseMemorySize(f.memoryReservation, '--memory-reservation');
  if (f.memorySwap !== undefined && f.memorySwap !== '') memory.swap = parseMemorySize(f.memorySwap, '--memory-swap');
  if (f.kernelMemory !== undefined && f.kernelMemory !== '') memory.kernel = parseMemorySize(f.kernelMemory, '--kernel-memory');
  if (f.kernelMemoryTcp !== undefined && f.kernelMemoryTcp !== '') memory.kernelTCP = parseMemorySize(f.kernelMemoryTcp, '--kernel-memory-tcp');
  if (Object.keys(memory).length) r.memory = memory;
  const cpu: NonNullable<LinuxResources['cpu']> = {};
  if (f.cpuShares !== undefined && f.cpuShares !== '') cpu.shares = uintFlag(f.cpuShares, '--cpu-share');
  if (f.cpuPeriod !== undefined && f.cpuPeriod !== '') cpu.period = uintFlag(f.cpuPeriod, '--cpu-period');
  if (f.cpuQuota !== undefined && f.cpuQuota !== '') cpu.quota = intFlag(f.cpuQuota, '--cpu-quota');
  if (f.cpuRtPeriod !== undefined && f.cpuRtPeriod !== '') cpu.realtimePeriod = uintFlag(f.cpuRtPeriod, '--cpu-rt-period');
  if (f.cpuRtRuntime !== undefined && f.cpuRtRuntime !== '') cpu.realtimeRuntime = intFlag(f.cpuRtRuntime, '--cpu-rt-runtime');
  if (f.cpusetCpus !== undefined && f.cpusetCpus !== '') cpu.cpus = f.cpusetCpus;
  if (f.cpusetMems !== undefined && f.cpusetMems !== '') cpu.mems = f.cpusetMems;
  if (Object.keys(cpu).length) r.cpu = cpu;
  if (f.pidsLimit !== undefined && f.pidsLimit !== '') {
    const n = intFlag(f.pidsLimit, '--pids-limit');
    if (n !== 0) r.pids = { limit: n };
  }
  if (f.blkioWeight !== undefined && f.blkioWeight !== '') {
    const n = uintFlag(f.blkioWeight, '--blkio-weight');
    if (n !== 0) {
      if (n < 10 || n > 1000) throw new KeelError(`invalid value for --blkio-weight: ${n} is outside 10-1000`);
      r.blockIO = { weight: n };
    }
  }
  return r;
}

/**
 * The resources of `runc update --resources FILE` (runc's JSON: memory, cpu, blockIO, pids, unified
 * ...; unchanged values omitted or 0). Validated against the runtime-spec schema.
 */
export async function parseResourcesJson(text: string, source: string): Promise<LinuxResources> {
  const { parseJson, checkRuntimeConfig } = await import('../spec/index.js');
  const doc = parseJson(text, source);
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new KeelError(`${source}: expected a JSON object of linux.resources`);
  const v = checkRuntimeConfig({ ociVersion: '1.0.0', linux: { resources: doc } });
  if (!v.ok) {
    const e = v.errors[0];
    const at = (e?.path ?? '').replace(/^\/linux\/resources/, '') || '/';
    throw new KeelError(`${source}: ${at}: ${e?.message ?? 'invalid linux.resources'}`);
  }
  return doc as LinuxResources;
}

/** Drops the fields runc's update treats as "unchanged": 0, "", false and absent (and empty objects). */
function changedOnly(r: LinuxResources): LinuxResources {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r) as [string, unknown][]) {
    if (v === undefined || v === null || v === 0 || v === '' || v === false) continue;
    if (k === 'unified' || k === 'rdma' || Array.isArray(v)) { out[k] = v; continue; }
    if (typeof v === 'object') {
      const inner = changedOnly(v as LinuxResources) as Record<string, unknown>;
      if (Object.keys(inner).length) out[k] = inner;
      continue;
    }
    out[k] = v;
  }
  return out as LinuxResources;
}

/** `a` with every field of `b` laid over it, objects merged key by key (arrays replaced). */
function overlay<T>(a: T, b: T): T {
  if (!a || typeof a !== 'object' || Array.isArray(a) || !b || typeof b !== 'object' || Array.isArray(b)) return b;
  const out: Record<string, unknown> = { ...(a as Record<string, unknown>) };
  for (const [k, v] of Object.entries(b as Record<string, unknown>)) out[k] = k in out ? overlay(out[k], v) : v;
  return out as T;
}

/**
 * `keel update`: applies the changed resources to the container's cgroup and records them in its
 * stored config, so that later commands (and `state`) see the values in force. Fields that are 0,
 * "" or absent are unchanged, as in runc. As runc, kernel memory values are ignored with a warning,
 * device rules are not touched, and a CPU quota or period given alone keeps the other's value.
 */
export async function update(ctx: RuntimeContext, id: string, resources: LinuxResources): Promise<void> {
  checkId(id);
  const st = store(ctx);
  await st.withLock(id, async () => {
    const rec = st.load(id);
    const status = statusOf(ctx, rec);
    if (status === 'stopped') throw new KeelError(`cannot update container ${id}: container not running`);
    const changes = changedOnly(resources);
    // As runc: update never changes device rules (an engine's JSON may carry the container's own).
    delete changes.devices;
    if (changes.memory && (changes.memory.kernel !== undefined || changes.memory.kernelTCP !== undefined)) {
      ctx.warn?.('Kernel memory settings are ignored and will be removed');
      delete changes.memory.kernel;
      delete changes.memory.kernelTCP;
      if (!Object.keys(changes.memory).length) delete changes.memory;
    }
    if (!Object.keys(changes).length) return;
    const config = (rec.config ?? {}) as { linux?: Linux };
    const current: LinuxResources = config.linux?.resources ?? {};
    // What the cgroup needs to get: the changes, plus the partners some files need written together.
    const apply: LinuxResources = JSON.parse(JSON.stringify(changes));
    if (apply.cpu && (apply.cpu.quota !== undefined) !== (apply.cpu.period !== undefined)) {
      if (apply.cpu.quota === undefined && current.cpu?.quota) apply.cpu.quota = current.cpu.quota;
      if (apply.cpu.period === undefined && current.cpu?.period) apply.cpu.period = current.cpu.period;
    }
    if (apply.memory?.swap !== undefined && apply.memory.limit === undefined && current.memory?.limit) {
      apply.memory.limit = current.memory.limit;
    }
    if (Object.keys(apply).length) {
      const cg = needCgroup(rec, 'update');
      // The systemd driver: the unit's properties first (as runc), or systemd would restore the old values.
      if (cg.systemd) await (await import('./cgroups/systemd.js')).setScopeProperties(basename(cg.paths.inner), apply);
      cg.set(apply, 'linux.resources');
    }
    const merged = overlay(current, changes);
    config.linux = { ...(config.linux ?? {}), resources: merged };
    rec.config = config;
    st.save(rec);
  });
}
