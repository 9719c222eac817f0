// `keel exec`: runs a new process in a running container. The native trampoline's child joins the
// container's namespaces (the pid and time namespaces are joined by the parent thread before
// clone3, as they apply only to children), is moved into the container's cgroup by the parent, and
// then runs the same process steps as the init (capabilities, user, seccomp, no_new_privs, exec).
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Spec } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import { StateStore, checkId } from './state.js';
import { statusOf, type RuntimeContext } from './container.js';
import { syscalls } from './linux/constants.js';

export interface ExecOptions {
  /** The command; ignored when `process` (a runtime-spec process JSON file) is given. */
  args: string[];
  process?: string;
  tty?: boolean;
  consoleSocket?: string;
  detach?: boolean;
  pidFile?: string;
  cwd?: string;
  env?: string[];
  /** `UID[:GID]`. */
  user?: string;
  additionalGids?: number[];
  caps?: string[];
  noNewPrivs?: boolean;
  preserveFds?: number;
  stdio?: [number, number, number];
}

type Process = NonNullable<Spec['process']>;

/** The process to run: the container's own process settings, changed as the options say (as runc exec). */
function execProcess(config: Spec, opts: ExecOptions): Process & { args: string[] } {
  const base = config.process ?? { cwd: '/' };
  if (opts.process) {
    let doc: Process;
    try { doc = JSON.parse(readFileSync(resolve(opts.process), 'utf8')); } catch (err) {
      throw new KeelError(`--process ${opts.process}: ${(err as Error).message}`);
    }
    if (!Array.isArray(doc.args) || doc.args.length === 0) throw new KeelError(`--process ${opts.process}: /args: must name the program to run`);
    if (typeof doc.cwd !== 'string') throw new KeelError(`--process ${opts.process}: /cwd: must be a string`);
    return { ...doc, args: doc.args };
  }
  if (opts.args.length === 0) throw new KeelError('exec: no command given');
  const env = [...(base.env ?? [])];
  for (const e of opts.env ?? []) {
    const key = e.split('=')[0];
    const i = env.findIndex((x) => x.split('=')[0] === key);
    if (i >= 0) env[i] = e; else env.push(e);
  }
  const user = { ...(base.user ?? { uid: 0, gid: 0 }) };
  if (opts.user) {
    const m = /^(\d+)(?::(\d+))?$/.exec(opts.user);
    if (!m) throw new KeelError(`invalid --user ${JSON.stringify(opts.user)}: must be UID[:GID]`);
    user.uid = Number(m[1]);
    user.gid = m[2] === undefined ? 0 : Number(m[2]);
  }
  if (opts.additionalGids) user.additionalGids = opts.additionalGids;
  const caps = structuredClone(base.capabilities ?? {});
  for (const c of opts.caps ?? []) {
    for (const set of ['bounding', 'effective', 'permitted', 'ambient', 'inheritable'] as const) {
      caps[set] = [...(caps[set] ?? []).filter((x) => x !== c), c];
    }
  }
  return {
    ...base, args: opts.args, env, cwd: opts.cwd ?? base.cwd, user, capabilities: caps, terminal: !!opts.tty,
    noNewPrivileges: opts.noNewPrivs || base.noNewPrivileges,
  };
}

/** Runs a process in container `id`; returns its exit code (128+n for signal n), or 0 when detached. */
export async function exec(ctx: RuntimeContext, id: string, opts: ExecOptions): Promise<number> {
  checkId(id);
  const st = new StateStore(ctx.root);
  const rec = st.load(id);
  const status = statusOf(ctx, rec);
  if (status === 'stopped') throw new KeelError(`cannot exec in a stopped container: ${id}`);
  if (status === 'paused') throw new KeelError(`cannot exec in a paused container: ${id}`);
  if (status === 'creating') throw new KeelError(`cannot exec in a container that is being created: ${id}`);
  const config = rec.config as Spec;
  const proc = execProcess(config, opts);
  if (proc.terminal && !opts.consoleSocket) throw new KeelError('exec --tty needs --console-socket');

  const [{ libc, describeErrno, pipeCloexec, waitForwarding }, { newProgram, cloneProgram }, { compileProcess, compileConsoleConnect, compileConsole, prepareSeccomp }, { cgroupOf }, { compileJoin, followFork, StepReader }, { compileParentBond }] = await Promise.all([
    import('./sys/libc.js'), import('./native/clone.js'), import('./init-program.js'), import('./resources.js'), import('./nsjoin.js'), import('./native/cloak.js'),
  ]);
  const c = libc();
  const S = syscalls();
  const pipe = pipeCloexec;
  const preserve = opts.preserveFds ?? 0;
  const open: number[] = [];
  const lift = (fd: number) => {
    if (preserve === 0) return fd;
    const n = c.fcntl(fd, 1030 /* F_DUPFD_CLOEXEC */, 3 + preserve + 64);
    open.push(n);
    return n;
  };
  const [errR, errW] = pipe();
  const [goR, goW] = pipe();
  open.push(errR, errW, goR, goW);
  let pid = 0;
  try {
    const childErr = lift(errW), childGo = lift(goR);
    const p = newProgram();
    // The runtime's ends are not the child's: holding them, it could never see the runtime go away.
    for (const fd of [errR, goW]) p.sys(S.close, [fd], { what: 'close', tolerate: 'any' });
    compileParentBond(p, childErr);
    p.sys(S.read, [childGo, p.cell(), 1], { what: 'wait for the runtime', onOk: 'go', notOnZero: true });
    p.fail(22, 'wait for the runtime: the runtime went away');
    p.label('go');
    (opts.stdio ?? []).forEach((fd, i) => { if (fd !== i) p.sys(S.dup3, [fd, i, 0], { what: `set up stdio fd ${i}` }); });
    for (let fd = 0; fd < 3 + preserve; fd++) p.sys(S.fcntl, [fd, 2 /* F_SETFD */, 0], { what: `keep fd ${fd}`, tolerate: 9 });
    p.sys(S.close_range, [3 + preserve, 0xffffffff, 4 /* CLOSE_RANGE_CLOEXEC */], { what: 'close_range' });
    const consoleFd = proc.terminal ? compileConsoleConnect(p, resolve(opts.consoleSocket!)) : undefined;

    const types = (config.linux?.namespaces ?? []).map((n) => n.type);
    const { forkStep } = compileJoin(p, rec.pid, types, id, childErr);
    p.sys(S.setsid, [], { what: 'setsid' });
    if (consoleFd !== undefined) compileConsole(p, consoleFd, proc.consoleSize);
    await prepareSeccomp(config);
    compileProcess(p, proc, config.linux ?? {}, { userns: types.includes('user') });

    const child = cloneProgram(p, 0, childErr);
    pid = child.pid;
    c.close(child.pidfd);
    for (const fd of [errW, goR, ...(childErr !== errW ? [childErr, childGo] : [])]) { c.close(fd); open.splice(open.indexOf(fd), 1); }
    // The cgroup before the go-ahead: a process forked into the pid namespace after it inherits it.
    cgroupOf(rec)?.apply(pid);
    c.write(goW, new Uint8Array([0]), 1);
    const reader = new StepReader(errR, forkStep);
    const fail = (step: { step: bigint; value: number } | undefined): never => {
      throw new KeelError(`exec in ${id}: ${step ? p.explain(Number(step.step), step.value, describeErrno) : 'the process setting up exited unexpectedly'}`);
    };
    if (forkStep !== undefined) {
      const first = pid;
      pid = 0;
      const forked = followFork(reader, first);
      if ('failed' in forked) fail(forked.failed);
      pid = (forked as { pid: number }).pid;
    }
    const step = reader.next();
    if (step) {
      c.waitpid(pid, new Int32Array(1), 0);
      pid = 0;
      fail(step);
    }
    // EOF: the error pipe closed on execve, the process runs.
    if (opts.pidFile) writeFileSync(resolve(opts.pidFile), String(pid));
    if (opts.detach) return 0;
    const target = pid;
    pid = 0; // from here on the process is the caller's, not ours to kill on error
    return await waitForwarding(target);
  } catch (err) {
    if (pid > 0) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } c.waitpid(pid, new Int32Array(1), 0); }
    throw err;
  } finally {
    for (const fd of open) c.close(fd);
  }
}
