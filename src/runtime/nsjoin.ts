// Joining a running container's namespaces from a trampoline child: used by `exec` and by the
// hooks that run in the container's namespaces (createContainer, startContainer), and by an init
// that joins an existing pid namespace.
//
// The child is born in the host's pid namespace, where no container process can see it. It joins
// the user namespace, sheds the runtime's executable (native/cloak.ts), joins the others (mount
// last) and only then, when it must enter the container's pid namespace, forks into it: the
// process that appears in the container (CLONE_PARENT: still the runtime's child) is already in
// every namespace and no longer has anything of the host's node. The first child reports the new
// pid with MARK_FORKED on the error pipe and exits.
import { readlinkSync } from 'node:fs';
import type { Program } from './native/program.js';
import { compileCloak, compileParentBond } from './native/cloak.js';
import { NAMESPACES, O, AT_FDCWD, CLONE, SIGCHLD, syscalls } from './linux/constants.js';
import { libc } from './sys/libc.js';

/** The step record a first child writes when it forked the process that carries on: {MARK_FORKED, pid}. */
export const MARK_FORKED = 0xfffffffffffffffcn;

let forks = 0;

/**
 * Adds the steps that fork, in the pid namespace joined for children, the process that carries on
 * with the program (see above); the forking child reports its pid on `errFd` and exits.
 */
export function compileFork(p: Program, errFd: number): number {
  const S = syscalls();
  const n = forks++;
  const at = p.length;
  const rec = p.alloc(16);
  p.setU64(rec, MARK_FORKED);
  p.sys(S.clone, [CLONE.PARENT | SIGCHLD, 0, 0, 0, 0], { what: 'fork into the pid namespace', store: rec + 8n, onOk: `forked-${n}`, notOnZero: true });
  compileParentBond(p, errFd);
  p.jump(`carry-on-${n}`);
  p.label(`forked-${n}`);
  p.sys(S.write, [errFd, rec, 16], { what: 'report the forked process' });
  p.sys(S.exit_group, [0], { what: 'exit' });
  p.label(`carry-on-${n}`);
  return at;
}

/**
 * Adds the steps that join the namespaces of `pid` (of the given OCI types) that differ from ours:
 * the user namespace first, then the runtime's executable is shed (compileCloak), then the others
 * with the mount namespace last, and the pid namespace by a fork (compileFork). A time namespace
 * is joined by the child itself (setns(CLONE_NEWTIME) needs a single-threaded process). Returns
 * whether the program forks: the runtime then reads MARK_FORKED and the new pid before the rest.
 */
export function compileJoin(p: Program, pid: number, types: string[], label: string, errFd: number): { forkStep?: number } {
  const S = syscalls();
  const joins: { type: string; fd: bigint }[] = [];
  for (const type of types) {
    const info = NAMESPACES[type];
    if (!info) continue;
    const path = `/proc/${pid}/ns/${info.file}`;
    let same = false;
    try { same = readlinkSync(path) === readlinkSync(`/proc/self/ns/${info.file}`); } catch { /* cannot compare: join */ }
    if (same) continue;
    const fd = p.cell();
    p.sys(S.openat, [AT_FDCWD, p.cstr(path), O.RDONLY | O.CLOEXEC, 0], { what: `open the ${type} namespace of ${label}`, store: fd });
    joins.push({ type, fd });
  }
  const rank = (t: string) => (t === 'user' ? 0 : t === 'mount' ? 2 : t === 'pid' ? 3 : 1);
  joins.sort((a, b) => rank(a.type) - rank(b.type));
  const join = (j: { type: string; fd: bigint }) => {
    p.sys(S.setns, [{ load: j.fd }, NAMESPACES[j.type]!.flag], { what: `join the ${j.type} namespace of ${label}` });
    p.sys(S.close, [{ load: j.fd }], { what: 'close' });
  };
  const user = joins.filter((j) => j.type === 'user');
  user.forEach(join);
  compileCloak(p);
  joins.filter((j) => j.type !== 'user').forEach(join);
  return { forkStep: joins.some((j) => j.type === 'pid') ? compileFork(p, errFd) : undefined };
}

export interface Step { step: bigint; value: number }

/** One step record from the error pipe: {step, value} (value: an errno, or a pid for MARK_FORKED), or undefined at EOF. */
export function readStep(fd: number): Step | undefined {
  const c = libc();
  const buf = new Uint8Array(16);
  const n = c.read(fd, buf, 16);
  if (n !== 16) return undefined;
  const dv = new DataView(buf.buffer);
  return { step: dv.getBigUint64(0, true), value: Number(dv.getBigUint64(8, true)) };
}

/**
 * Reads a child's step records in the order they mean. When the program forks at step `forkStep`,
 * the process that carries on may write (its failure, a sync marker) before the forking one has
 * reported it: such records wait until MARK_FORKED has been returned. A record of a step before
 * the fork is the first child's failure.
 */
export class StepReader {
  private stash: Step[] = [];
  private forked: boolean;
  constructor(readonly fd: number, private readonly forkStep?: number) { this.forked = forkStep === undefined; }

  next(): Step | undefined {
    if (this.forked) return this.stash.shift() ?? readStep(this.fd);
    for (;;) {
      const r = readStep(this.fd);
      if (!r) return this.stash.shift();
      if (r.step === MARK_FORKED) { this.forked = true; return r; }
      if (r.step < BigInt(this.forkStep!)) return r;
      this.stash.push(r);
    }
  }
}

/**
 * After cloning a program that forks (compileJoin's `forkStep`): reads the record that gives the
 * new pid and reaps the first child. Returns the pid that carries on, or the first child's failure.
 */
export function followFork(reader: StepReader, firstPid: number): { pid: number } | { failed: Step | undefined } {
  const c = libc();
  const rec = reader.next();
  c.waitpid(firstPid, new Int32Array(1), 0);
  if (rec?.step === MARK_FORKED) return { pid: rec.value };
  return { failed: rec };
}
