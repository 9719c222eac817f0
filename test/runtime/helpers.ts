// Test helpers: busybox bundles from ../shared/fixtures and the built keel CLI under a private --root.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

export const repo = new URL('../../', import.meta.url).pathname;
export const keelBin = join(repo, 'dist/keel');
const fixture = join(repo, '../shared/fixtures/busybox-bundle.sh');

export const canRunContainers = process.getuid?.() === 0 && existsSync('/bin/busybox') && existsSync(keelBin);
export const skipReason = process.getuid?.() !== 0 ? 'needs root' : !existsSync('/bin/busybox') ? 'busybox-static not installed' : 'dist/keel not built (npm run build)';

export function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** A fresh directory removed by `cleanup()`. */
export function tempDir(prefix = 'keel-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Makes a busybox bundle in a new temp dir running `args`; `edit` may change its config. */
export function makeBundle(args: string[], edit?: (config: any) => void): string {
  const dir = join(tempDir('keel-bundle-'), 'bundle');
  const r = spawnSync('bash', [fixture, dir, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`busybox-bundle.sh failed: ${r.stderr}`);
  if (edit) {
    const path = join(dir, 'config.json');
    const config = JSON.parse(readFileSync(path, 'utf8'));
    edit(config);
    writeFileSync(path, JSON.stringify(config, null, 2));
  }
  return dir;
}

export interface Keel {
  root: string;
  (args: string[], opts?: { cwd?: string; input?: string; timeout?: number }): SpawnSyncReturns<string>;
  cleanup(): void;
}

const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;

/**
 * spawnSync whose stdout and stderr go to temporary files rather than pipes: a container made by
 * `create` or `run -d` inherits the runtime's stdio (as with runc), and a pipe would keep spawnSync
 * waiting until the container exits.
 */
export function spawnCaptured(cmd: string, args: string[], opts: { cwd?: string; input?: string; timeout?: number; env?: NodeJS.ProcessEnv } = {}): SpawnSyncReturns<string> {
  const dir = mkdtempSync(join(tmpdir(), 'keel-out-'));
  const outPath = join(dir, 'out'), errPath = join(dir, 'err');
  const out = openSync(outPath, 'w+'), err = openSync(errPath, 'w+');
  try {
    let r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, env: opts.env ?? env, timeout: opts.timeout ?? 30_000, stdio: ['pipe', out, err] });
    // dist/ is rebuilt by `npm run build` while tests may be running: wait for the new file.
    for (let i = 0; i < 20 && ['ENOENT', 'ETXTBSY'].includes((r.error as NodeJS.ErrnoException | undefined)?.code ?? '') && cmd === keelBin; i++) {
      sleepMs(100);
      r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, env: opts.env ?? env, timeout: opts.timeout ?? 30_000, stdio: ['pipe', out, err] });
    }
    return { ...r, stdout: readFileSync(outPath, 'utf8'), stderr: readFileSync(errPath, 'utf8'), output: [] } as unknown as SpawnSyncReturns<string>;
  } finally {
    closeSync(out); closeSync(err);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The keel CLI with its own --root; `cleanup()` force-deletes whatever containers remain. */
export function keelWithRoot(): Keel {
  const root = tempDir('keel-root-');
  const fn = ((args: string[], opts: { cwd?: string; input?: string; timeout?: number } = {}) =>
    spawnCaptured(keelBin, ['--root', root, ...args], { cwd: opts.cwd, input: opts.input, timeout: opts.timeout ?? 30_000 })) as Keel;
  fn.root = root;
  fn.cleanup = () => {
    const l = fn(['list', '-q']);
    for (const id of l.stdout.split('\n').filter(Boolean)) fn(['delete', '--force', id]);
    rmSync(root, { recursive: true, force: true });
  };
  return fn;
}

/** Runs any command (e.g. runc) and returns its result as text. */
export function sh(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', env, ...opts });
}

export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Polls until `fn` is true or the timeout passes. */
export function waitFor(fn: () => boolean, timeoutMs = 5000): boolean {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) { if (fn()) return true; sleepMs(10); }
  return fn();
}

/** makeBundle for a shell script (any quoting): the process is `sh -c SCRIPT`. */
export function shBundle(script: string, edit?: (config: any) => void): string {
  return makeBundle(['true'], (c) => { c.process.args = ['sh', '-c', script]; edit?.(c); });
}

/** makeBundle whose args are set through config.json, so they may hold any characters. */
export function argsBundle(args: string[], edit?: (config: any) => void): string {
  return makeBundle(['true'], (c) => { c.process.args = args; edit?.(c); });
}
