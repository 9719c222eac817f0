// Shared by the foundation tests: the built CLIs (dist/), built once per test process when needed.
import { spawnSync, execFileSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';

export const root = new URL('../../', import.meta.url).pathname;
export const keel = `${root}dist/keel`;
export const keelBuild = `${root}dist/keel-build`;

/** The environment CLIs run in: NODE_EXTRA_CA_CERTS makes every Node start ~150 ms slower and is irrelevant to keel. */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  delete env.NODE_OPTIONS;
  return { ...env, ...extra };
}

let built = false;
/** `npm test` builds before running tests; a test file run on its own builds dist/ here, so it never tests stale bundles. */
export function ensureBuilt(): void {
  if (built) return;
  if (process.env.npm_lifecycle_event !== 'test' || !existsSync(keel)) {
    execFileSync(process.execPath, ['--import', 'tsx', `${root}scripts/build.ts`], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  built = true;
}

export function run(file: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): SpawnSyncReturns<string> {
  ensureBuilt();
  return spawnSync(file, args, { cwd: opts.cwd ?? root, env: cliEnv(opts.env), encoding: 'utf8' });
}

export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}
