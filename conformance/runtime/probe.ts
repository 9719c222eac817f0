// Builds the probe (conformance/probe/probe.c) into a static binary, once per source version,
// in a cache directory; and describes the JSON report the probe prints.
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KeelError } from '../../src/util/errors.js';

const execFileP = promisify(execFile);

/** What the probe reports about the process it runs as. */
export interface ProbeReport {
  probe: 1;
  argv: string[];
  env: string[];
  cwd: string | null;
  pid: number;
  ppid: number;
  uid: [number, number, number];
  gid: [number, number, number];
  groups: number[];
  umask: number;
  hostname?: string;
  domainname?: string;
  machine?: string;
  personality: number;
  /** sched_getscheduler(0), getpriority(PRIO_PROCESS, 0) and ioprio_get(IOPRIO_WHO_PROCESS, 0). */
  sched: { policy: number; nice: number; ioprio: number };
  /** readlink of /proc/self/ns/<name>, e.g. `net:[4026531840]`. */
  ns: Record<string, string>;
  /** Raw fields of /proc/self/status: CapInh, CapPrm, CapEff, CapBnd, CapAmb, NoNewPrivs, Seccomp, Umask, NSpid. */
  status: Record<string, string>;
  /** [soft, hard]; -1 is unlimited. */
  rlimits: Record<string, [number, number]>;
  oomScoreAdj: string | null;
  mountinfo: string | null;
  cgroup: string | null;
  uidMap: string | null;
  gidMap: string | null;
  fds: { fd: number; target: string }[];
  tty: Record<string, { isatty: boolean; rdev?: [number, number]; rows?: number; cols?: number }>;
  stdin?: string;
  files: Record<string, Outcome & { data?: string }>;
  stats: Record<string, Outcome & StatInfo>;
  lists: Record<string, Outcome & { entries?: string[] }>;
  writes: Record<string, Outcome>;
  opens: Record<string, Outcome>;
  mkdirs: Record<string, Outcome>;
  mknods: Record<string, Outcome>;
}

export interface Outcome {
  ok: boolean;
  errno?: number;
  error?: string;
}

export interface StatInfo {
  type?: 'f' | 'd' | 'l' | 'c' | 'b' | 'p' | 's';
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  major?: number;
  minor?: number;
  link?: string;
}

/** One line the probe appends to an event log (hooks, and the container process when asked). */
export interface ProbeEvent {
  event: string;
  pid: number;
  time: number;
  ns: Record<string, string>;
  argv: string[];
  env: string[];
  cwd: string | null;
  stdin: string;
  /** When stdin held a state with a pid: that pid, and its /proc cmdline (NUL → space) when the hook ran. */
  statePid?: number;
  statePidCmdline?: string | null;
}

/** Finds conformance/probe/probe.c from this module, whether it runs from source or from the dist bundle. */
export function probeSourcePath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    for (const candidate of [join(dir, 'probe', 'probe.c'), join(dir, 'conformance', 'probe', 'probe.c')]) {
      if (existsSync(candidate)) return candidate;
    }
    dir = dirname(dir);
  }
  throw new KeelError('conformance probe source not found (conformance/probe/probe.c next to the suite)');
}

function cacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'keel-conformance');
}

/**
 * Returns the path of the static probe binary, compiling it with `gcc -static -O2` when the cache
 * holds no build of the current source. Throws a KeelError saying what is missing when gcc or a
 * static libc is not installed.
 */
export async function buildProbe(opts: { cache?: string; cc?: string } = {}): Promise<string> {
  const src = probeSourcePath();
  const cc = opts.cc ?? process.env.CC ?? 'gcc';
  const text = readFileSync(src);
  const hash = createHash('sha256').update(text).update(cc).digest('hex').slice(0, 16);
  const dir = opts.cache ?? cacheDir();
  const out = join(dir, `probe-${process.arch}-${hash}`);
  try {
    if ((await stat(out)).isFile()) return out;
  } catch {
    /* not built yet */
  }
  await mkdir(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await execFileP(cc, ['-static', '-O2', '-s', '-Wall', '-o', tmp, src], { timeout: 120_000 });
  } catch (err) {
    await rm(tmp, { force: true });
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new KeelError(`cannot build the conformance probe: ${cc} not found (install gcc and a static libc, e.g. apt-get install gcc libc6-dev, or pass --probe PATH)`);
    const why = (e.stderr ?? e.message).trim().split('\n').slice(-3).join('; ');
    throw new KeelError(`cannot build the conformance probe with ${cc} -static: ${why}`);
  }
  await rename(tmp, out);
  // Builds of older probe sources are of no more use.
  for (const name of await readdir(dir)) {
    if (name.startsWith(`probe-${process.arch}-`) && !name.endsWith('.tmp') && join(dir, name) !== out) await rm(join(dir, name), { force: true });
  }
  return out;
}
