// koffi bindings for eventfd(2) and for watching an fd from the event loop (koffi.node.poll), used
// for cgroup v1 memory OOM notifications (memory.oom_control via cgroup.event_control).
import { closeSync, readSync } from 'node:fs';
import { KeelError } from '../../util/errors.js';
import { koffiLibc } from './libc.js';


type Fn = (...args: any[]) => any;
let cached: { koffi: any; eventfd: Fn; strerror: Fn } | undefined;
function lib() {
  if (cached) return cached;
  const { koffi, lib: libc } = koffiLibc();
  cached = {
    koffi,
    eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
    strerror: libc.func('const char *strerror(int errnum)'),
  };
  return cached;
}

const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

/** A non-blocking, close-on-exec eventfd. */
export function createEventFd(): number {
  const l = lib();
  const fd = l.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw new KeelError(`eventfd failed: ${l.strerror(l.koffi.errno())}`);
  return fd;
}

/** Reads and resets an eventfd's counter; 0 when nothing was signalled. */
export function drainEventFd(fd: number): bigint {
  const buf = Buffer.alloc(8);
  try {
    const n = readSync(fd, buf, 0, 8, null);
    return n === 8 ? buf.readBigUInt64LE(0) : 0n;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return 0n;
    throw err;
  }
}

export interface FdWatch {
  close(): void;
}

/**
 * Calls `onReadable` from the event loop whenever `fd` becomes readable, until close(). The handle
 * does not keep the process alive unless `ref` is true.
 */
export function watchReadable(fd: number, onReadable: () => void, ref = true): FdWatch {
  const handle = lib().koffi.node.poll(fd, { readable: true }, () => onReadable());
  if (!ref) handle.unref();
  let closed = false;
  return {
    close() {
      if (closed) return;
      closed = true;
      handle.close();
    },
  };
}

export function closeEventFd(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    /* already closed */
  }
}
