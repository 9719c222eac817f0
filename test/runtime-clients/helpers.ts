// Helpers of the real-client tests: the built keel, an OCI image made here from static busybox,
// and runs of the peer tools with a clean environment and a time limit.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxMissing, makeBusyboxRootfs } from '../fixtures/busybox-bundle.js';
import { atExit, removeTree } from '../fixtures/cleanup.js';

export const repo = new URL('../../', import.meta.url).pathname;
const distKeel = join(repo, 'dist/keel');
/** The keel the clients run, as `realpath dist/keel`. */
export const keel = existsSync(distKeel) ? realpathSync(distKeel) : distKeel;

/** The environment the clients (and through them keel) get: NODE_EXTRA_CA_CERTS costs keel ~150 ms a start. */
export const env: NodeJS.ProcessEnv = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;

export function which(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Why client tests cannot run here, or false. */
export function baseSkip(): string | false {
  if (process.getuid?.() !== 0) return 'needs root';
  if (busyboxMissing) return `${busyboxMissing}: the test image is made from it`;
  if (!existsSync(distKeel)) return 'dist/keel not built (npm run build)';
  return false;
}

/** Whether this keel has an exec command (written separately; `keel exec --help` succeeds). */
export function keelHasExec(): boolean {
  return spawnSync(keel, ['exec', '--help'], { env, stdio: 'ignore' }).status === 0;
}

/** A new directory with a lower-case name (podman takes the path of an oci: layout as an image name), removed at exit. */
export function tempDir(prefix: string): string {
  for (;;) {
    const d = join(tmpdir(), prefix + randomBytes(6).toString('hex'));
    try { mkdirSync(d, { mode: 0o700 }); } catch (err) { if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err; continue; }
    atExit(() => removeTree(d));
    return d;
  }
}

export function run(cmd: string, args: string[], opts: { input?: string; timeout?: number; env?: NodeJS.ProcessEnv; cwd?: string; stdio?: 'ignore' } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', env: opts.env ?? env, input: opts.input, cwd: opts.cwd, timeout: opts.timeout ?? 60_000, ...(opts.stdio ? { stdio: opts.stdio } : {}) });
}

/** A failed run as one message: the command, its status and output. */
export function describe(r: SpawnSyncReturns<string>, what: string): string {
  return `${what}: status ${r.status}${r.signal ? ` signal ${r.signal}` : ''}${r.error ? ` error ${r.error.message}` : ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

/**
 * Writes an OCI image layout at `dir` holding `tag`: one layer with static busybox, its applets,
 * /etc/passwd and /etc/group; Cmd /bin/sh. Made with keel's own layer library.
 */
export async function makeBusyboxLayout(dir: string, tag: string): Promise<void> {
  const { OciLayout, writeLayer, changesFromTree, writeImage, newImageConfig } = await import('../../src/layers/index.js');
  const rootfs = tempDir('keel-clients-rootfs-');
  try {
    makeBusyboxRootfs(rootfs, {
      passwd: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n',
      group: 'root:x:0:\nnobody:x:65534:\n',
    });
    mkdirSync(join(rootfs, 'var'));
    const store = await OciLayout.create(dir);
    const layer = await writeLayer(store, changesFromTree(rootfs), { compression: 'gzip' });
    await writeImage(store, {
      config: newImageConfig({ config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] } }),
      layers: [layer],
      tag,
    });
  } finally {
    rmSync(rootfs, { recursive: true, force: true });
  }
}

/** Force-deletes every container keel still has under `root` (containers a client left behind). */
export function deleteKeelContainers(root: string): string[] {
  if (!existsSync(root)) return [];
  const ids = run(keel, ['--root', root, 'list', '-q']).stdout.split('\n').filter(Boolean);
  for (const id of ids) run(keel, ['--root', root, 'delete', '--force', id]);
  return ids;
}
