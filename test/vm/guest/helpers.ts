// Helpers for the tests that run in the VM lane's guest (pure cgroup v2, systemd, AppArmor): a
// busybox root filesystem shared by every bundle of a test file, bundles, the built keel CLI under
// a private --root, and cgroup files read back from the guest.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, copyFileSync, chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnCaptured } from '../../runtime/helpers.js';

export const repo = new URL('../../../', import.meta.url).pathname;
export const keelBin = join(repo, 'dist/keel');
export const inGuest = process.env.KEEL_VM_GUEST === '1';
export const CG = '/sys/fs/cgroup';

/** Why a guest test cannot run here (undefined in the lane's guest). */
export const notGuest = inGuest ? undefined : 'runs in the VM lane only (npm run test:vm)';

/** A fresh directory under /tmp. */
export function tempDir(prefix = 'keel-vm-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

let sharedRootfs: string | undefined;
/** A busybox root filesystem (made once per test file), used read-only by every bundle. */
export function rootfs(): string {
  if (sharedRootfs) return sharedRootfs;
  const top = tempDir('keel-vm-rootfs-');
  chmodSync(top, 0o755); // rootless tests read it as another user
  const dir = join(top, 'rootfs');
  for (const d of ['bin', 'dev', 'etc', 'proc', 'sys/fs/cgroup', 'tmp', 'root']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync('/bin/busybox', join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  const applets = spawnSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  sharedRootfs = dir;
  return dir;
}

/** The OCI config of a busybox container running `sh -c script` (runc spec's defaults, trimmed). */
export function config(script: string): any {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false, user: { uid: 0, gid: 0 }, args: ['sh', '-c', script], cwd: '/',
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      capabilities: Object.fromEntries(['bounding', 'effective', 'permitted'].map((k) => [k, ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE']])),
      noNewPrivileges: true,
    },
    root: { path: rootfs(), readonly: true },
    hostname: 'vm',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/sys/firmware'],
      readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** A bundle directory whose config.json is `config(script)` changed by `edit`. */
export function bundle(script: string, edit?: (c: any) => void): string {
  const dir = tempDir('keel-vm-bundle-');
  const c = config(script);
  edit?.(c);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c, null, 2));
  return dir;
}

export interface Result { status: number | null; stdout: string; stderr: string }

/** A runtime CLI (keel by default) with its own --root; `cleanup()` deletes what is left. */
export function runtime(bin = keelBin, globalArgs: string[] = []) {
  const root = tempDir('keel-vm-root-');
  const call = (args: string[], opts: { input?: string; timeout?: number } = {}): Result => {
    const r = spawnCaptured(bin, ['--root', root, ...globalArgs, ...args], { input: opts.input, timeout: opts.timeout ?? 120_000 });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  return Object.assign(call, {
    root,
    bin,
    cleanup() {
      for (const id of call(['list', '-q']).stdout.split('\n').filter(Boolean)) call(['delete', '--force', id]);
      rmSync(root, { recursive: true, force: true });
    },
  });
}

/** Fails with the command's stderr when it did not exit 0; returns stdout. */
export function ok(r: Result, what: string): string {
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** A cgroup file, trimmed; `dir` is a cgroup path ("/a/b") or a directory under /sys/fs/cgroup. */
export function cgRead(dir: string, file: string): string {
  return readFileSync(join(dir.startsWith(`${CG}/`) ? dir : join(CG, dir), file), 'utf8').trim();
}

/** The cgroup v2 directory of a process. */
export function cgroupDirOf(pid: number): string {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error(`process ${pid} has no cgroup v2 entry`);
  return join(CG, line.slice(3));
}

/** major:minor of the guest's virtio disk (the io controller needs a real block device). */
export function diskDevice(): { major: number; minor: number; name: string } {
  const name = readdirSync('/sys/block').find((b) => b.startsWith('vd'));
  if (!name) throw new Error('the guest has no virtio disk');
  const [major, minor] = readFileSync(`/sys/block/${name}/dev`, 'utf8').trim().split(':').map(Number);
  return { major: major!, minor: minor!, name };
}

/** The pid of a container from `state`. */
export function pidOf(rt: ReturnType<typeof runtime>, id: string): number {
  return JSON.parse(ok(rt(['state', id]), `state ${id}`)).pid;
}

/** Polls until fn() is true (or the timeout passes); returns its last value. */
export async function until(fn: () => boolean, timeoutMs = 30_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (fn()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return fn();
}

/** Whether a path exists (for cgroup directories that must be gone). */
export const exists = existsSync;
