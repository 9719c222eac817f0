// Shared by the builder tests: temporary stores and contexts holding Debian's static busybox,
// builds through the library or the CLI, and image trees read back by unpacking what was built.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { build, type BuildOptions, type BuildResult } from '../../src/builder/index.js';
import { keel, keelBuild, cliEnv, ensureBuilt } from '../foundation/cli.js';
import { busyboxMissing, busyboxPath } from '../fixtures/busybox-bundle.js';
import { tempDir as removedAtExit } from '../fixtures/cleanup.js';

export const repoRoot = new URL('../../', import.meta.url).pathname;
export { keel, keelBuild, cliEnv, ensureBuilt };

export const isRoot = process.getuid?.() === 0;
/** Why builder tests cannot run here, or undefined when they can. */
export const skipReason = !isRoot ? 'needs root (overlay mounts, containers)' : busyboxMissing;

export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** A temporary directory removed when the test process ends. */
export function tempDir(prefix: string): string {
  return removedAtExit(`keel-build-${prefix}-`);
}

export type FileSpec = string | Buffer | { data: string | Buffer; mode?: number } | { symlink: string } | { dir: true; mode?: number };

/** Writes files (path → content) under `dir`. */
export function writeTree(dir: string, files: Record<string, FileSpec>): void {
  for (const [path, spec] of Object.entries(files)) {
    const p = join(dir, path);
    fs.mkdirSync(join(p, '..'), { recursive: true });
    if (typeof spec === 'string' || Buffer.isBuffer(spec)) fs.writeFileSync(p, spec);
    else if ('symlink' in spec) fs.symlinkSync(spec.symlink, p);
    else if ('dir' in spec) { fs.mkdirSync(p, { recursive: true }); if (spec.mode !== undefined) fs.chmodSync(p, spec.mode); }
    else { fs.writeFileSync(p, spec.data); if (spec.mode !== undefined) fs.chmodSync(p, spec.mode); }
  }
}

/** A build context holding `busybox` (the static binary) and the given files and Dockerfile. */
export function context(dockerfile: string, files: Record<string, FileSpec> = {}, prefix = 'ctx'): string {
  const dir = tempDir(prefix);
  fs.copyFileSync(busyboxPath!, join(dir, 'busybox'));
  fs.chmodSync(join(dir, 'busybox'), 0o755);
  writeTree(dir, { ...files, Dockerfile: dockerfile });
  return dir;
}

/** The Dockerfile lines that make a busybox base with /etc/passwd and /etc/group. */
export const BUSYBOX_BASE = [
  'COPY busybox /bin/busybox',
  'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
  'RUN mkdir -p /etc /tmp && chmod 1777 /tmp && printf "root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000:app:/home/app:/bin/sh\\n" > /etc/passwd && printf "root:x:0:\\napp:x:1000:\\nstaff:x:50:app\\n" > /etc/group',
].join('\n');

/** A store of its own for a test file. */
export function newStore(): string {
  return join(tempDir('store'), 'store');
}

/** Builds with the library, progress off unless asked. */
export function buildWith(store: string, ctx: string, opts: Partial<BuildOptions> = {}): Promise<BuildResult> {
  return build({ context: ctx, store, progress: 'quiet', ...opts });
}

/** Runs the built keel-build CLI. */
export function cli(args: string[], opts: { cwd?: string; env?: Record<string, string>; input?: string; timeout?: number } = {}): SpawnSyncReturns<string> {
  ensureBuilt();
  return spawnSync(keelBuild, args, { cwd: opts.cwd ?? repoRoot, env: cliEnv(opts.env), encoding: 'utf8', input: opts.input, timeout: opts.timeout ?? 120_000 });
}

export interface Node {
  type: 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'other';
  mode: number;
  uid: number;
  gid: number;
  sha?: string;
  size?: number;
  link?: string;
}

/** Every path under `root` with type, permission bits, owners, content hash and link target. */
export function tree(root: string, opts: { skip?: (rel: string) => boolean } = {}): Map<string, Node> {
  const out = new Map<string, Node>();
  const walk = (rel: string) => {
    const abs = rel ? join(root, rel) : root;
    for (const name of fs.readdirSync(abs).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (opts.skip?.(r)) continue;
      const a = join(abs, name);
      const st = fs.lstatSync(a);
      const n: Node = {
        type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : st.isFIFO() ? 'fifo' : 'other',
        mode: st.mode & 0o7777, uid: st.uid, gid: st.gid,
      };
      if (n.type === 'file') { n.size = st.size; n.sha = createHash('sha256').update(fs.readFileSync(a)).digest('hex').slice(0, 16); }
      if (n.type === 'symlink') n.link = fs.readlinkSync(a);
      out.set(r, n);
      if (n.type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

/** Unpacks image `ref` of a layout into a new bundle (rootfs + config.json) with keel-build unpack. */
export function unpack(layoutDir: string, ref: string | undefined): string {
  const bundle = join(tempDir('bundle'), 'b');
  const r = cli(['unpack', ref ? `${layoutDir}:${ref}` : layoutDir, bundle]);
  if (r.status !== 0) throw new Error(`keel-build unpack failed: ${r.stderr}`);
  return bundle;
}

/** The store's OCI layout directory. */
export function storeLayout(store: string): string {
  return join(store, 'oci');
}

/** Runs a bundle with `keel run` (its own --root); returns the status and output. */
export function runBundle(bundle: string, edit?: (config: any) => void): SpawnSyncReturns<string> {
  ensureBuilt();
  if (edit) {
    const p = join(bundle, 'config.json');
    const c = JSON.parse(fs.readFileSync(p, 'utf8'));
    edit(c);
    fs.writeFileSync(p, JSON.stringify(c));
  }
  const root = tempDir('keel-root');
  return spawnSync(keel, ['--root', root, 'run', '--bundle', bundle, `t-${process.pid}-${Math.random().toString(36).slice(2, 8)}`], { encoding: 'utf8', env: cliEnv(), timeout: 60_000 });
}

/** Mount points under a directory (a build must leave none behind). */
export function mountsUnder(dir: string): string[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(dir));
}
