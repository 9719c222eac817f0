// What a container can leave behind on the host once `RUNTIME delete --force ID` has run, and how
// the crash sweep finds and removes it: processes (descendants of the sweep, which is a subreaper,
// so the orphans of a killed runtime come to it; and members of the container's cgroups), cgroup
// directories in every hierarchy, mounts under the bundle, state entries (the runtime's `list` and
// its root directory), and files beside the pid file.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { libc } from '../../src/runtime/sys/libc.js';
import { hostInfo, parseMountinfo, type CgroupMount } from '../runtime/host.js';

export const LEFTOVER_KINDS = ['process', 'cgroup', 'mount', 'state', 'file'] as const;
export type LeftoverKind = (typeof LEFTOVER_KINDS)[number];

export interface Leftover {
  kind: LeftoverKind;
  /** What is left: a pid and its command line, a directory, a mount point, a state entry. */
  what: string;
  /** For processes and cgroups: how to remove it. */
  pid?: number;
  path?: string;
  /** A mount in another mount namespace: the pid of a process in it. */
  nsPid?: number;
}

interface ProcInfo {
  pid: number;
  ppid: number;
  state: string;
}

function procs(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(name), state: f[0]!, ppid: Number(f[1]) });
    } catch {
      /* exited */
    }
  }
  return out;
}

/** Field 3 of /proc/PID/stat ('R', 'S', 'Z', ...), or undefined when there is no such process. */
export function procState(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
}

/** Whether any thread of `pid` has a child (CONFIG_PROC_CHILDREN); Go runtimes fork from any thread. */
export function hasChild(pid: number): boolean {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  for (const t of tasks) {
    try {
      if (readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim()) return true;
    } catch {
      /* thread gone */
    }
  }
  return false;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 120);
  } catch {
    return '?';
  }
}

export function sleepMs(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Makes this process a child subreaper: orphans of the runtimes it starts (a killed runtime's
 * container process, a hook's child) become its children, where they can be counted and reaped.
 */
export function becomeSubreaper(): void {
  const PR_SET_CHILD_SUBREAPER = 36;
  const r = Number(libc().syscall(157 /* prctl */, 'long', PR_SET_CHILD_SUBREAPER, 'long', 1, 'long', 0, 'long', 0, 'long', 0));
  if (r !== 0) throw new Error('prctl(PR_SET_CHILD_SUBREAPER) failed');
}

/** Reaps one exited child that Node did not start (an orphan that came to this subreaper). */
function reap(pid: number): void {
  libc().waitpid(pid, new Int32Array(1), 1 /* WNOHANG */);
}

/** Pids of this process's children (of any of its threads). */
function childrenOfSelf(): number[] {
  const out: number[] = [];
  for (const t of readdirSync('/proc/self/task')) {
    try {
      for (const p of readFileSync(`/proc/self/task/${t}/children`, 'utf8').split(' ')) if (p.trim()) out.push(Number(p));
    } catch {
      /* thread gone */
    }
  }
  return out;
}

/**
 * Reaps orphans as soon as they exit, as init would: a runtime's `delete` waits for the
 * container's init to be gone, and a zombie child of this subreaper would still look alive to it.
 * Children Node started itself (`spawned`) are left to Node.
 */
export class OrphanReaper {
  reaped = 0;
  private readonly onChild = () => this.scan();
  constructor(private readonly spawned: Set<number>) {}
  start(): void {
    process.on('SIGCHLD', this.onChild);
  }
  stop(): void {
    process.off('SIGCHLD', this.onChild);
  }
  scan(): void {
    for (const pid of childrenOfSelf()) {
      if (this.spawned.has(pid)) continue;
      const s = procState(pid);
      if (s === 'Z' || s === 'X') {
        reap(pid);
        this.reaped++;
      }
    }
  }
}

/**
 * The processes below this one, except `exclude` (and what is below them). Zombies among the
 * direct children are orphans of a killed runtime (or its container): they are reaped and counted.
 */
export function descendants(exclude: Set<number>, spawned: Set<number> = new Set()): { alive: ProcInfo[]; reaped: number } {
  const all = procs();
  const byParent = new Map<number, ProcInfo[]>();
  for (const p of all) {
    const list = byParent.get(p.ppid);
    if (list) list.push(p);
    else byParent.set(p.ppid, [p]);
  }
  const alive: ProcInfo[] = [];
  let reaped = 0;
  const walk = (pid: number) => {
    for (const c of byParent.get(pid) ?? []) {
      if (exclude.has(c.pid)) continue;
      if (c.state === 'Z' || c.state === 'X') {
        if (c.ppid === process.pid && !spawned.has(c.pid)) {
          reap(c.pid);
          reaped++;
        }
        continue;
      }
      alive.push(c);
      walk(c.pid);
    }
  };
  walk(process.pid);
  return { alive, reaped };
}

/**
 * Every cgroup hierarchy (v1 controllers, named ones and the unified one), each once: a hierarchy
 * mounted a second time elsewhere (a checkpoint tool's scratch mounts) is the same directories.
 */
export function cgroupHierarchies(): CgroupMount[] {
  const seen = new Set<string>();
  return hostInfo().cgroupMounts.filter((m) => !seen.has(m.dev) && !!seen.add(m.dev));
}

/** The directory of cgroup path `path` (absolute, e.g. /kc/ID) in a hierarchy. */
export function cgroupDir(m: CgroupMount, path: string): string {
  let rel = path;
  if (m.root !== '/' && (path === m.root || path.startsWith(`${m.root}/`))) rel = path.slice(m.root.length) || '/';
  return posix.join(m.mountpoint, rel);
}

function hierarchyName(m: CgroupMount): string {
  return m.version === 'v2' ? 'unified' : m.controllers.join(',');
}

export interface Target {
  id: string;
  /** The container's cgroup path (absolute, from config.json's linux.cgroupsPath). */
  cgroupPath: string;
  bundle: string;
  /** The runtime's --root. */
  root: string;
  /** Entries of the root directory that were there before the sweep (not the container's). */
  rootBaseline: Set<string>;
  /** Directory holding the pid files the runtime was asked to write, and their names. */
  pidDir: string;
  pidFiles: string[];
  /** Ids the runtime's `list -q` printed. */
  listed: string[];
}

export interface Scope {
  cgroupMounts: CgroupMount[];
  /** Processes to ignore (there before the sweep: a test runner's helpers; the crun holder). */
  exclude: Set<number>;
  /** Pids whose mount namespace also counts (the private namespace crun runs in). */
  mountNamespaces: number[];
  /** Children Node started (runtime commands): Node reaps them. */
  spawned: Set<number>;
}

/**
 * What the container left. Processes get a grace period to finish dying (a SIGKILL is not
 * instant); `graceMs` bounds it. Returns the leftovers and how many orphans were reaped.
 */
export function findLeftovers(t: Target, scope: Scope, graceMs: number): { leftovers: Leftover[]; orphans: number } {
  const out: Leftover[] = [];
  let orphans = 0;
  const deadline = Date.now() + graceMs;
  let alive: ProcInfo[];
  for (;;) {
    const d = descendants(scope.exclude, scope.spawned);
    orphans += d.reaped;
    alive = d.alive;
    if (alive.length === 0 || Date.now() > deadline) break;
    sleepMs(5);
  }
  const seen = new Set<number>();
  for (const p of alive) {
    seen.add(p.pid);
    out.push({ kind: 'process', what: `pid ${p.pid} (${cmdline(p.pid)})`, pid: p.pid });
  }
  for (const m of scope.cgroupMounts) {
    const dir = cgroupDir(m, t.cgroupPath);
    if (!existsSync(dir)) continue;
    out.push({ kind: 'cgroup', what: `${hierarchyName(m)}: ${dir}`, path: dir });
    for (const pid of cgroupProcs(dir)) {
      if (seen.has(pid)) continue;
      seen.add(pid);
      out.push({ kind: 'process', what: `pid ${pid} (${cmdline(pid)}) in cgroup ${dir}`, pid });
    }
  }
  const inBundle = (p: string) => p === t.bundle || p.startsWith(`${t.bundle}/`) || p === join(t.root, t.id) || p.startsWith(`${join(t.root, t.id)}/`);
  for (const nsPid of [0, ...scope.mountNamespaces]) {
    let text = '';
    try {
      text = readFileSync(`/proc/${nsPid || 'self'}/mountinfo`, 'utf8');
    } catch {
      continue;
    }
    for (const m of parseMountinfo(text)) {
      if (inBundle(m.mountpoint)) out.push({ kind: 'mount', what: `${m.mountpoint} (${m.fstype})${nsPid ? ' in the runtime\'s mount namespace' : ''}`, path: m.mountpoint, ...(nsPid ? { nsPid } : {}) });
    }
  }
  if (t.listed.includes(t.id)) out.push({ kind: 'state', what: `\`list\` shows ${t.id}` });
  let entries: string[] = [];
  try {
    entries = readdirSync(t.root);
  } catch {
    /* no root directory: nothing there */
  }
  for (const e of entries) {
    if (t.rootBaseline.has(e)) continue;
    out.push({ kind: 'state', what: join(t.root, e), path: join(t.root, e) });
  }
  let files: string[] = [];
  try {
    files = readdirSync(t.pidDir);
  } catch {
    /* none */
  }
  for (const f of files) if (!t.pidFiles.includes(f)) out.push({ kind: 'file', what: join(t.pidDir, f), path: join(t.pidDir, f) });
  return { leftovers: out, orphans };
}

function cgroupProcs(dir: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    try {
      for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) out.push(Number(l));
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      /* gone meanwhile */
    }
  };
  walk(dir);
  return out;
}

/** Removes the cgroup directory `dir` and its sub-cgroups, killing what runs in them. */
export function removeCgroup(dir: string): void {
  for (let attempt = 0; attempt < 50 && existsSync(dir); attempt++) {
    for (const pid of cgroupProcs(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    const rm = (d: string) => {
      try {
        for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rm(join(d, e.name));
        rmdirSync(d);
      } catch {
        /* busy or gone: next attempt */
      }
    };
    rm(dir);
    if (existsSync(dir)) sleepMs(20);
  }
}

/** Removes what findLeftovers found, so the next kill starts from a clean host. */
export function removeLeftovers(leftovers: Leftover[], scope: Scope): void {
  for (const l of leftovers) {
    if (l.kind === 'process' && l.pid) {
      try {
        process.kill(l.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
  for (const l of leftovers) {
    if (l.kind === 'mount' && l.path) {
      const args = l.nsPid ? ['-t', String(l.nsPid), '-m', '--', 'umount', '-l', l.path] : ['-l', l.path];
      spawnSync(l.nsPid ? 'nsenter' : 'umount', args, { stdio: 'ignore' });
    }
  }
  for (const l of leftovers) if (l.kind === 'cgroup' && l.path) removeCgroup(l.path);
  for (const l of leftovers) if ((l.kind === 'state' || l.kind === 'file') && l.path) rmSync(l.path, { recursive: true, force: true });
  // Reap the killed processes that came to us.
  const until = Date.now() + 2000;
  while (Date.now() < until && descendants(scope.exclude, scope.spawned).alive.length > 0) sleepMs(5);
}
