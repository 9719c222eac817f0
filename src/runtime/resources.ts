// A container's cgroup (src/runtime/cgroups) as the lifecycle uses it: made and limited before the
// init runs anything, found again from the state record by later commands, removed on delete.
import { join } from 'node:path';
import type { Spec } from '../spec/index.js';
import { createCgroupManager, readProcCgroups, runcDefaultDeviceRules, type CgroupManager } from './cgroups/index.js';
import type { ContainerRecord } from './state.js';

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

/**
 * What the state record keeps of the cgroup a new container will get. Saved before the cgroup is
 * made, so that whatever a runtime killed in the middle of making it left, `delete --force` finds.
 */
export function cgroupRecord(config: Spec, id: string, opts: { systemd: boolean }): CgroupRecord {
  const rec: CgroupRecord = {
    cgroupsPath: config.linux?.cgroupsPath, ownCgroups: readProcCgroups(), systemd: opts.systemd, rootless: process.getuid?.() !== 0,
  };
  const f = manager(id, rec).controller('freezer');
  if (f) rec.freezerFile = join(f.dir, f.version === 1 ? 'freezer.state' : 'cgroup.freeze');
  return rec;
}

/** Creates the cgroup of a new container (`rec`: from cgroupRecord), sets its limits and moves `pid` into it. */
export function placeInCgroup(config: Spec, id: string, pid: number, rec: CgroupRecord): void {
  const m = manager(id, rec);
  m.create();
  try {
    m.set({ ...(config.linux?.resources ?? {}), devices: deviceRules(config) });
    m.apply(pid);
  } catch (err) {
    void m.destroy().catch(() => undefined);
    throw err;
  }
}

/** The cgroup manager of an existing container, or undefined when keel did not give it one. */
export function cgroupOf(rec: ContainerRecord): CgroupManager | undefined {
  const c = (rec as { cgroup?: CgroupRecord }).cgroup;
  return c ? manager(rec.id, c) : undefined;
}
