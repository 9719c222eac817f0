// Mounts the builder needs: overlay snapshots, binds and tmpfs for RUN --mount, and their removal.
// The calls go through the runtime's libc binding (src/runtime/sys/libc.ts: `syscall`), loaded on
// first use, with the mount(2)/umount2(2) numbers of the architecture; elsewhere `mount`/`umount`
// are run. Every mount made is remembered until it is unmounted, so a failing or interrupted build
// can unmount what it left (`unmountAll`).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { KeelError } from '../util/errors.js';

const SYSCALLS: Record<string, { mount: number; umount2: number }> = {
  x64: { mount: 165, umount2: 166 },
  arm64: { mount: 40, umount2: 39 },
  riscv64: { mount: 40, umount2: 39 },
  loong64: { mount: 40, umount2: 39 },
};

export const MS_RDONLY = 1;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_PRIVATE = 1 << 18;
const MNT_DETACH = 2;

type Libc = Awaited<ReturnType<typeof loadLibc>>;
let libc: Libc | undefined;

async function loadLibc() {
  const { libc: load, describeErrno } = await import('../runtime/sys/libc.js');
  return { c: load(), describeErrno };
}

/** Loads the libc binding; call once before the synchronous mount functions. */
export async function prepareMounts(): Promise<void> {
  if (!libc && SYSCALLS[process.arch]) libc = await loadLibc();
}

const active = new Set<string>();

/** Mounts that are still mounted, most recent last. */
export function activeMounts(): string[] {
  return [...active];
}

function fail(what: string, detail: string): never {
  throw new KeelError(`${what}: ${detail}`);
}

/** mount(2); `what` names the mount in errors. */
export function mount(source: string, target: string, fstype: string | null, flags: number, data: string | null, what: string): void {
  const nr = SYSCALLS[process.arch];
  if (nr && libc) {
    const { c, describeErrno } = libc;
    const rc = Number(c.syscall(nr.mount, 'const char *', source, 'const char *', target, 'const char *', fstype,
      'unsigned long', flags, 'const char *', data));
    if (rc !== 0) fail(what, `mount on ${target}: ${describeErrno(c.errno())}`);
  } else {
    const args: string[] = [];
    if (flags & MS_BIND) args.push(flags & MS_REC ? '--rbind' : '--bind');
    else if (fstype) args.push('-t', fstype);
    const opts: string[] = [];
    if (flags & MS_RDONLY) opts.push('ro');
    if (data) opts.push(data);
    if (opts.length && !(flags & MS_BIND)) args.push('-o', opts.join(','));
    args.push(source, target);
    const r = spawnSync('mount', args, { encoding: 'utf8' });
    if (r.status !== 0) fail(what, `mount on ${target}: ${(r.stderr || r.error?.message || '').trim()}`);
    if (flags & MS_BIND && flags & MS_RDONLY) {
      const r2 = spawnSync('mount', ['-o', 'remount,bind,ro', target], { encoding: 'utf8' });
      if (r2.status !== 0) fail(what, `read-only remount of ${target}: ${r2.stderr.trim()}`);
    }
  }
  active.add(target);
}

/** Read-only bind mounts need a remount to take effect. */
export function bindMount(source: string, target: string, readonly: boolean, what: string): void {
  mount(source, target, null, MS_BIND | MS_REC, null, what);
  if (readonly) {
    const nr = SYSCALLS[process.arch];
    if (nr && libc) {
      const { c, describeErrno } = libc;
      const rc = Number(c.syscall(nr.mount, 'const char *', null, 'const char *', target, 'const char *', null,
        'unsigned long', 32 /* MS_REMOUNT */ | MS_BIND | MS_RDONLY, 'const char *', null));
      if (rc !== 0) {
        const e = c.errno();
        unmount(target);
        fail(what, `read-only remount of ${target}: ${describeErrno(e)}`);
      }
    }
  }
}

/** umount2(2) (lazily with `detach`); a target that is not mounted is not an error. */
export function unmount(target: string, detach = false): void {
  const nr = SYSCALLS[process.arch];
  if (nr && libc) {
    const { c, describeErrno } = libc;
    let rc = Number(c.syscall(nr.umount2, 'const char *', target, 'int', detach ? MNT_DETACH : 0));
    if (rc !== 0) {
      const e = c.errno();
      if (e === 22 /* EINVAL: not a mount point */ || e === 2 /* ENOENT */) { active.delete(target); return; }
      if (e === 16 /* EBUSY */ && !detach) rc = Number(c.syscall(nr.umount2, 'const char *', target, 'int', MNT_DETACH));
      if (rc !== 0) throw new KeelError(`unmount ${target}: ${describeErrno(e)}`);
    }
  } else {
    const r = spawnSync('umount', detach ? ['-l', target] : [target], { encoding: 'utf8' });
    if (r.status !== 0 && !/not mounted|no mount point/.test(r.stderr)) throw new KeelError(`unmount ${target}: ${r.stderr.trim()}`);
  }
  active.delete(target);
}

/** Unmounts everything still mounted (most recent first), lazily when busy; never throws. */
export function unmountAll(): string[] {
  const problems: string[] = [];
  for (const t of [...active].reverse()) {
    try { unmount(t, true); } catch (err) { problems.push((err as Error).message); }
  }
  return problems;
}

let userns: boolean | undefined;
/** Whether this process is in a user namespace other than the initial one (its uid map is not the identity of all ids). */
export function inUserNamespace(): boolean {
  if (userns === undefined) {
    try {
      userns = !/^\s*0\s+0\s+4294967295\s*$/.test(readFileSync('/proc/self/uid_map', 'utf8'));
    } catch {
      userns = false;
    }
  }
  return userns;
}

/** Mount points below `dir` (from /proc/self/mountinfo), deepest first: leftovers of a killed build. */
export function mountsUnder(dir: string, mountinfo: string): string[] {
  const out: string[] = [];
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const point = f[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point.startsWith(prefix)) out.push(point);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Mounts an overlay: `lowers` top first (an empty list is not allowed: pass an empty directory),
 * a read-write upper and work dir, or none of them for a read-only view. redirect_dir and metacopy
 * are off so the upper dir holds whole files and directories (what src/layers needs for a layer).
 */
export function mountOverlay(lowers: string[], target: string, rw: { upper: string; work: string } | undefined, what: string): void {
  if (lowers.length === 0) throw new KeelError(`${what}: an overlay needs at least one lower directory`);
  let data = `lowerdir=${lowers.join(':')}`;
  // volatile: no sync of the upper file system at unmount (a build step does not need its writes
  // durable before the layer is read back, and the sync costs a lot after big writes).
  if (rw) data += `,upperdir=${rw.upper},workdir=${rw.work},volatile`;
  // In a user namespace (a rootless build) overlay keeps its opaque marks in user.overlay.* xattrs,
  // and then never makes redirects nor metacopies (the options may not be given).
  data += inUserNamespace() ? ',index=off,userxattr' : ',redirect_dir=off,metacopy=off,index=off';
  if (data.length > 4000) {
    throw new KeelError(`${what}: too many layers (${lowers.length}) for one overlay mount; squash some steps`);
  }
  mount('overlay', target, 'overlay', rw ? 0 : MS_RDONLY, data, what);
}
