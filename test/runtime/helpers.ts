// Test helpers: busybox bundles (test/fixtures/busybox-bundle.ts) and the built keel CLI under a
// private --root. Every directory made here is removed when the test process ends.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { busyboxMissing, makeBusyboxBundle } from '../fixtures/busybox-bundle.js';
export { BUNDLE_HOSTNAME, busyboxPath } from '../fixtures/busybox-bundle.js';
import { atExit, removeTree, tempDir as removedAtExit } from '../fixtures/cleanup.js';

export const repo = new URL('../../', import.meta.url).pathname;
export const keelBin = join(repo, 'dist/keel');

/** Why containers cannot be run here, or undefined. */
export const skipReason: string | undefined = process.getuid?.() !== 0 ? 'needs root' : busyboxMissing
  ?? (existsSync(keelBin) ? undefined : 'dist/keel not built (npm run build)');
export const canRunContainers = skipReason === undefined;

export function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** A fresh directory, removed when the test process ends. */
export function tempDir(prefix = 'keel-test-'): string {
  return removedAtExit(prefix);
}

/** Makes a busybox bundle in a new temp dir running `args`; `edit` may change its config. */
export function makeBundle(args: string[], edit?: (config: any) => void): string {
  return makeBusyboxBundle(join(tempDir('keel-bundle-'), 'bundle'), args, edit);
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

/**
 * The keel CLI with its own --root; `cleanup()` force-deletes whatever containers remain and removes
 * the root. It also runs when the test process ends, if no one called it.
 */
export function keelWithRoot(): Keel {
  const root = tempDir('keel-root-');
  const fn = ((args: string[], opts: { cwd?: string; input?: string; timeout?: number } = {}) =>
    spawnCaptured(keelBin, ['--root', root, ...args], { cwd: opts.cwd, input: opts.input, timeout: opts.timeout ?? 30_000 })) as Keel;
  fn.root = root;
  let done = false;
  fn.cleanup = () => {
    if (done || !existsSync(root)) return;
    done = true;
    const l = fn(['list', '-q']);
    for (const id of l.stdout.split('\n').filter(Boolean)) fn(['delete', '--force', id]);
    removeTree(root);
  };
  atExit(fn.cleanup);
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
