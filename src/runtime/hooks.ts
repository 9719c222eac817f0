// Runtime-spec hooks run by the runtime: state JSON on stdin, args, env, timeout.
//
// Every hook is started by the clone trampoline, not by child_process: its process is bound to the
// runtime's life (PR_SET_PDEATHSIG, which survives the execve of a hook that is not set-id), leads
// a process group of its own, and waits until the runtime has recorded that group (`HookTracker`)
// before it execs. So a runtime killed while a hook runs takes the hook with it, and what the hook
// started is found by `delete --force` through the recorded group.
import type { Hook } from '../spec/index.js';
import { KeelError } from '../util/errors.js';

export type HookKind = 'prestart' | 'createRuntime' | 'createContainer' | 'startContainer' | 'poststart' | 'poststop';

/** Told of each hook's process group before the hook execs, and when the hook has exited. */
export interface HookTracker {
  started(pgid: number): void;
  finished(pgid: number): void;
}

export interface HookOptions {
  /** Run in the namespaces of this process (createContainer, startContainer). */
  target?: { pid: number; types: string[] };
  /** Where failures of poststart and poststop hooks go (they do not stop the lifecycle). */
  warn?: (msg: string) => void;
  track?: HookTracker;
}

/**
 * Runs the hooks of one kind in order. The first failure throws, except for poststart and
 * poststop hooks: their failures go to `warn` and the next hook still runs (runtime.md).
 * With `target`, each hook is exec'd by a trampoline child that joined those namespaces.
 * A hook's timeout is an alarm() that survives execve; a hook that times out is killed with its
 * process group.
 */
export async function runHooks(kind: HookKind, hooks: Hook[] | undefined, state: object, opts: HookOptions = {}): Promise<void> {
  if (!hooks?.length) return;
  const [{ libc, describeErrno, pipeCloexec }, { newProgram, cloneProgram }, { compileJoin, followFork, StepReader }, { compileParentBond }, { syscalls }] = await Promise.all([
    import('./sys/libc.js'), import('./native/clone.js'), import('./nsjoin.js'), import('./native/cloak.js'), import('./linux/constants.js'),
  ]);
  const c = libc();
  const S = syscalls();
  const pipe = pipeCloexec;
  const tolerant = kind === 'poststart' || kind === 'poststop';
  for (const [i, hook] of hooks.entries()) {
    const where = `${kind} hook #${i} (${hook.path})`;
    const [inR, inW] = pipe();
    const [errR, errW] = pipe();
    const [goR, goW] = pipe();
    // The hook's stderr is read by us: its last line goes into the error.
    const [seR, seW] = pipe();
    const open = new Set([inR, inW, errR, errW, goR, goW, seR, seW]);
    const close = (fd: number) => { if (open.delete(fd)) c.close(fd); };
    let pid = 0, group = 0;
    try {
      const p = newProgram();
      for (const fd of [inW, errR, goW, seR]) p.sys(S.close, [fd], { what: 'close', tolerate: 'any' });
      compileParentBond(p, errW);
      p.sys(S.setpgid, [0, 0], { what: 'make a process group' });
      p.sys(S.read, [goR, p.cell(), 1], { what: 'wait for the runtime', onOk: 'go', notOnZero: true });
      p.fail(22, 'wait for the runtime: the runtime went away');
      p.label('go');
      p.sys(S.fcntl, [1, 2 /* F_SETFD */, 0], { what: 'keep fd 1', tolerate: 9 });
      p.sys(S.dup3, [inR, 0, 0], { what: 'state on stdin' });
      p.sys(S.dup3, [seW, 2, 0], { what: 'stderr to the runtime' });
      p.sys(S.close_range, [3, 0xffffffff, 4 /* CLOSE_RANGE_CLOEXEC */], { what: 'close_range' });
      const { forkStep } = opts.target ? compileJoin(p, opts.target.pid, opts.target.types, 'the container', errW) : { forkStep: undefined };
      if (hook.timeout) p.sys(S.alarm, [hook.timeout], { what: 'set the hook timeout' });
      const args = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
      p.sys(S.execve, [p.cstr(hook.path), p.cstrArray(args), p.cstrArray(hook.env ?? [])], { what: `exec ${hook.path}` });
      const child = cloneProgram(p, 0, errW);
      pid = group = child.pid;
      c.close(child.pidfd);
      close(inR); close(errW); close(goR); close(seW);
      // Recorded before the hook runs anything: a runtime killed from here on leaves a group to find.
      opts.track?.started(group);
      c.write(goW, new Uint8Array([0]), 1);
      close(goW);
      // A hook may exit without reading its state: the write then fails with EPIPE, which is no
      // failure of the hook (runc ignores it too).
      const json = Buffer.from(JSON.stringify(state));
      c.write(inW, json, json.length);
      close(inW);
      const couldNotRun = (step: { step: bigint; value: number } | undefined) =>
        new KeelError(`${where} could not run: ${step ? p.explain(Number(step.step), step.value, describeErrno) : 'its process exited unexpectedly'}`);
      const reader = new StepReader(errR, forkStep);
      if (forkStep !== undefined) {
        const first = pid;
        pid = 0;
        const forked = followFork(reader, first);
        if ('failed' in forked) throw couldNotRun(forked.failed);
        pid = forked.pid;
      }
      const step = reader.next();
      const status = new Int32Array(1);
      // Wait, draining stderr meanwhile (a hook writing more than a pipe holds must not block).
      let stderr = '';
      const chunk = new Uint8Array(4096);
      c.fcntl(seR, 4 /* F_SETFL */, 0o4000 /* O_NONBLOCK */);
      const drain = () => { for (let k; (k = c.read(seR, chunk, chunk.length)) > 0;) stderr = (stderr + Buffer.from(chunk.subarray(0, k)).toString()).slice(-4096); };
      for (;;) {
        drain();
        if (c.waitpid(pid, status, 1 /* WNOHANG */) !== 0) break;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
      }
      drain();
      const tail = stderr.trim().split('\n').pop();
      pid = 0;
      if (step) throw couldNotRun(step);
      const s = status[0]!;
      const sig = s & 0x7f;
      if (sig === 14 /* SIGALRM */ && hook.timeout) {
        killGroup(group);
        throw new KeelError(`${where} timed out after ${hook.timeout}s`);
      }
      if (sig !== 0) throw new KeelError(`${where} was killed by signal ${sig}`);
      if ((s >> 8) & 0xff) throw new KeelError(`${where} failed with exit status ${(s >> 8) & 0xff}${tail ? `: ${tail}` : ''}`);
    } catch (err) {
      if (!tolerant) throw err;
      opts.warn?.((err as Error).message);
    } finally {
      if (pid > 0) {
        killGroup(group);
        try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        c.waitpid(pid, new Int32Array(1), 0);
      }
      for (const fd of [...open]) close(fd);
      if (group > 0) opts.track?.finished(group);
    }
  }
}

/** SIGKILLs process group `pgid` (nothing when it is empty). */
export function killGroup(pgid: number): void {
  if (!(pgid > 1)) return;
  try { process.kill(-pgid, 'SIGKILL'); } catch { /* empty */ }
}
