// Shared by the foundation tests: the built CLIs (dist/), built once per test process when needed.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
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

let built: true | Error | undefined;
/**
 * `npm test` builds before running tests; a test file run on its own builds dist/ here, so it never
 * tests stale bundles. A failed build fails every test that needs the CLIs, with esbuild's errors.
 */
export function ensureBuilt(): void {
  if (built === undefined) {
    if (process.env.npm_lifecycle_event === 'test' && existsSync(keel) && existsSync(keelBuild)) built = true;
    else {
      const r = spawnSync(process.execPath, ['--import', 'tsx', `${root}scripts/build.ts`], { cwd: root, encoding: 'utf8' });
      const errors = (r.stderr ?? '').split('\n').filter((l) => /ERROR|error/.test(l)).slice(0, 10).join('\n');
      // The build goes on past a CLI that fails (another area's work in progress): judge by what these tests run.
      built = existsSync(keel) && existsSync(keelBuild) ? true : new Error(`npm run build did not make dist/keel and dist/keel-build:\n${errors || r.stderr}`);
    }
  }
  if (built !== true) throw built;
}

export function run(file: string, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): SpawnSyncReturns<string> {
  ensureBuilt();
  return spawnSync(file, args, { cwd: opts.cwd ?? root, env: cliEnv(opts.env), encoding: 'utf8' });
}

export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}
