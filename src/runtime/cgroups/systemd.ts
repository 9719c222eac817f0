// The systemd cgroup driver (--systemd-cgroup), as runc's: the container's cgroup is a transient
// scope unit (<prefix>-<name>.scope in the slice of "slice:prefix:name") that systemd creates over
// D-Bus with the init's pid in it and Delegate=yes; the limits systemd owns are given as unit
// properties (MemoryMax, TasksMax, CPUWeight, ...), and keel then writes every resource to the
// cgroup's files as with its own driver. delete stops the scope. D-Bus is spoken by dbus-next,
// loaded only when this driver is used (a maintained fork of dbus-next without native parts).
import { existsSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { KeelError } from '../../util/errors.js';
import type { LinuxResources } from './manager.js';

type DBus = typeof import('@particle/dbus-next');

const DEST = 'org.freedesktop.systemd1';
const PATH = '/org/freedesktop/systemd1';
const IFACE = 'org.freedesktop.systemd1.Manager';

async function withSystemBus<T>(what: string, fn: (bus: import('@particle/dbus-next').MessageBus, d: DBus) => Promise<T>): Promise<T> {
  const mod = (await import('@particle/dbus-next')) as unknown as DBus & { default?: DBus };
  const dbus: DBus = typeof mod.systemBus === 'function' ? mod : mod.default!;
  let bus: import('@particle/dbus-next').MessageBus | undefined;
  try {
    bus = dbus.systemBus();
    // dbus-next reports connection failures as 'error' events; without a listener they would crash.
    const failed = new Promise<never>((_, reject) => bus!.on('error', (e: Error) => reject(e)));
    return await Promise.race([fn(bus!, dbus), failed]);
  } catch (err) {
    throw new KeelError(`systemd cgroup driver: ${what}: ${(err as Error).message}`);
  } finally {
    bus?.disconnect();
  }
}

async function call(bus: import('@particle/dbus-next').MessageBus, d: DBus, member: string, signature: string, body: unknown[]): Promise<unknown[]> {
  const reply = await bus.call(new d.Message({ destination: DEST, path: PATH, interface: IFACE, member, signature, body }));
  return (reply?.body ?? []) as unknown[];
}

/** systemd's "infinity" for a uint64 property. */
const INFINITY = 0xffff_ffff_ffff_ffffn;

/**
 * The unit properties runc gives a container scope for `resources` (systemd owns these files).
 * -1 (unlimited) is systemd's infinity, so that `update` can lift a limit the unit has.
 */
export function scopeProperties(resources: LinuxResources | undefined): [string, string, unknown][] {
  const props: [string, string, unknown][] = [];
  const r = resources ?? {};
  const m = r.memory;
  if (m?.limit === -1) props.push(['MemoryMax', 't', INFINITY]);
  else if (m?.limit !== undefined && m.limit > 0) props.push(['MemoryMax', 't', BigInt(m.limit)]);
  if (m?.swap === -1) props.push(['MemorySwapMax', 't', INFINITY]);
  else if (m?.limit !== undefined && m.limit > 0 && m.swap !== undefined && m.swap > 0 && m.swap >= m.limit) props.push(['MemorySwapMax', 't', BigInt(m.swap - m.limit)]);
  if (m?.reservation !== undefined && m.reservation > 0) props.push(['MemoryLow', 't', BigInt(m.reservation)]);
  if (r.pids?.limit === -1) props.push(['TasksMax', 't', INFINITY]);
  else if (r.pids?.limit !== undefined && r.pids.limit > 0) props.push(['TasksMax', 't', BigInt(r.pids.limit)]);
  const cpu = r.cpu;
  if (cpu?.shares) props.push(['CPUWeight', 't', BigInt(1 + Math.floor(((cpu.shares - 2) * 9999) / 262142))]);
  if (cpu?.quota === -1) props.push(['CPUQuotaPerSecUSec', 't', INFINITY]);
  else if (cpu?.quota && cpu.quota > 0) {
    const period = cpu.period || 100000;
    // systemd takes CPU time per second of wall time, rounded up to 10 ms as runc does.
    let perSec = Math.floor((cpu.quota * 1_000_000) / period);
    if (perSec % 10000 !== 0) perSec = (Math.floor(perSec / 10000) + 1) * 10000;
    props.push(['CPUQuotaPerSecUSec', 't', BigInt(perSec)]);
    if (cpu.period) props.push(['CPUQuotaPeriodUSec', 't', BigInt(cpu.period)]);
  }
  if (r.blockIO?.weight) props.push(['IOWeight', 't', BigInt(1 + Math.floor(((r.blockIO.weight - 10) * 9999) / 990))]);
  return props;
}

/**
 * `keel update` with the systemd driver: the changed limits become the scope's unit properties
 * too (runtime only, as runc), so that systemd does not put the old values back into the cgroup
 * files the next time it applies the unit (a daemon-reload, another unit's change in the slice).
 */
export async function setScopeProperties(unit: string, resources: LinuxResources): Promise<void> {
  const props = scopeProperties(resources);
  if (!props.length) return;
  await withSystemBus(`cannot update the unit ${unit}`, async (bus, d) => {
    const V = d.Variant;
    await call(bus, d, 'SetUnitProperties', 'sba(sv)', [unit, true, props.map(([k, sig, v]) => [k, new V(sig, v)])]);
  });
}

/**
 * Starts the transient scope `unit` in `slice` holding `pid` (Delegate=yes, as runc), and waits until
 * the process is in the scope's cgroup `dir`.
 */
export async function startScope(opts: { unit: string; slice: string; pid: number; description: string; dir: string; resources?: LinuxResources }): Promise<void> {
  await withSystemBus(`cannot create the transient unit ${opts.unit}`, async (bus, d) => {
    const V = d.Variant;
    const props: [string, InstanceType<typeof V>][] = [
      ['Description', new V('s', opts.description)],
      ['PIDs', new V('au', [opts.pid])],
      ['Delegate', new V('b', true)],
      ['DefaultDependencies', new V('b', false)],
      ['MemoryAccounting', new V('b', true)],
      ['CPUAccounting', new V('b', true)],
      ['IOAccounting', new V('b', true)],
      ['TasksAccounting', new V('b', true)],
      ...scopeProperties(opts.resources).map(([k, sig, v]) => [k, new V(sig, v)] as [string, InstanceType<typeof V>]),
    ];
    if (opts.unit.endsWith('.scope')) props.unshift(['Slice', new V('s', opts.slice)]);
    await call(bus, d, 'StartTransientUnit', 'ssa(sv)a(sa(sv))', [opts.unit, 'replace', props, []]);
  });
  const procs = posix.join(opts.dir, 'cgroup.procs');
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      if (readFileSync(procs, 'utf8').split('\n').includes(String(opts.pid))) return;
    } catch { /* not there yet */ }
    if (Date.now() > deadline) throw new KeelError(`systemd cgroup driver: the transient unit ${opts.unit} did not get process ${opts.pid} into ${opts.dir} within 10 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Stops the container's unit; a unit systemd no longer knows (it stops itself when empty) is fine. */
export async function stopScope(unit: string): Promise<void> {
  if (!existsSync('/run/systemd/system')) return;
  await withSystemBus(`cannot stop the unit ${unit}`, async (bus, d) => {
    try {
      await call(bus, d, 'StopUnit', 'ss', [unit, 'replace']);
    } catch (err) {
      if (/NoSuchUnit|not loaded/.test(`${(err as { type?: string }).type ?? ''} ${(err as Error).message}`)) return;
      throw err;
    }
  });
}

/** Unit and slice names of a scope cgroup path "/a.slice/a-b.slice/keel-x.scope". */
export function unitOfPath(inner: string): { unit: string; slice: string } {
  const unit = posix.basename(inner);
  const parent = posix.basename(posix.dirname(inner));
  return { unit, slice: parent === '/' || parent === '' ? '-.slice' : parent };
}
