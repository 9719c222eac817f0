// keel's cgroup support: one entry for the runtime core.
//
//   const cg = createCgroupManager({ cgroupsPath: spec.linux?.cgroupsPath, containerId: id, systemd, rootless });
//   cg.create(); cg.set(spec.linux?.resources); cg.apply(initPid);
//   ... cg.freeze() / cg.thaw() / cg.pids() / cg.stats() / cg.killAll('SIGTERM') / cg.watchOom(cb)
//   await cg.destroy({ kill: true });
export {
  CgroupManager,
  createCgroupManager,
  attachDeviceFilter,
  type CgroupManagerOptions,
  type FreezerState,
  type LinuxResources,
  type OomWatch,
} from './manager.js';
export { detectCgroupLayout, parseCgroupMounts, readProcCgroups, type CgroupLayout, type CgroupMode, type V1Hierarchy } from './layout.js';
export { cleanCgroupPath, expandSlice, requireSystemd, resolveCgroupPaths, systemdCgroupPath, type CgroupPathOptions, type CgroupPaths } from './paths.js';
export {
  DeviceEmulator,
  deviceFilterInstructions,
  emulatorFromList,
  encodeEbpf,
  parseDeviceRules,
  runcDefaultDeviceRules,
  v1DeviceWrites,
  type DeviceRule,
  type EbpfInsn,
  type OciDeviceRule,
} from './devices.js';
export { exactJson, formatEvent, hugePageSizes, MAX_UINT64, type RuncStats } from './stats.js';
