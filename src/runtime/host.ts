// What a long-lived program that hosts containers in-process needs beyond the lifecycle calls
// (containerd's shim is one): the exit statuses of the processes it created (it is their parent),
// a console socket that receives a container's pty master and the pty's size, and the mounts of a
// root filesystem an engine hands over as a list (containerd's snapshotter mounts).
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { KeelError } from '../util/errors.js';
import { MS, MNT_DETACH } from './linux/constants.js';
import { parseMountOptions } from './mount-options.js';

// ---------------------------------------------------------------------------------------------
// exits

export interface ProcessExit {
  /** The exit status, or 128+n when signal n killed it (as runc and containerd report it). */
  status: number;
  exitedAt: Date;
}

const watched = new Map<number, (exit: ProcessExit) => void>();
let sigchldInstalled = false;

function reapWatched(): void {
  if (!watched.size) return;
  // Loaded by whoever created the children (create, exec), so present once a pid is watched.
  const { libc, exitCodeOf } = requireLibc();
  const c = libc();
  const status = new Int32Array(1);
  for (const [pid, done] of watched) {
    const r = c.waitpid(pid, status, 1 /* WNOHANG */);
    if (r === 0) continue;
    watched.delete(pid);
    // -1 (ECHILD): someone else reaped it (a force delete); its status is lost, as runc says: 255.
    done({ status: r === pid ? exitCodeOf(status[0]!) : 255, exitedAt: new Date() });
  }
}

let libcModule: typeof import('./sys/libc.js') | undefined;
function requireLibc(): typeof import('./sys/libc.js') {
  if (!libcModule) throw new KeelError('watchExit: the runtime has not created any process');
  return libcModule;
}

/**
 * Resolves when child `pid` of this process (a container's init or an exec'd process, made by
 * create or exec here) exits; reaps it. Exits are noticed on SIGCHLD, with no thread held per
 * process; other children (child_process) are left to their owners.
 */
export async function watchExit(pid: number): Promise<ProcessExit> {
  libcModule ??= await import('./sys/libc.js');
  if (!sigchldInstalled) {
    sigchldInstalled = true;
    process.on('SIGCHLD', reapWatched);
  }
  if (watched.has(pid)) throw new KeelError(`watchExit: process ${pid} is already watched`);
  const exit = new Promise<ProcessExit>((resolve) => watched.set(pid, resolve));
  reapWatched(); // it may have exited before it was watched
  return exit;
}

/** A close-on-exec pipe, [read end, write end], e.g. a container's stdin (create/exec `stdio`). */
export async function openPipe(): Promise<[number, number]> {
  libcModule ??= await import('./sys/libc.js');
  return libcModule.pipeCloexec();
}

// ---------------------------------------------------------------------------------------------
// consoles

export interface ConsoleReceiver {
  /** The socket to give create or exec as `consoleSocket`. */
  path: string;
  /** The pty master the container sent (call after create/exec returned), or an error when none came. */
  receive(): number;
  close(): void;
}

/** A console socket listening at `path` (removed on close). */
export async function consoleReceiver(path: string): Promise<ConsoleReceiver> {
  const [{ hostSys }, { receiveFd }] = await Promise.all([import('./sys/host.js'), import('./sys/libc.js')]);
  libcModule ??= await import('./sys/libc.js');
  const sys = hostSys();
  rmSync(path, { force: true });
  const fd = sys.listenUnix(path);
  let open = true;
  return {
    path,
    receive() {
      const conn = sys.acceptPending(fd);
      if (conn < 0) throw new KeelError(`console socket ${path}: the container sent no terminal`);
      try {
        const master = receiveFd(conn);
        if (master < 0) throw new KeelError(`console socket ${path}: the container's message held no terminal`);
        return master;
      } finally { sys.close(conn); }
    },
    close() {
      if (!open) return;
      open = false;
      sys.close(fd);
      rmSync(path, { force: true });
    },
  };
}

/** Sets the size of the terminal whose master (or slave) is `fd`. */
export async function resizeConsole(fd: number, cols: number, rows: number): Promise<void> {
  const { hostSys } = await import('./sys/host.js');
  hostSys().setWinsize(fd, cols, rows);
}

// ---------------------------------------------------------------------------------------------
// root filesystem mounts

/** A mount as engines describe it (containerd's types.Mount): `mount -t type -o options source target`. */
export interface HostMount {
  type: string;
  source: string;
  /** Where under the root filesystem; empty: the root itself. */
  target?: string;
  options: string[];
}

/**
 * Mounts `mounts` in order on `rootfs` (created if missing), as containerd's mount.All does: an
 * overlay of snapshots, a bind of one snapshot. On failure, what was mounted is unmounted again.
 */
export async function mountRootfs(mounts: HostMount[], rootfs: string): Promise<void> {
  const { hostSys } = await import('./sys/host.js');
  const sys = hostSys();
  mkdirSync(rootfs, { recursive: true, mode: 0o711 });
  let done = 0;
  try {
    for (const m of mounts) {
      const target = m.target ? `${rootfs}/${m.target.replace(/^\/+/, '')}` : rootfs;
      const o = parseMountOptions(m.options, m.type);
      const what = `rootfs mount ${done} (${m.type} ${m.source})`;
      try {
        if (o.bind) {
          sys.mount(m.source, target, null, MS.BIND | (o.recursive ? MS.REC : 0), null);
          // Bind mounts take their flags (ro, nosuid ...) only on a remount.
          if (o.flags) sys.mount('', target, null, MS.BIND | MS.REMOUNT | o.flags, null);
        } else {
          sys.mount(m.source, target, m.type, o.flags, o.data.length ? o.data.join(',') : null);
        }
        for (const p of o.propagation) sys.mount('', target, null, p, null);
      } catch (err) {
        throw new KeelError(`${what}: ${(err as Error).message}`);
      }
      done++;
    }
  } catch (err) {
    await unmountRootfs(rootfs).catch(() => undefined);
    throw err;
  }
}

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo). */
function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (!point) continue;
    const p = unescape(point);
    if (p === dir || p.startsWith(dir + '/')) out.push(p);
  }
  return out.reverse();
}

/** Unmounts everything at and under `rootfs` (busy mounts are detached), as containerd's mount.UnmountAll. */
export async function unmountRootfs(rootfs: string): Promise<void> {
  const { hostSys } = await import('./sys/host.js');
  const sys = hostSys();
  for (let round = 0; round < 16; round++) {
    const points = mountsUnder(rootfs);
    if (!points.length) return;
    for (const p of points) {
      try { sys.umount2(p, 0); } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EBUSY') { try { sys.umount2(p, MNT_DETACH); } catch { /* next round */ } }
        else if (code !== 'EINVAL' && code !== 'ENOENT') throw new KeelError(`unmount ${p}: ${(err as Error).message}`);
      }
    }
  }
  const left = mountsUnder(rootfs);
  if (left.length) throw new KeelError(`unmount ${rootfs}: still mounted: ${left.join(', ')}`);
}
