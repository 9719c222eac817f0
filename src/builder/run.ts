// RUN steps: a container of keel's runtime, used in-process (one `run()` call, no CLI start), on a
// root filesystem the caller has prepared (an overlay snapshot of the parent); or, with an OCI
// runtime CLI given (`--runtime runc`), `RUNTIME run --bundle ...` as a child process.
//
// The container gets what `docker build` gives a RUN: Docker's default capabilities, the host's
// network (or none), /etc/resolv.conf and /etc/hosts from the host, the user, environment and
// working directory of the step. Mount points the runtime had to create in the root filesystem
// (/proc, /dev, /sys, /etc/resolv.conf ... when the image lacks them) are removed again afterwards
// so they do not end up in the layer, as BuildKit does.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import type { Mount, Spec } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import { resolveInRoot, lstatOrUndefined, components } from './rootpath.js';
import { inUserNamespace } from './mount.js';

/** Docker's default capability set for containers (and so for RUN). */
export const DOCKER_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Every capability (RUN --security=insecure), in kernel order. */
const ALL_CAPS = [
  'CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP',
  'LINUX_IMMUTABLE', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER',
  'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE', 'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE',
  'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE', 'AUDIT_CONTROL', 'SETFCAP',
  'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF',
  'CHECKPOINT_RESTORE',
].map((c) => `CAP_${c}`);

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface RunRequest {
  /** Host path of the prepared root filesystem (the step's overlay mount). */
  rootfs: string;
  /** A directory for the bundle (config.json). */
  bundleDir: string;
  args: string[];
  env: string[];
  cwd: string;
  user: { uid: number; gid: number; additionalGids: number[] };
  network: 'host' | 'none';
  /** Extra mounts (RUN --mount, heredoc scripts), OCI form. */
  mounts: Mount[];
  insecure?: boolean;
  hostname?: string;
}

export interface RunResult {
  code: number;
  /** The last lines the step printed (stdout and stderr interleaved). */
  tail: string[];
}

export interface RunnerOptions {
  /** State directory for the runtime (its --root). */
  runtimeRoot: string;
  /** Path of an OCI runtime CLI (runc, crun, keel ...); keel's runtime in-process when absent. */
  runtimePath?: string;
  /** Every output line, as it comes. */
  onLine?: (line: string) => void;
}

const TAIL = 12;

function hostFile(path: string): string | undefined {
  try {
    return fs.statSync(path).isFile() ? path : undefined;
  } catch {
    return undefined;
  }
}

/** Every capability this process has (what an insecure step may get). */
function ownCapabilities(): string[] {
  let mask = 0n;
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) mask = BigInt(`0x${m[1]}`);
  } catch { /* no /proc: Docker's set */ }
  const out = ALL_CAPS.filter((_, i) => (mask >> BigInt(i)) & 1n);
  return out.length ? out : [...DOCKER_CAPS];
}

/** The runtime configuration of a RUN step. */
export async function runSpec(req: RunRequest): Promise<Spec> {
  const { defaultSpec } = await import('../runtime/index.js');
  const spec = defaultSpec({ rootless: false, uid: 0, gid: 0 });
  const caps = req.insecure ? ownCapabilities() : [...DOCKER_CAPS];
  spec.process = {
    terminal: false,
    user: { uid: req.user.uid, gid: req.user.gid, additionalGids: req.user.additionalGids },
    args: req.args,
    env: req.env,
    cwd: req.cwd,
    capabilities: { bounding: caps, effective: caps, permitted: caps },
    noNewPrivileges: false,
  };
  spec.root = { path: req.rootfs, readonly: false };
  spec.hostname = req.hostname ?? 'keel-build';
  const mounts = [...(spec.mounts ?? [])];
  // The cgroup tree is of no use to a build step (and mounting it costs time).
  const cg = mounts.findIndex((m) => m.destination === '/sys/fs/cgroup');
  if (cg >= 0) mounts.splice(cg, 1);
  const resolv = hostFile('/etc/resolv.conf');
  if (resolv && req.network === 'host') mounts.push({ destination: '/etc/resolv.conf', type: 'bind', source: resolv, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
  const hosts = hostFile('/etc/hosts');
  if (hosts && req.network === 'host') mounts.push({ destination: '/etc/hosts', type: 'bind', source: hosts, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] });
  mounts.push(...req.mounts);
  spec.mounts = mounts;
  const linux = spec.linux!;
  if (req.network === 'host') linux.namespaces = linux.namespaces!.filter((n) => n.type !== 'network');
  if (inUserNamespace()) {
    // A rootless build: /sys is the host's, bound (a sysfs cannot be mounted from a user namespace
    // that does not own the network namespace); the runtime binds device nodes itself there.
    const sys = mounts.findIndex((m) => m.destination === '/sys');
    if (sys >= 0) mounts[sys] = { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] };
  }
  // No cgroup limits for build steps: the builder's own cgroup bounds them.
  delete linux.resources;
  if (req.insecure) {
    delete linux.maskedPaths;
    delete linux.readonlyPaths;
  }
  return spec;
}

export interface MountPointPlan {
  /** Mount points made here because the image lacked them (container paths), deepest last. */
  created: { path: string; dir: boolean; ino: number; mtimeMs: number }[];
  /** File mount points the image had (the runtime's open of them copies them up). */
  existing: string[];
}

/** Destinations inside the runtime's own /dev, /proc and /sys mounts are never in the image. */
function insideRuntimeMount(dest: string): boolean {
  return /^\/(dev|proc|sys)\/./.test(dest);
}

/**
 * Makes the mount points a RUN step needs that the image lacks (empty directories and files), as
 * BuildKit does, and remembers them so `cleanMountPoints` can take them out of the layer again.
 */
export function prepareMountPoints(rootfs: string, dests: { path: string; file: boolean }[]): MountPointPlan {
  const plan: MountPointPlan = { created: [], existing: [] };
  const made: { path: string; abs: string; dir: boolean }[] = [];
  for (const d of dests) {
    if (insideRuntimeMount(d.path)) continue;
    const parts = components(d.path);
    for (let i = 1; i <= parts.length; i++) {
      const p = `/${parts.slice(0, i).join('/')}`;
      let abs: string;
      try { abs = resolveInRoot(rootfs, p); } catch { break; }
      const st = lstatOrUndefined(abs);
      const last = i === parts.length;
      if (st) {
        if (last && d.file && st.isFile()) plan.existing.push(p);
        if (!st.isDirectory()) break;
        continue;
      }
      if (last && d.file) fs.writeFileSync(abs, '', { mode: 0o755, flag: 'wx' });
      else fs.mkdirSync(abs, { mode: 0o755 });
      made.push({ path: p, abs, dir: !(last && d.file) });
    }
  }
  for (const m of made) {
    const st = fs.lstatSync(m.abs);
    plan.created.push({ path: m.path, dir: m.dir, ino: st.ino, mtimeMs: st.mtimeMs });
  }
  return plan;
}

/**
 * Takes the mount points out of an overlay upper dir after the step (its overlay unmounted):
 * those made by `prepareMountPoints` when the step left them as they were (an empty file, an
 * empty directory not modified since), and copies of file mount points the image already had
 * (the step could not change them: they were mounted over), with the parent directories copied
 * up for them when they are empty and as in the image.
 */
export function cleanMountPoints(upper: string, lowers: string[], plan: MountPointPlan): void {
  // Judge every made mount point as the step left it, before removing any (removing a file
  // changes its directory's time).
  const judged = plan.created.map((c) => ({ c, st: lstatOrUndefined(join(upper, c.path)) }));
  for (const { c, st } of judged.reverse()) {
    if (!st || st.ino !== c.ino) continue;
    const p = join(upper, c.path);
    if (c.dir) {
      if (st.isDirectory() && st.mtimeMs === c.mtimeMs && fs.readdirSync(p).length === 0) fs.rmdirSync(p);
    } else if (st.isFile() && st.size === 0) {
      fs.unlinkSync(p);
    }
  }
  const lowerStat = (path: string): fs.Stats | undefined => {
    for (const l of lowers) {
      const st = lstatOrUndefined(join(l, path));
      if (st) return st;
    }
    return undefined;
  };
  for (const e of plan.existing) {
    const p = join(upper, e);
    const st = lstatOrUndefined(p);
    if (!st || !st.isFile()) continue;
    const low = lowerStat(e);
    if (!low || !low.isFile() || low.size !== st.size || low.mode !== st.mode || low.uid !== st.uid || low.gid !== st.gid) continue;
    fs.unlinkSync(p);
    const parts = components(e);
    for (let i = parts.length - 1; i >= 1; i--) {
      const dirPath = `/${parts.slice(0, i).join('/')}`;
      const d = join(upper, dirPath);
      const ds = lstatOrUndefined(d);
      const ls = lowerStat(dirPath);
      if (!ds || !ds.isDirectory() || !ls || !ls.isDirectory() || fs.readdirSync(d).length > 0) break;
      if (ds.mode !== ls.mode || ds.uid !== ls.uid || ds.gid !== ls.gid || Math.floor(ds.mtimeMs / 1000) !== Math.floor(ls.mtimeMs / 1000)) break;
      fs.rmdirSync(d);
    }
  }
}

function makePipe(): Promise<[number, number]> {
  return import('../runtime/sys/libc.js').then(({ libc }) => {
    const c = libc();
    const fds = new Int32Array(2);
    if (c.pipe2(fds, 0o2000000 /* O_CLOEXEC */) !== 0) throw new KeelError(`pipe2: ${c.strerror(c.errno())}`);
    return [fds[0]!, fds[1]!];
  });
}

class LineCollector {
  private partial = '';
  readonly tail: string[] = [];
  constructor(private readonly onLine?: (line: string) => void) {}
  push(chunk: Buffer): void {
    const text = this.partial + chunk.toString('utf8');
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.line(l);
  }
  end(): void {
    if (this.partial) this.line(this.partial);
    this.partial = '';
  }
  private line(l: string): void {
    const clean = l.replace(/\r$/, '');
    this.tail.push(clean);
    if (this.tail.length > TAIL) this.tail.shift();
    this.onLine?.(clean);
  }
}

let counter = 0;

/** Containers running now (so an interrupted build can stop them). */
const running = new Map<string, RunnerOptions>();

/** Kills every RUN container of this process (SIGKILL) and forgets their state; never throws. */
export async function killRunning(): Promise<void> {
  for (const [id, opts] of [...running]) {
    try {
      if (opts.runtimePath) {
        spawnSync(opts.runtimePath, ['--root', `${opts.runtimeRoot}-ext`, 'kill', id, 'KILL'], { stdio: 'ignore', timeout: 5000 });
      } else {
        const runtime = await import('../runtime/index.js');
        await runtime.kill({ root: opts.runtimeRoot }, id, 'KILL', { all: true });
        await runtime.remove({ root: opts.runtimeRoot }, id, { force: true });
      }
    } catch { /* gone already */ }
  }
}

/** Runs one RUN step to completion; returns its exit code and last output lines. */
export async function runStep(req: RunRequest, opts: RunnerOptions): Promise<RunResult> {
  const spec = await runSpec(req);
  // Older runtimes refuse spec versions newer than theirs; nothing here needs more than 1.0.2.
  if (opts.runtimePath) spec.ociVersion = '1.0.2';
  fs.mkdirSync(req.bundleDir, { recursive: true });
  fs.writeFileSync(join(req.bundleDir, 'config.json'), JSON.stringify(spec));
  const id = `keel-build-${process.pid}-${++counter}-${Date.now().toString(36)}`;
  const lines = new LineCollector(opts.onLine);
  running.set(id, opts);
  try {
    return await runContainer(id, req, opts, lines);
  } finally {
    running.delete(id);
  }
}

async function runContainer(id: string, req: RunRequest, opts: RunnerOptions, lines: LineCollector): Promise<RunResult> {
  if (opts.runtimePath) {
    const code = await new Promise<number>((resolve, reject) => {
      const child = spawn(opts.runtimePath!, ['--root', `${opts.runtimeRoot}-ext`, 'run', '--bundle', req.bundleDir, id], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (c: Buffer) => lines.push(c));
      child.stderr.on('data', (c: Buffer) => lines.push(c));
      child.on('error', (err) => reject(new KeelError(`runtime ${opts.runtimePath}: ${err.message}`)));
      child.on('close', (code, signal) => resolve(code ?? 128 + (signal ? (osSignals[signal] ?? 9) : 9)));
    });
    lines.end();
    return { code, tail: lines.tail };
  }

  const runtime = await import('../runtime/index.js');
  const [readFd, writeFd] = await makePipe();
  const devNull = fs.openSync('/dev/null', 'r');
  const { Socket } = await import('node:net');
  const reader = new Socket({ fd: readFd, readable: true, writable: false });
  const done = new Promise<void>((resolve) => {
    reader.on('data', (c: Buffer) => lines.push(c));
    reader.on('end', () => resolve());
    reader.on('close', () => resolve());
    reader.on('error', () => resolve());
  });
  const ctx = { root: opts.runtimeRoot };
  let exit: Promise<{ status: number }> | undefined;
  let closed = false;
  const closeOurs = () => {
    if (closed) return;
    closed = true;
    fs.closeSync(writeFd);
    fs.closeSync(devNull);
  };
  try {
    // Containers are created and started one at a time in this process: a container cloned while
    // another is between its clone and its exec would hold copies of that one's pipes. Their exits
    // are waited for side by side (SIGCHLD, no thread held).
    await oneAtATime(async () => {
      await runtime.create(ctx, id, { bundle: req.bundleDir, stdio: [devNull, writeFd, writeFd] });
      const { pid } = await runtime.state(ctx, id);
      exit = runtime.watchExit(pid!);
      await runtime.start(ctx, id);
      // The container has its own copies now: ours would keep the output open for later clones.
      closeOurs();
    });
  } catch (err) {
    closeOurs();
    if (exit) await runtime.kill(ctx, id, 'KILL', { all: true }).catch(() => {});
    await runtime.remove(ctx, id, { force: true }).catch(() => {});
    // "create keel-build-123-4-xyz: exec: ..." → "the container did not start: exec: ..."
    const msg = (err as Error).message.replace(new RegExp(`^(create|start) ${id}: `), '');
    throw new KeelError(`the container did not start: ${msg}`);
  }
  // A SIGCHLD listener does not keep Node's event loop alive: a timer does, until the exit.
  const alive = setInterval(() => {}, 1 << 30);
  let status: number;
  try {
    ({ status } = await exit!);
  } finally {
    clearInterval(alive);
  }
  await runtime.remove(ctx, id, { force: true });
  await done;
  reader.destroy();
  lines.end();
  return { code: status, tail: lines.tail };
}

let creating: Promise<void> = Promise.resolve();
/** Runs `fn` when no other call of it is running in this process. */
function oneAtATime(fn: () => Promise<void>): Promise<void> {
  const run = creating.then(fn, fn);
  creating = run.catch(() => {});
  return run;
}

const osSignals: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15, SIGSEGV: 11, SIGABRT: 6, SIGPIPE: 13 };
