// Mount options of config.json mounts: flags, propagation, and the filesystem data string.
import { MS } from './linux/constants.js';

export interface ParsedMountOptions {
  flags: number;
  clearFlags: number;
  propagation: number[];
  data: string[];
  bind: boolean;
  recursive: boolean;
}

const FLAGS: Record<string, [set: boolean, flag: number]> = {
  ro: [true, MS.RDONLY], rw: [false, MS.RDONLY], nosuid: [true, MS.NOSUID], suid: [false, MS.NOSUID],
  nodev: [true, MS.NODEV], dev: [false, MS.NODEV], noexec: [true, MS.NOEXEC], exec: [false, MS.NOEXEC],
  sync: [true, MS.SYNCHRONOUS], async: [false, MS.SYNCHRONOUS], dirsync: [true, MS.DIRSYNC],
  remount: [true, MS.REMOUNT], mand: [true, MS.MANDLOCK], nomand: [false, MS.MANDLOCK],
  noatime: [true, MS.NOATIME], atime: [false, MS.NOATIME], nodiratime: [true, MS.NODIRATIME], diratime: [false, MS.NODIRATIME],
  relatime: [true, MS.RELATIME], norelatime: [false, MS.RELATIME], strictatime: [true, MS.STRICTATIME],
  nostrictatime: [false, MS.STRICTATIME], lazytime: [true, MS.LAZYTIME], nolazytime: [false, MS.LAZYTIME],
  silent: [true, MS.SILENT], loud: [false, MS.SILENT], iversion: [true, MS.I_VERSION], noiversion: [false, MS.I_VERSION],
  nosymfollow: [true, MS.NOSYMFOLLOW], symfollow: [false, MS.NOSYMFOLLOW],
};

const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE, rprivate: MS.PRIVATE | MS.REC, shared: MS.SHARED, rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE, rslave: MS.SLAVE | MS.REC, unbindable: MS.UNBINDABLE, runbindable: MS.UNBINDABLE | MS.REC,
};

/** Options keel accepts and ignores, as runc does (they select runc-specific behaviour). */
const IGNORED = new Set(['tmpcopyup', 'idmap', 'ridmap', 'defaults']);

export function parseMountOptions(options: string[] = [], type?: string): ParsedMountOptions {
  const out: ParsedMountOptions = { flags: 0, clearFlags: 0, propagation: [], data: [], bind: type === 'bind', recursive: false };
  for (const opt of options) {
    if (opt === 'bind') { out.bind = true; continue; }
    if (opt === 'rbind') { out.bind = true; out.recursive = true; continue; }
    const f = FLAGS[opt];
    if (f) {
      if (f[0]) { out.flags |= f[1]; out.clearFlags &= ~f[1]; } else { out.flags &= ~f[1]; out.clearFlags |= f[1]; }
      continue;
    }
    const p = PROPAGATION[opt];
    if (p !== undefined) { out.propagation.push(p); continue; }
    if (IGNORED.has(opt)) continue;
    out.data.push(opt);
  }
  return out;
}

export function propagationFlag(name: string): number | undefined {
  return PROPAGATION[name];
}
