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
    if (r.error) {
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
