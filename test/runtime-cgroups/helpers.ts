// Test helpers: unique cgroup parents that are always cleaned up, and processes that wait for a
// go-ahead on stdin so they can be moved into a cgroup before they act.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { detectCgroupLayout, readProcCgroups, type CgroupLayout } from '../../src/runtime/cgroups/index.js';
import { killAtExit } from '../fixtures/cleanup.js';

export const isRoot = process.getuid?.() === 0;

export function layout(): CgroupLayout {
  return detectCgroupLayout();
}

/** Every hierarchy root on this host (v1 mountpoints and the unified mount). */
export function hierarchyRoots(l = layout()): string[] {
  const roots = new Set(Object.values(l.v1).map((h) => h.mountpoint));
  if (l.unified) roots.add(l.unified.mountpoint);
  return [...roots];
}

let counter = 0;
/** A cgroup path no other test uses: /keel-test-<pid>-<n>-<tag>. */
export function uniqueParent(tag: string): string {
  return `/keel-test-${process.pid}-${counter++}-${tag}`;
}

function killAndRemove(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) killAndRemove(join(dir, e.name));
  try {
    if (existsSync(join(dir, 'freezer.state'))) spawnSync('sh', ['-c', `echo THAWED > ${dir}/freezer.state`]);
    if (existsSync(join(dir, 'cgroup.freeze'))) spawnSync('sh', ['-c', `echo 0 > ${dir}/cgroup.freeze`]);
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  } catch {
    /* not a cgroup dir */
  }
  for (let i = 0; i < 100; i++) {
    try {
      rmdirSync(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      spawnSync('sleep', ['0.02']);
    }
  }
}

/** Where `parent` can be: from each hierarchy root, and relative to this process's own cgroups. */
function candidates(parent: string): string[] {
  const l = layout();
  const own = readProcCgroups();
  const out = new Set(hierarchyRoots(l).map((r) => join(r, parent)));
  for (const [c, h] of Object.entries(l.v1)) out.add(join(h.mountpoint, own[c] ?? '/', parent));
  if (l.unified) out.add(join(l.unified.mountpoint, own[''] ?? '/', parent));
  return [...out];
}

/** Removes a test's cgroup parent (and everything in it) from every hierarchy. */
export function cleanupParent(parent: string): void {
  for (const dir of candidates(parent)) killAndRemove(dir);
}

/** True when no hierarchy has `parent` any more. */
export function parentGone(parent: string): boolean {
  return candidates(parent).every((d) => !existsSync(d));
}

export interface Waiting {
  child: ChildProcess;
  pid: number;
  /** Lets the script continue past its `read`. */
  go(): void;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Runs `sh -c 'read _; SCRIPT'`: the script starts only after go(). */
export function spawnWaiting(script: string): Waiting {
  const child = killAtExit(spawn('sh', ['-c', `read _; ${script}`], { stdio: ['pipe', 'pipe', 'pipe'] }));
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return {
    child,
    pid: child.pid!,
    go: () => child.stdin!.end('\n'),
    done,
  };
}

export const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
