// The container lifecycle of runtime.md: create, start, state, kill, delete, and run = create +
// start + wait. Containers are made by the native clone trampoline running a syscall program
// compiled from config.json (init-program.ts); no JavaScript runs in the container's processes.
import { existsSync, readFileSync, statSync, unlinkSync, writeFileSync, renameSync, openSync, closeSync, writeSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { join, resolve, dirname, basename } from 'node:path';
import type { Spec, State } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import { StateStore, checkId, startTimeOf, type ContainerRecord } from './state.js';
import { runHooks, killGroup, type HookTracker } from './hooks.js';
import { SIGNALS, NAMESPACES } from './linux/constants.js';
import { CLOAK_NAME } from './native/cloak.js';

export type Status = State['status'] | 'paused';

export interface RuntimeContext {
  root: string;
  systemdCgroup?: boolean;
  /** Where warnings go (hook failures after start, cleanup problems). */
  warn?: (msg: string) => void;
}

export interface CreateOptions {
  bundle: string;
  pidFile?: string;
  consoleSocket?: string;
  noPivot?: boolean;
  noNewKeyring?: boolean;
  preserveFds?: number;
  /** Library use: fds to give the container as stdin, stdout, stderr instead of the runtime's own. */
  stdio?: [number, number, number];
}

export interface ContainerState extends State {
  status: State['status'];
  rootfs: string;
  created: string;
  owner: string;
}

const OCI_VERSION = '1.3.0';
const MARK_READY = 0xfffffffffffffffen;
const MARK_PIVOT = 0xfffffffffffffffdn;

function store(ctx: RuntimeContext): StateStore { return new StateStore(ctx.root); }

/** The namespace types of a container's config. */
function nsTypes(config: Spec): string[] { return (config.linux?.namespaces ?? []).map((n) => n.type); }

/** Field 3 (state) and 22 (start time) of /proc/PID/stat, or undefined when there is no such process. */
function procStat(pid: number): { state: string; startTime: string; ppid: number } | undefined {
  if (!(pid > 0)) return undefined;
  let text: string;
  try { text = readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return undefined; }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0]!, startTime: fields[19]!, ppid: Number(fields[1]) };
}

/**
 * Reaps the container's exited init when it is this process's child (library use; the CLI exits
 * and leaves that to the system). An unreaped init keeps its pid: a pid namespace it was in
 * cannot end, so a container whose pid namespace it joined could never be deleted.
 */
async function reap(rec: ContainerRecord): Promise<void> {
  const st = procStat(rec.pid);
  if (!st || st.state !== 'Z' || st.startTime !== rec.pidStartTime || st.ppid !== process.pid) return;
  const { libc } = await import('./sys/libc.js');
  libc().waitpid(rec.pid, new Int32Array(1), 1 /* WNOHANG */);
}

function isAlive(rec: ContainerRecord): boolean {
  const st = procStat(rec.pid);
  return !!st && st.startTime === rec.pidStartTime && st.state !== 'Z' && st.state !== 'X';
}

export function statusOf(ctx: RuntimeContext, rec: ContainerRecord): Status {
  if (rec.creating) {
    if (rec.pid > 0) return isAlive(rec) ? 'creating' : 'stopped';
    // Not cloned yet: creating while the runtime doing it lives.
    const [pid, start] = (rec.creator ?? '').split(' ');
    return !rec.creator || startTimeOf(Number(pid)) === start ? 'creating' : 'stopped';
  }
  if (!isAlive(rec)) return 'stopped';
  // The freezer first, as runc: a paused container is paused whether it was started or not.
  if (freezerState(rec)) return 'paused';
  // A start killed between the start byte and removing the fifo leaves the fifo of a running
  // container: created only while the init has not exec'd its program.
  return existsSync(store(ctx).fifo(rec.id)) && !hasExeced(rec.pid) ? 'created' : 'running';
}

/** Whether the init has exec'd (until then it shows the cloak's name, "keel init"). */
function hasExeced(pid: number): boolean {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trimEnd() !== CLOAK_NAME; } catch { return false; }
}

function freezerState(rec: ContainerRecord): boolean {
  const file = rec.cgroup?.freezerFile;
  if (!file) return false;
  try {
    const v = readFileSync(file, 'utf8').trim();
    return v === 'FROZEN' || v === '1';
  } catch { return false; }
}

/** The runtime-spec state of a record, with runc's extra fields. */
export function toState(ctx: RuntimeContext, rec: ContainerRecord): ContainerState {
  const status = statusOf(ctx, rec);
  const out: ContainerState = {
    ociVersion: rec.ociVersion, id: rec.id, pid: status === 'stopped' ? 0 : rec.pid, status: status as State['status'],
    bundle: rec.bundle, rootfs: rec.rootfs, created: rec.created, owner: rec.owner,
  };
  if (rec.annotations && Object.keys(rec.annotations).length) out.annotations = rec.annotations;
  return out;
}

/** Reads and validates BUNDLE/config.json. */
export async function loadBundle(bundle: string): Promise<{ config: Spec; bundle: string; rootfs: string }> {
  const dir = resolve(bundle);
  const file = join(dir, 'config.json');
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KeelError(code === 'ENOENT' ? `config.json: not found in bundle ${dir}` : `config.json: cannot read ${file}: ${code}`);
  }
  const { parseJson, validateRuntimeConfig } = await import('../spec/index.js');
  const doc = parseJson(text, 'config.json') as Spec;
  // containerd writes the recursive propagations (rslave, rshared...) in rootfsPropagation, which
  // the schema's enum lacks and runc accepts: validate with the plain name, keep what was asked.
  const linuxDoc = doc?.linux as { rootfsPropagation?: string } | undefined;
  const rootProp = linuxDoc?.rootfsPropagation;
  const recursive = typeof rootProp === 'string' && /^r(shared|slave|private|unbindable)$/.test(rootProp);
  if (recursive) linuxDoc!.rootfsPropagation = rootProp.slice(1);
  const config = validateRuntimeConfig(doc, 'config.json');
  if (recursive) (config.linux as { rootfsPropagation?: string }).rootfsPropagation = rootProp;
  if (!config.root?.path) throw new KeelError('config.json: /root/path: a root filesystem is required');
  const rootfs = resolve(dir, config.root.path);
  let isDir = false;
  try { isDir = statSync(rootfs).isDirectory(); } catch { /* missing */ }
  if (!isDir) throw new KeelError(`config.json: /root/path: rootfs ${rootfs} does not exist or is not a directory`);
  return { config, bundle: dir, rootfs };
}

interface Spawned {
  pid: number; pidfd: number; startFd: number; config: Spec; rec: ContainerRecord; consoleMaster: number;
  /** `run`: the error pipe, still open; after the start byte it gives EOF on execve or the failing step. */
  errFd: number;
  explain: (step: number, errno: number) => string;
}

/** The temporary file writeAtomic writes `path` through. */
function tempOf(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}`);
}

/** Writes `text` to `path` atomically (as runc does for --pid-file). */
function writeAtomic(path: string, text: string): void {
  const tmp = tempOf(path);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (err) {
    throw new KeelError(`--pid-file ${path}: cannot write it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

async function spawnInit(ctx: RuntimeContext, id: string, opts: CreateOptions, mode: 'create' | 'run'): Promise<Spawned> {
  checkId(id);
  const { config, bundle, rootfs } = await loadBundle(opts.bundle);
  const [{ libc, describeErrno, pipeCloexec }, { compileInit, prepareSeccomp }, { cloneProgram }, { StepReader, MARK_FORKED }] = await Promise.all([
    import('./sys/libc.js'), import('./init-program.js'), import('./native/clone.js'), import('./nsjoin.js'),
  ]);
  const c = libc();
  const st = store(ctx);
  const O_CLOEXEC = 0o2000000;
  const hooks = config.hooks ?? {};
  const needPivotSync = !!(hooks.prestart?.length || hooks.createRuntime?.length || hooks.createContainer?.length);

  // Compile before anything is created: a bad config fails here with nothing left behind.
  const pipe = pipeCloexec;
  const toClose: number[] = [];
  const [errR, errW] = pipe(); toClose.push(errR, errW);
  const [goR, goW] = pipe(); toClose.push(goR, goW);
  let startR: number, startW = -1;
  let consoleParent = -1, consoleChild = -1;
  let seccompR = -1, seccompW = -1;
  let childStartFd: number;
  const dir = st.claim(id);
  let pid = 0;
  let placed: (() => { destroy(o?: { kill?: boolean }): Promise<void> } | undefined) | undefined;
  try {
    if (mode === 'create') {
      const fifo = st.fifo(id);
      if (c.mkfifo(fifo, 0o622) !== 0) throw new Error(`mkfifo ${fifo}: ${c.strerror(c.errno())}`);
      startR = c.open(fifo, 2 /* O_RDWR */ | O_CLOEXEC, 0);
      if (startR < 0) throw new Error(`open ${fifo}: ${c.strerror(c.errno())}`);
      toClose.push(startR);
    } else {
      [startR, startW] = pipe(); toClose.push(startR);
    }
    childStartFd = startR;
    if (config.linux?.seccomp?.listenerPath) { [seccompR, seccompW] = pipe(); toClose.push(seccompR, seccompW); }
    // `run` in the foreground with a terminal and no --console-socket: keel receives the pty
    // master itself (as runc does) over a socketpair and relays it.
    if (mode === 'run' && !(opts as RunOptions).detach && config.process?.terminal && !opts.consoleSocket) {
      const sv = new Int32Array(2);
      if (c.socketpair(1 /* AF_UNIX */, 1 /* SOCK_STREAM */ | O_CLOEXEC, 0, sv) !== 0) throw new Error(`socketpair: ${c.strerror(c.errno())}`);
      consoleParent = sv[0]!; consoleChild = sv[1]!;
      toClose.push(consoleParent, consoleChild);
    }
    let preserve = opts.preserveFds ?? 0;
    if (preserve < 0) throw new KeelError('--preserve-fds must not be negative');
    // Keep our pipes above the preserved fds so they never collide.
    if (preserve > 0) {
      const lift = (fd: number) => { const n = c.fcntl(fd, 1030 /* F_DUPFD_CLOEXEC */, 3 + preserve + 64); toClose.push(n); return n; };
      const e = lift(errW), g = lift(goR), s = lift(startR);
      (opts as any)._lifted = { e, g, s };
    }
    const lifted = (opts as any)._lifted as { e: number; g: number; s: number } | undefined;
    await prepareSeccomp(config);
    const init = compileInit(config, {
      rootfs, bundle, errFd: lifted?.e ?? errW, goFd: lifted?.g ?? goR, startFd: lifted?.s ?? childStartFd,
      consoleSocket: opts.consoleSocket ? resolve(opts.consoleSocket) : undefined, noPivot: opts.noPivot, noNewKeyring: opts.noNewKeyring, id,
      preserveFds: preserve, internalFds: [], syncBeforePivot: needPivotSync, stdio: opts.stdio,
      consoleFd: consoleChild >= 0 ? consoleChild : undefined,
      seccompStateFd: seccompR >= 0 ? seccompR : undefined,
      parentFds: [errR, goW, startW, seccompW, consoleParent].filter((fd) => fd >= 0),
    });

    const rec: ContainerRecord = {
      ociVersion: OCI_VERSION, id, pid: 0, pidStartTime: '', bundle, rootfs, created: new Date().toISOString(),
      owner: '', annotations: config.annotations, creating: true, creator: StateStore.self(), config,
    };
    st.save(rec);

    // The cgroup is recorded before it is made: a create killed while making it leaves nothing
    // that `delete --force` cannot find. On pure cgroup v2 it is made before the clone and the init
    // is born in it (CLONE_INTO_CGROUP); elsewhere the init is moved in after the clone.
    const { cgroupRecord, placeInCgroup, prepareBornCgroup, cgroupOf } = await import('./resources.js');
    rec.cgroup = cgroupRecord(config, id, { systemd: !!ctx.systemdCgroup });
    st.save(rec);
    placed = () => cgroupOf(rec);
    const born = prepareBornCgroup(config, id, rec.cgroup);
    const clone = (cgroupFd?: number) => cloneProgram(init.program, init.cloneFlags, lifted?.e ?? errW, { cgroupFd });
    const child = born ? born.clone(clone) : clone();
    pid = child.pid;
    rec.pid = pid;
    rec.pidStartTime = procStat(pid)?.startTime ?? '';
    // Saved before anything else can happen: `delete --force` finds the child from here on.
    st.save(rec);
    // The child's ends are the child's now.
    for (const fd of [errW, goR, ...(lifted ? [lifted.e, lifted.g, lifted.s] : []), ...(mode === 'create' ? [startR] : [])]) {
      c.close(fd); toClose.splice(toClose.indexOf(fd), 1);
    }
    if (mode === 'run') { c.close(startR); toClose.splice(toClose.indexOf(startR), 1); }

    // Parent-side set-up while the child waits: cgroup, id mappings, oom score.
    const linux = config.linux ?? {};
    if (!born) await placeInCgroup(config, id, pid, rec.cgroup);
    if (init.userns) {
      const map = (m: { containerID: number; hostID: number; size: number }[] | undefined) => (m ?? []).map((x) => `${x.containerID} ${x.hostID} ${x.size}\n`).join('');
      if (!linux.uidMappings?.length || !linux.gidMappings?.length) throw new KeelError('config.json: /linux/uidMappings: a user namespace needs uidMappings and gidMappings');
      writeFileSync(`/proc/${pid}/uid_map`, map(linux.uidMappings));
      // Without CAP_SETGID in the parent namespace, gid_map can only be written once setgroups is denied.
      if (process.getuid?.() !== 0) writeFileSync(`/proc/${pid}/setgroups`, 'deny');
      writeFileSync(`/proc/${pid}/gid_map`, map(linux.gidMappings));
    }
    if (config.process?.oomScoreAdj !== undefined) writeFileSync(`/proc/${pid}/oom_score_adj`, String(config.process.oomScoreAdj));
    // The container process state for the seccomp agent (config-linux.md, seccomp), once its pid is known.
    const sendSeccompState = () => {
      if (seccompW < 0) return;
      const seccomp = config.linux!.seccomp!;
      const state = {
        ociVersion: OCI_VERSION, fds: ['seccompFd'], pid, ...(seccomp.listenerMetadata ? { metadata: seccomp.listenerMetadata } : {}),
        state: { ociVersion: OCI_VERSION, id, status: 'creating', pid, bundle, ...(config.annotations ? { annotations: config.annotations } : {}) },
      };
      const json = Buffer.from(JSON.stringify(state));
      c.write(seccompW, json, json.length);
      c.close(seccompW); toClose.splice(toClose.indexOf(seccompW), 1);
      c.close(seccompR); toClose.splice(toClose.indexOf(seccompR), 1);
      seccompW = -1;
    };
    if (init.forkStep === undefined) sendSeccompState();
    const one = new Uint8Array([0]);
    c.write(goW, one, 1);

    // Follow the child to its ready point.
    const reader = new StepReader(errR, init.forkStep);
    for (;;) {
      const rs = reader.next();
      if (!rs) {
        const status = new Int32Array(1);
        c.waitpid(pid, status, 0);
        pid = 0;
        throw new KeelError(`container init exited unexpectedly during create (wait status ${status[0]})`);
      }
      const { step, value: errno } = rs;
      if (step === MARK_READY) break;
      if (step === MARK_FORKED) {
        // The init forked into the pid namespace it joins: the new process is the container's init.
        c.waitpid(pid, new Int32Array(1), 0);
        pid = errno;
        rec.pid = pid;
        rec.pidStartTime = procStat(pid)?.startTime ?? '';
        st.save(rec);
        sendSeccompState();
        continue;
      }
      if (step === MARK_PIVOT) {
        const s = { ...toState(ctx, rec), status: 'creating' as const, pid };
        const track = hookTracker(st, rec);
        await runHooks('prestart', hooks.prestart, s, { track });
        await runHooks('createRuntime', hooks.createRuntime, s, { track });
        await runHooks('createContainer', hooks.createContainer, s, { target: { pid, types: nsTypes(config) }, track });
        c.write(goW, one, 1);
        continue;
      }
      throw new KeelError(`create ${id}: ${init.program.explain(Number(step), errno, describeErrno)}`);
    }
    let consoleMaster = -1;
    if (consoleParent >= 0) {
      const { receiveFd } = await import('./sys/libc.js');
      consoleMaster = receiveFd(consoleParent);
      if (consoleMaster < 0) throw new KeelError(`create ${id}: the container's pty master did not arrive`);
    }
    c.close(goW); toClose.splice(toClose.indexOf(goW), 1);
    // `run` learns from it whether the user's program could be exec'd after the start byte.
    if (mode === 'create') c.close(errR);
    toClose.splice(toClose.indexOf(errR), 1);
    c.close(child.pidfd);
    delete rec.creating;
    delete rec.creator;
    // The pid file's temporary name is recorded first: `delete` removes it if we die writing it.
    const pidFile = opts.pidFile ? resolve(opts.pidFile) : undefined;
    if (pidFile) rec.tempFiles = [tempOf(pidFile)];
    st.save(rec);
    if (pidFile) writeAtomic(pidFile, String(pid));
    return {
      pid, pidfd: -1, startFd: startW, config, rec, consoleMaster, errFd: mode === 'run' ? errR : -1,
      explain: (step, errno) => init.program.explain(step, errno, describeErrno),
    };
  } catch (err) {
    if (pid > 0) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      const status = new Int32Array(1);
      c.waitpid(pid, status, 0);
    }
    if (startW >= 0) c.close(startW);
    try { await placed?.()?.destroy({ kill: true }); } catch { /* best effort: the error that got us here matters more */ }
    st.remove(id);
    void dir;
    throw err;
  } finally {
    for (const fd of toClose) c.close(fd);
  }
}

/** `keel create`: the container's init is set up and waits for `start`. */
export async function create(ctx: RuntimeContext, id: string, opts: CreateOptions): Promise<void> {
  await spawnInit(ctx, id, opts, 'create');
}

function runtimeState(ctx: RuntimeContext, rec: ContainerRecord): ContainerState {
  return toState(ctx, rec);
}

/** `keel start`: runs the user process of a created container. */
export async function start(ctx: RuntimeContext, id: string): Promise<void> {
  const st = store(ctx);
  await st.withLock(id, async () => {
    const rec = st.load(id);
    const status = statusOf(ctx, rec);
    if (status === 'stopped') throw new KeelError(`cannot start a container that has stopped: ${id}`);
    if (status !== 'created') throw new KeelError(`cannot start an already running container: ${id}`);
    const config = rec.config as Spec;
    const track = hookTracker(st, rec);
    try {
      await runHooks('startContainer', config.hooks?.startContainer, runtimeState(ctx, rec), { target: { pid: rec.pid, types: nsTypes(config) }, track });
    } catch (err) {
      // runtime.md: a failing startContainer hook stops the container (delete comes next).
      try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone */ }
      waitGone(rec);
      await reap(rec);
      throw err;
    }
    const fifo = st.fifo(id);
    let fd: number;
    try {
      fd = openSync(fifo, 1 /* O_WRONLY */ | 0o4000 /* O_NONBLOCK */);
    } catch (err) {
      throw new KeelError(`cannot start container ${id}: its init is gone (${(err as NodeJS.ErrnoException).code})`);
    }
    try { writeSync(fd, Buffer.from([0])); } finally { closeSync(fd); }
    unlinkSync(fifo);
    await runHooks('poststart', config.hooks?.poststart, runtimeState(ctx, rec), { warn: ctx.warn, track });
  });
}

/** `keel state`: the runtime-spec state of a container. */
export async function state(ctx: RuntimeContext, id: string): Promise<ContainerState> {
  checkId(id);
  return toState(ctx, store(ctx).load(id));
}

/** `keel list`: every container under the root. */
export async function list(ctx: RuntimeContext): Promise<ContainerState[]> {
  const st = store(ctx);
  const out: ContainerState[] = [];
  for (const id of st.ids()) {
    try { out.push(toState(ctx, st.load(id))); } catch { /* removed meanwhile, or not a container */ }
  }
  return out;
}

/** Parses a signal as runc does: `KILL`, `SIGKILL`, `9`. */
export function parseSignal(sig: string): number {
  if (/^\d+$/.test(sig)) {
    const n = Number(sig);
    if (n < 1 || n > 64) throw new KeelError(`invalid signal ${sig}`);
    return n;
  }
  const name = sig.toUpperCase().replace(/^SIG/, '');
  const rt = /^RTMIN(?:\+(\d+))?$/.exec(name);
  if (rt) return 34 + Number(rt[1] ?? 0);
  const n = SIGNALS[name];
  if (n === undefined) throw new KeelError(`unknown signal ${JSON.stringify(sig)}`);
  return n;
}

/** Host pids of every process in the container: its cgroup, else its pid namespace, else its init alone. */
export async function containerPids(rec: ContainerRecord): Promise<number[]> {
  const { cgroupOf } = await import('./resources.js');
  const cg = cgroupOf(rec);
  if (cg) { try { return cg.pids().sort((a, b) => a - b); } catch { /* cgroup gone: fall back */ } }
  let nsLink: string | undefined;
  try { nsLink = readlinkSync(`/proc/${rec.pid}/ns/pid`); } catch { return []; }
  let hostNs = '';
  try { hostNs = readlinkSync('/proc/self/ns/pid'); } catch { /* no proc */ }
  if (nsLink === hostNs) return isAlive(rec) ? [rec.pid] : [];
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try { if (readlinkSync(`/proc/${name}/ns/pid`) === nsLink) pids.push(Number(name)); } catch { /* exited */ }
  }
  return pids.sort((a, b) => a - b);
}

/** `keel kill`: sends a signal to the init (or every process with `all`). */
export async function kill(ctx: RuntimeContext, id: string, signal: string | number = 'TERM', opts: { all?: boolean } = {}): Promise<void> {
  const st = store(ctx);
  const sig = typeof signal === 'number' ? signal : parseSignal(signal);
  await st.withLock(id, async () => {
    const rec = st.load(id);
    const status = statusOf(ctx, rec);
    if (status === 'stopped' || status === 'creating') throw new KeelError(`container ${id} is not running`);
    const pids = opts.all ? await containerPids(rec) : [rec.pid];
    for (const pid of pids) {
      try { process.kill(pid, sig); } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    // SIGKILL reaches frozen processes only once they are thawed (runc thaws too).
    if (sig === 9 && status === 'paused') await (await import('./resources.js')).cgroupOf(rec)?.thaw();
  });
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function waitGone(rec: ContainerRecord, timeoutMs = 10_000): void {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(rec)) {
    if (Date.now() > deadline) throw new KeelError(`container ${rec.id}: its init (pid ${rec.pid}) did not exit after SIGKILL`);
    sleep(2);
  }
}

/**
 * Records the container's hook process groups in its state as hooks start and end, so that what
 * a killed runtime's hooks left running can be found.
 */
function hookTracker(st: StateStore, rec: ContainerRecord): HookTracker {
  return {
    started(pgid) {
      rec.hookGroups = [...(rec.hookGroups ?? []), `${pgid} ${startTimeOf(pgid)}`];
      st.save(rec);
    },
    finished(pgid) {
      rec.hookGroups = (rec.hookGroups ?? []).filter((g) => !g.startsWith(`${pgid} `));
      if (!rec.hookGroups.length) delete rec.hookGroups;
      try { st.save(rec); } catch { /* the container was deleted meanwhile */ }
    },
  };
}

/** Kills the process groups of hooks that a killed runtime left running. */
function killHookGroups(rec: ContainerRecord): void {
  for (const g of rec.hookGroups ?? []) {
    const [pgid, start] = g.split(' ');
    // A live leader that is not the hook means its pid was reused, which a group still holding
    // processes would have prevented: nothing of the hook is left.
    const now = startTimeOf(Number(pgid));
    if (now === '' || now === start) killGroup(Number(pgid));
  }
}

/** Removes what the container owns, running its poststop hooks. */
async function destroy(ctx: RuntimeContext, rec: ContainerRecord): Promise<void> {
  const config = rec.config as Spec;
  const st = store(ctx);
  killHookGroups(rec);
  delete rec.hookGroups;
  await runHooks('poststop', config.hooks?.poststop, { ...toState(ctx, rec), status: 'stopped' }, { warn: ctx.warn, track: hookTracker(st, rec) });
  const cgroup = (await import('./resources.js')).cgroupOf(rec);
  // A cgroup that cannot go yet (a process slow to die) keeps the state: the record is how a
  // later delete finds it again.
  for (let attempt = 1; cgroup; attempt++) {
    try {
      await cgroup.destroy({ kill: true });
      break;
    } catch (err) {
      if (attempt === 3) throw new KeelError(`cannot remove the cgroup of container ${rec.id}, so its state is kept (delete it again): ${(err as Error).message}`);
    }
  }
  for (const f of rec.tempFiles ?? []) rmSync(f, { force: true });
  await reap(rec);
  st.remove(rec.id);
}

/** `keel delete`: deletes a stopped (or created) container; `force` kills a running one first. */
export async function remove(ctx: RuntimeContext, id: string, opts: { force?: boolean } = {}): Promise<void> {
  const st = store(ctx);
  checkId(id);
  if (!st.exists(id)) {
    if (opts.force) { st.remove(id); return; }
    throw new KeelError(`container ${id} does not exist`);
  }
  await st.withLock(id, async () => {
    const rec = st.load(id);
    const status = statusOf(ctx, rec);
    if (status === 'running' || status === 'paused' || status === 'creating') {
      if (!opts.force) throw new KeelError(`cannot delete container ${id} that is not stopped: ${status}`);
    }
    if (status !== 'stopped') {
      for (const pid of (await containerPids(rec)).reverse()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
      // (pid 0: a create that has not cloned yet; kill(0) would hit our own process group.)
      if (rec.pid > 0) { try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone */ } }
      // Frozen processes only die once thawed.
      if (status === 'paused') await (await import('./resources.js')).cgroupOf(rec)?.thaw();
      waitGone(rec);
    }
    // A create still at work when we loaded the record may have saved more since (its cgroup).
    let latest = rec;
    try { latest = st.load(id); } catch { /* it gave up and removed everything itself */ }
    await destroy(ctx, latest);
  });
}

export interface RunOptions extends CreateOptions { detach?: boolean; keep?: boolean }

/** `keel run`: create + start, then (unless detached) wait and return the exit code (128+n for signal n). */
export async function run(ctx: RuntimeContext, id: string, opts: RunOptions): Promise<number> {
  const spawned = await spawnInit(ctx, id, opts, 'run');
  const { libc, waitForwarding } = await import('./sys/libc.js');
  const c = libc();
  const { rec, config } = spawned;
  const track = hookTracker(store(ctx), rec);
  try {
    await runHooks('startContainer', config.hooks?.startContainer, toState(ctx, rec), { target: { pid: rec.pid, types: nsTypes(config) }, track });
  } catch (err) {
    c.close(spawned.errFd);
    try { process.kill(rec.pid, 'SIGKILL'); } catch { /* gone */ }
    c.waitpid(rec.pid, new Int32Array(1), 0);
    await destroy(ctx, rec).catch((e: Error) => ctx.warn?.(e.message));
    throw err;
  }
  c.write(spawned.startFd, new Uint8Array([0]), 1);
  c.close(spawned.startFd);
  // EOF once the user's program runs (the pipe is close-on-exec), else the step that failed (execve).
  const { readStep } = await import('./nsjoin.js');
  const failed = readStep(spawned.errFd);
  c.close(spawned.errFd);
  if (failed) {
    c.waitpid(rec.pid, new Int32Array(1), 0);
    if (!opts.keep) await destroy(ctx, rec).catch((e: Error) => ctx.warn?.(e.message));
    throw new KeelError(`run ${id}: ${spawned.explain(Number(failed.step), failed.value)}`);
  }
  await runHooks('poststart', config.hooks?.poststart, toState(ctx, rec), { warn: ctx.warn, track });
  if (opts.detach) return 0;
  const relay = spawned.consoleMaster >= 0 ? await relayConsole(spawned.consoleMaster) : undefined;

  const code = await waitForwarding(rec.pid);
  await relay?.close();
  if (!opts.keep) {
    const st = store(ctx);
    await st.withLock(id, async () => destroy(ctx, st.load(id))).catch((e: Error) => ctx.warn?.(e.message));
  }
  return code;
}

/** Relays keel's stdin and stdout to a container's pty master (raw mode when stdin is a terminal). */
export async function relayConsole(master: number): Promise<{ close(): Promise<void> }> {
  const tty = await import('node:tty');
  const fromPty = new tty.ReadStream(master);
  const toPty = new tty.WriteStream(master);
  const stdinTty = process.stdin.isTTY;
  if (stdinTty) process.stdin.setRawMode(true);
  process.stdin.pipe(toPty);
  fromPty.on('error', () => undefined); // EIO once the container side closes
  toPty.on('error', () => undefined);
  const drained = new Promise<void>((res) => { fromPty.on('end', res); fromPty.on('close', res); fromPty.on('error', () => res()); });
  fromPty.pipe(process.stdout, { end: false });
  return {
    async close() {
      await Promise.race([drained, new Promise((r) => setTimeout(r, 200))]);
      process.stdin.unpipe(toPty);
      if (stdinTty) process.stdin.setRawMode(false);
      process.stdin.pause();
      fromPty.destroy();
      toPty.destroy();
    },
  };
}
