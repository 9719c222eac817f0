// Joining a running container's namespaces from a trampoline child: used by `exec` and by the
// hooks that run in the container's namespaces (createContainer, startContainer).
import { closeSync, openSync, readlinkSync } from 'node:fs';
import { KeelError } from '../util/errors.js';
import type { Program } from './native/program.js';
import { NAMESPACES, O, AT_FDCWD, syscalls } from './linux/constants.js';
import { cloneProgram, type CloneResult } from './native/clone.js';
import { libc, describeErrno } from './sys/libc.js';

/**
 * Adds the steps that join the namespaces of `pid` (of the given OCI types) that differ from ours,
 * user namespace first and mount namespace last. Returns the types the parent must join itself
 * (pid: it only applies to children) — pass them to `cloneJoined`. A time namespace is joined by
 * the child: setns(CLONE_NEWTIME) needs a process whose memory no other thread shares (EUSERS).
 */
export function compileJoin(p: Program, pid: number, types: string[], label: string): string[] {
  const S = syscalls();
  const joins: { type: string; fd: bigint }[] = [];
  const parentJoins: string[] = [];
  for (const type of types) {
    const info = NAMESPACES[type];
    if (!info) continue;
    const path = `/proc/${pid}/ns/${info.file}`;
    let same = false;
    try { same = readlinkSync(path) === readlinkSync(`/proc/self/ns/${info.file}`); } catch { /* cannot compare: join */ }
    if (same) continue;
    if (type === 'pid') { parentJoins.push(type); continue; }
    const fd = p.cell();
    p.sys(S.openat, [AT_FDCWD, p.cstr(path), O.RDONLY | O.CLOEXEC, 0], { what: `open the ${type} namespace of ${label}`, store: fd });
    joins.push({ type, fd });
  }
  const rank = (t: string) => (t === 'user' ? 0 : t === 'mount' ? 2 : 1);
  joins.sort((a, b) => rank(a.type) - rank(b.type));
  for (const j of joins) p.sys(S.setns, [{ load: j.fd }, NAMESPACES[j.type]!.flag], { what: `join the ${j.type} namespace of ${label}` });
  for (const j of joins) p.sys(S.close, [{ load: j.fd }], { what: 'close' });
  return parentJoins;
}

/** clone3 with the parent thread inside `pid`'s pid/time namespaces for the duration (they apply to children only). */
export function cloneJoined(p: Program, pid: number, parentJoins: string[], errFd: number, label: string): CloneResult {
  const c = libc();
  const restore: { target: number; own: number; flag: number }[] = [];
  try {
    for (const type of parentJoins) {
      const info = NAMESPACES[type]!;
      const file = type === 'time' ? 'time_for_children' : 'pid_for_children';
      const own = openSync(`/proc/self/ns/${file}`, 'r');
      const target = openSync(`/proc/${pid}/ns/${info.file}`, 'r');
      restore.push({ target, own, flag: info.flag });
      if (c.setns(target, info.flag) !== 0) throw new KeelError(`cannot join the ${type} namespace of ${label}: ${describeErrno(c.errno())}`);
    }
    return cloneProgram(p, 0, errFd);
  } finally {
    for (const r of restore) {
      c.setns(r.own, r.flag);
      closeSync(r.target); closeSync(r.own);
    }
  }
}
