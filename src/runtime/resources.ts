// A container's cgroup (src/runtime/cgroups) as the lifecycle uses it: made and limited before the
// init runs anything, found again from the state record by later commands, removed on delete.
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeelError } from '../util/errors.js';
import type { Spec } from '../spec/index.js';
import { createCgroupManager, readProcCgroups, runcDefaultDeviceRules, type CgroupManager } from './cgroups/index.js';

/** What the state record keeps to find the cgroup again: the config's path and the runtime's own cgroups then. */
export interface CgroupRecord {
  cgroupsPath?: string;
  ownCgroups: Record<string, string>;
  systemd: boolean;
  rootless: boolean;
  /** The freezer's state file (v1 freezer.state or v2 cgroup.freeze), so `state` can tell paused without a manager. */
  freezerFile?: string;
}

function manager(id: string, r: CgroupRecord): CgroupManager {
  return createCgroupManager({ cgroupsPath: r.cgroupsPath, containerId: id, systemd: r.systemd, rootless: r.rootless, ownCgroups: r.ownCgroups });
}

/** The device rules runc applies: the config's rules, an allow rule per linux.devices entry, then runc's defaults. */
function deviceRules(config: Spec) {
  const linux = config.linux ?? {};
  return [
    ...(linux.resources?.devices ?? []),
    // Only character and block devices are subject to the device controller (a fifo is not).
    ...(linux.devices ?? []).filter((d) => d.type !== 'p').map((d) => ({ allow: true, type: (d.type === 'b' ? 'b' : 'c') as 'c' | 'b', major: d.major, minor: d.minor, access: 'rwm' })),
    ...runcDefaultDeviceRules(),
  ];
}

/** Root of a user namespace (a rootless builder) is rootless too for cgroups, as runc judges it. */
function inUserNamespace(): boolean {
  try { return !/^\s*0\s+0\s+4294967295\s*$/.test(readFileSync('/proc/self/uid_map', 'utf8')); } catch { return false; }
}

/**
 * What the state record keeps of the cgroup a new container will get. Saved before the cgroup is
 * made, so that whatever a runtime killed in the middle of making it left, `delete --force` finds.
 */
export function cgroupRecord(config: Spec, id: string, opts: { systemd: boolean }): CgroupRecord {
  const rec: CgroupRecord = {
    cgroupsPath: config.linux?.cgroupsPath, ownCgroups: readProcCgroups(), systemd: opts.systemd, rootless: process.getuid?.() !== 0 || inUserNamespace(),
  };
  const f = manager(id, rec).controller('freezer');
  if (f) rec.freezerFile = join(f.dir, f.version === 1 ? 'freezer.state' : 'cgroup.freeze');
  return rec;
}

/** Creates the container's cgroup and sets its limits; with `pid`, moves that process into it. */
function makeCgroup(config: Spec, id: string, rec: CgroupRecord, pid?: number): CgroupManager {
  const m = manager(id, rec);
  m.create();
  try {
    m.set({ ...(config.linux?.resources ?? {}), devices: deviceRules(config) });
    if (pid !== undefined) m.apply(pid);
    // cgroup v2's freezer is no controller: its file is known once the cgroup exists.
    rec.freezerFile ??= m.freezerFile();
  } catch (err) {
    void m.destroy().catch(() => undefined);
    throw err;
  }
  return m;
}

/**
 * Creates the cgroup of a new container (`rec`: from cgroupRecord), sets its limits and moves `pid`
 * into it. With the systemd driver, systemd makes the cgroup (a transient scope holding `pid`) and
 * keel then sets the limits.
 */
export async function placeInCgroup(config: Spec, id: string, pid: number, rec: CgroupRecord): Promise<void> {
  if (rec.systemd) {
    const m = manager(id, rec);
    const { startScope, unitOfPath } = await import('./cgroups/systemd.js');
    const dir = m.paths.unified ?? Object.values(m.paths.v1)[0]!;
    await startScope({ ...unitOfPath(m.paths.inner), pid, description: `keel container ${id}`, dir, resources: config.linux?.resources });
  }
  makeCgroup(config, id, rec, pid);
}

/** A container cgroup made, with its limits, before the init exists: the init is cloned into it. */
export interface BornCgroup {
  /** Runs the clone with the cgroup's directory fd (for clone3's CLONE_INTO_CGROUP), then closes it. */
  clone<T>(fn: (cgroupFd: number) => T): T;
}

/**
 * On a pure cgroup v2 host with keel's own (cgroupfs) driver, as root: makes the container's cgroup
 * (`rec`: from cgroupRecord) before its init is cloned, so that clone3 places the init there at
 * birth (CLONE_INTO_CGROUP), with no migration afterwards. Undefined where the init is moved in
 * after the clone instead (cgroup v1 or hybrid, the systemd driver, rootless, or
 * KEEL_CLONE_INTO_CGROUP=0).
 */
export function prepareBornCgroup(config: Spec, id: string, rec: CgroupRecord): BornCgroup | undefined {
  if (rec.systemd || rec.rootless || process.env.KEEL_CLONE_INTO_CGROUP === '0') return undefined;
  const probe = manager(id, rec);
  if (probe.layout.mode !== 'v2' || !probe.paths.unified) return undefined;
  const m = makeCgroup(config, id, rec);
  const dir = m.paths.unified!;
  return {
    clone<T>(fn: (cgroupFd: number) => T): T {
      let fd: number;
      try {
        fd = openSync(dir, 'r');
      } catch (err) {
        throw new KeelError(`cannot open cgroup ${dir}: ${(err as Error).message}`);
      }
      try {
        return fn(fd);
      } catch (err) {
        // e.g. EAGAIN when the cgroup's pids.max leaves no room for the init itself.
        throw new KeelError(`cannot start the container's init in cgroup ${dir}: ${(err as Error).message}`);
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** The cgroup manager of an existing container, or undefined when keel did not give it one. */
export function cgroupOf(rec: { id: string; cgroup?: CgroupRecord }): CgroupManager | undefined {
  const c = rec.cgroup;
  return c ? manager(rec.id, c) : undefined;
}
