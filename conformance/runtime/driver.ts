// Drives an OCI runtime through its runc-compatible command line: `RUNTIME --root DIR <command> ...`.
// Every invocation has a time limit; stdout and stderr go to files (a detached container keeps the
// runtime's stdio open, so pipes would never close). Containers created here are remembered and
// force-removed by `cleanup()`.
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ExecResult {
  /** Exit code, or 128+signal when killed by a signal; -1 when it timed out. */
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
  /** The command, for messages. */
  command: string;
}

export interface ExecOptions {
  /** File whose content becomes the runtime's stdin (default /dev/null). */
  stdinFile?: string;
  timeoutMs?: number;
  /** Start the runtime with this oom_score_adj (inherited from its parent), to see whether the runtime changes it. */
  oomScoreAdj?: number;
  env?: NodeJS.ProcessEnv;
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGTERM: 15 };

export class RuntimeDriver {
  private seq = 0;
  private readonly ids = new Set<string>();

  /**
   * @param runtime  the runtime binary (or a wrapper script)
   * @param root     its state directory (`--root`)
   * @param logDir   where stdout/stderr of each invocation are kept
   */
  constructor(
    readonly runtime: string,
    readonly root: string,
    private readonly logDir: string,
    private readonly defaultTimeoutMs = 30_000,
  ) {}

  /** Runs `RUNTIME --root ROOT ...args`. Never throws for a non-zero exit. */
  exec(args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const n = ++this.seq;
    const outPath = join(this.logDir, `${n}.out`);
    const errPath = join(this.logDir, `${n}.err`);
    const outFd = openSync(outPath, 'w');
    const errFd = openSync(errPath, 'w');
    const inFd = opts.stdinFile ? openSync(opts.stdinFile, 'r') : 'ignore';
    const full = ['--root', this.root, ...args];
    let file = this.runtime;
    let argv = full;
    if (opts.oomScoreAdj !== undefined) {
      file = '/bin/sh';
      argv = ['-c', `echo ${opts.oomScoreAdj} > /proc/self/oom_score_adj && exec "$0" "$@"`, this.runtime, ...full];
    }
    const command = [this.runtime, ...full].join(' ');
    const t0 = Date.now();
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    return new Promise((resolve) => {
      const child = spawn(file, argv, { stdio: [inFd, outFd, errFd], env: opts.env ?? process.env });
      closeSync(outFd);
      closeSync(errFd);
      if (typeof inFd === 'number') closeSync(inFd);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      const finish = (code: number) => {
        clearTimeout(timer);
        resolve({
          code: timedOut ? -1 : code,
          stdout: readFileSync(outPath, 'utf8'),
          stderr: readFileSync(errPath, 'utf8'),
          timedOut,
          ms: Date.now() - t0,
          command,
        });
      };
      child.on('error', (err) => {
        clearTimeout(timer);
        resolve({ code: 127, stdout: '', stderr: `cannot run ${this.runtime}: ${err.message}`, timedOut: false, ms: Date.now() - t0, command });
      });
      child.on('exit', (code, signal) => finish(code ?? 128 + (signal ? (SIGNALS[signal] ?? 0) : 0)));
    });
  }

  /** Remembers a container id so cleanup removes it whatever happens. */
  track(id: string): void {
    this.ids.add(id);
  }

  create(id: string, bundle: string, extra: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    this.track(id);
    return this.exec(['create', '--bundle', bundle, ...extra, id], opts);
  }

  run(id: string, bundle: string, extra: string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    this.track(id);
    return this.exec(['run', '--bundle', bundle, ...extra, id], opts);
  }

  start(id: string): Promise<ExecResult> {
    return this.exec(['start', id]);
  }

  kill(id: string, signal?: string): Promise<ExecResult> {
    return this.exec(signal === undefined ? ['kill', id] : ['kill', id, signal]);
  }

  delete(id: string, force = false): Promise<ExecResult> {
    return this.exec(force ? ['delete', '--force', id] : ['delete', id]);
  }

  /** `state ID` parsed; `state` is null when the command failed or printed something that is not JSON. */
  async state(id: string): Promise<{ result: ExecResult; state: Record<string, unknown> | null }> {
    const result = await this.exec(['state', id]);
    if (result.code !== 0) return { result, state: null };
    try {
      const state = JSON.parse(result.stdout) as unknown;
      return { result, state: state && typeof state === 'object' && !Array.isArray(state) ? (state as Record<string, unknown>) : null };
    } catch {
      return { result, state: null };
    }
  }

  /** Polls `state` until the status is `want` (or the container is gone when want is null). */
  async waitStatus(id: string, want: string | null, timeoutMs = 10_000): Promise<Record<string, unknown> | null> {
    const until = Date.now() + timeoutMs;
    let last: Record<string, unknown> | null = null;
    for (;;) {
      const { state } = await this.state(id);
      last = state;
      if (want === null ? state === null : state?.status === want) return state;
      if (Date.now() > until) return last;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Removes one container whatever its state: SIGKILL, then `delete --force`, then a plain `delete`. */
  async remove(id: string): Promise<void> {
    const { state } = await this.state(id);
    if (state === null) {
      this.ids.delete(id);
      return;
    }
    if (state.status === 'running' || state.status === 'created' || state.status === 'paused') {
      await this.exec(['kill', id, 'KILL'], { timeoutMs: 10_000 });
      await this.waitStatus(id, 'stopped', 5_000);
    }
    const forced = await this.exec(['delete', '--force', id], { timeoutMs: 10_000 });
    if (forced.code !== 0) await this.exec(['delete', id], { timeoutMs: 10_000 });
    this.ids.delete(id);
  }

  /** Removes every container this driver created. */
  async cleanup(): Promise<void> {
    for (const id of [...this.ids]) {
      try {
        await this.remove(id);
      } catch {
        /* best effort: keep removing the others */
      }
    }
  }
}

/**
 * A wrapper script that runs RUNTIME in a private mount namespace where the cgroup2 mount at
 * /sys/fs/cgroup/unified is hidden, so a runtime that refuses hybrid cgroup hosts (crun) sees
 * pure cgroup v1.
 */
export function hideUnifiedWrapper(runtime: string): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return [
    '#!/bin/sh',
    '# generated by keel-conformance: run the runtime with /sys/fs/cgroup/unified hidden',
    `exec unshare -m --propagation private /bin/sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" "$@"' ${q(runtime)} "$@"`,
    '',
  ].join('\n');
}
