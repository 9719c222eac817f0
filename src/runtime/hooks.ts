// Runtime-spec hooks run by the runtime: state JSON on stdin, args, env, timeout.
import type { Hook } from '../spec/index.js';
import { KeelError } from '../util/errors.js';

export type HookKind = 'prestart' | 'createRuntime' | 'createContainer' | 'startContainer' | 'poststart' | 'poststop';

/**
 * Runs the hooks of one kind in order. The first failure throws, except for poststart and
 * poststop hooks: their failures go to `warn` and the next hook still runs (runtime.md).
 */
export async function runHooks(kind: HookKind, hooks: Hook[] | undefined, state: object, warn?: (msg: string) => void): Promise<void> {
  if (!hooks?.length) return;
  // Loaded only when there are hooks: child_process costs milliseconds at every start otherwise.
  const { spawnSync } = await import('node:child_process');
  const tolerant = kind === 'poststart' || kind === 'poststop';
  for (const [i, hook] of (hooks ?? []).entries()) {
    try {
      runOne(i, hook);
    } catch (err) {
      if (!tolerant) throw err;
      warn?.((err as Error).message);
    }
  }

  function runOne(i: number, hook: Hook): void {
    const args = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
    const r = spawnSync(hook.path, args.slice(1), {
      argv0: args[0],
      input: JSON.stringify(state),
      env: Object.fromEntries((hook.env ?? []).map((e) => { const k = e.indexOf('='); return k < 0 ? [e, ''] : [e.slice(0, k), e.slice(k + 1)]; })),
      timeout: hook.timeout ? hook.timeout * 1000 : undefined,
      killSignal: 'SIGKILL',
      stdio: ['pipe', 'inherit', 'pipe'],
    });
    const where = `${kind} hook #${i} (${hook.path})`;
    // A hook that exits without reading its stdin makes writing the state fail with EPIPE: that is
    // no failure of the hook (runc ignores it too).
    const epipe = (r.error as NodeJS.ErrnoException | undefined)?.code === 'EPIPE';
    if (r.error && !(epipe && r.status === 0)) {
      const code = (r.error as NodeJS.ErrnoException).code;
      if (code === 'ETIMEDOUT') throw new KeelError(`${where} timed out after ${hook.timeout}s`);
      throw new KeelError(`${where} could not run: ${r.error.message}`);
    }
    if (r.signal) throw new KeelError(`${where} ${hook.timeout && r.signal === 'SIGKILL' ? `timed out after ${hook.timeout}s` : `was killed by ${r.signal}`}`);
    if (r.status !== 0) {
      const tail = r.stderr?.toString().trim().split('\n').pop();
      throw new KeelError(`${where} failed with exit status ${r.status}${tail ? `: ${tail}` : ''}`);
    }
  }
}

/**
 * Runs hooks in the namespaces of process `pid` (createContainer, startContainer): each hook is
 * exec'd by a trampoline child that joined those namespaces; its timeout is an alarm() that
 * survives execve. Failures throw as for runHooks.
 */
export async function runHooksIn(kind: HookKind, hooks: Hook[] | undefined, state: object, target: { pid: number; types: string[] }): Promise<void> {
  if (!hooks?.length) return;
  const [{ libc, describeErrno, pipeCloexec }, { newProgram, cloneProgram }, { compileJoin, followFork, StepReader }, { compileParentBond }, { syscalls }] = await Promise.all([
    import('./sys/libc.js'), import('./native/clone.js'), import('./nsjoin.js'), import('./native/cloak.js'), import('./linux/constants.js'),
  ]);
  const c = libc();
  const S = syscalls();
  const pipe = pipeCloexec;
  for (const [i, hook] of hooks.entries()) {
    const where = `${kind} hook #${i} (${hook.path})`;
    const [inR, inW] = pipe();
    const [errR, errW] = pipe();
    // The hook's stderr is read by us, as runHooks does: its last line goes into the error.
    const [seR, seW] = pipe();
    const open = new Set([inR, inW, errR, errW, seR, seW]);
    const close = (fd: number) => { if (open.delete(fd)) c.close(fd); };
    let pid = 0;
    try {
      const p = newProgram();
      for (const fd of [inW, errR, seR]) p.sys(S.close, [fd], { what: 'close', tolerate: 'any' });
      compileParentBond(p, errW);
      p.sys(S.fcntl, [1, 2 /* F_SETFD */, 0], { what: 'keep fd 1', tolerate: 9 });
      p.sys(S.dup3, [inR, 0, 0], { what: 'state on stdin' });
      p.sys(S.dup3, [seW, 2, 0], { what: 'stderr to the runtime' });
      p.sys(S.close_range, [3, 0xffffffff, 4 /* CLOSE_RANGE_CLOEXEC */], { what: 'close_range' });
      const { forkStep } = compileJoin(p, target.pid, target.types, 'the container', errW);
      if (hook.timeout) p.sys(S.alarm, [hook.timeout], { what: 'set the hook timeout' });
      const args = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
      p.sys(S.execve, [p.cstr(hook.path), p.cstrArray(args), p.cstrArray(hook.env ?? [])], { what: `exec ${hook.path}` });
      const child = cloneProgram(p, 0, errW);
      pid = child.pid;
      c.close(child.pidfd);
      close(inR); close(errW); close(seW);
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
      if (sig === 14 /* SIGALRM */ && hook.timeout) throw new KeelError(`${where} timed out after ${hook.timeout}s`);
      if (sig !== 0) throw new KeelError(`${where} was killed by signal ${sig}`);
      if ((s >> 8) & 0xff) throw new KeelError(`${where} failed with exit status ${(s >> 8) & 0xff}${tail ? `: ${tail}` : ''}`);
    } finally {
      if (pid > 0) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } c.waitpid(pid, new Int32Array(1), 0); }
      for (const fd of [...open]) close(fd);
    }
  }
}
