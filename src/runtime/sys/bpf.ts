// koffi bindings for bpf(2), enough to load a cgroup device program and attach it to a cgroup v2
// directory (what runc does for linux.resources.devices on cgroup v2). Loaded on first use.
import { KeelError } from '../../util/errors.js';
import { koffiLibc } from './libc.js';


type Fn = (...args: any[]) => any;

interface Lib {
  koffi: any;
  syscall: Fn;
  close: Fn;
  strerror: Fn;
}

let cached: Lib | undefined;
function lib(): Lib {
  if (cached) return cached;
  const { koffi, lib: libc } = koffiLibc();
  cached = {
    koffi,
    syscall: libc.func('long syscall(long number, ...)'),
    close: libc.func('int close(int fd)'),
    strerror: libc.func('const char *strerror(int errnum)'),
  };
  return cached;
}

const SYS_BPF: Record<string, number> = { x64: 321, arm64: 280, ia32: 357, arm: 386 };

// enum bpf_cmd
const BPF_PROG_LOAD = 5;
const BPF_PROG_ATTACH = 8;
const BPF_PROG_DETACH = 9;
const BPF_PROG_GET_FD_BY_ID = 13;
const BPF_PROG_QUERY = 16;

export const BPF_PROG_TYPE_CGROUP_DEVICE = 15;
export const BPF_CGROUP_DEVICE = 6;
export const BPF_F_ALLOW_MULTI = 2;

const ATTR_SIZE = 128;

function bpf(cmd: number, attr: Buffer): { rc: number; errno: number } {
  const l = lib();
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) throw new KeelError(`bpf(2) is not wired for ${process.arch}`);
  const rc = Number(l.syscall(nr, 'int', cmd, 'void *', attr, 'uint', attr.length));
  return { rc, errno: rc < 0 ? l.koffi.errno() : 0 };
}

function errText(errno: number): string {
  return `${lib().strerror(errno)} (errno ${errno})`;
}

/**
 * Loads a BPF_PROG_TYPE_CGROUP_DEVICE program (struct bpf_insn[] bytes); returns its fd.
 * On failure the verifier's log is in the error.
 */
export function loadDeviceProgram(insns: Buffer, license = 'Apache-2.0'): number {
  const l = lib();
  const lic = Buffer.from(`${license}\0`);
  const log = Buffer.alloc(64 * 1024);
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(BPF_PROG_TYPE_CGROUP_DEVICE, 0); // prog_type
  attr.writeUInt32LE(insns.length / 8, 4); // insn_cnt
  attr.writeBigUInt64LE(BigInt(l.koffi.address(insns)), 8); // insns
  attr.writeBigUInt64LE(BigInt(l.koffi.address(lic)), 16); // license
  attr.writeUInt32LE(1, 24); // log_level
  attr.writeUInt32LE(log.length, 28); // log_size
  attr.writeBigUInt64LE(BigInt(l.koffi.address(log)), 32); // log_buf
  Buffer.from('keel_devices').copy(attr, 48); // prog_name[16]
  attr.writeUInt32LE(BPF_CGROUP_DEVICE, 68); // expected_attach_type
  const { rc, errno } = bpf(BPF_PROG_LOAD, attr);
  if (rc < 0) {
    const text = log.toString('utf8', 0, Math.max(0, log.indexOf(0))).trim().split('\n').slice(-3).join('; ');
    throw new KeelError(`loading the cgroup device BPF program failed: ${errText(errno)}${text ? `: ${text}` : ''}`);
  }
  return rc;
}

/** Attaches a device program to the cgroup open at `cgroupFd`. */
export function attachDeviceProgram(cgroupFd: number, progFd: number, flags = BPF_F_ALLOW_MULTI): void {
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(cgroupFd, 0); // target_fd
  attr.writeUInt32LE(progFd, 4); // attach_bpf_fd
  attr.writeUInt32LE(BPF_CGROUP_DEVICE, 8); // attach_type
  attr.writeUInt32LE(flags, 12); // attach_flags
  const { rc, errno } = bpf(BPF_PROG_ATTACH, attr);
  if (rc < 0) throw new KeelError(`attaching the cgroup device BPF program failed: ${errText(errno)}`);
}

/** Detaches a device program from a cgroup. */
export function detachDeviceProgram(cgroupFd: number, progFd: number): void {
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(cgroupFd, 0);
  attr.writeUInt32LE(progFd, 4);
  attr.writeUInt32LE(BPF_CGROUP_DEVICE, 8);
  const { rc, errno } = bpf(BPF_PROG_DETACH, attr);
  if (rc < 0) throw new KeelError(`detaching a cgroup device BPF program failed: ${errText(errno)}`);
}

/** IDs of the device programs attached directly to a cgroup. */
export function queryDevicePrograms(cgroupFd: number): number[] {
  const l = lib();
  const ids = Buffer.alloc(4 * 64);
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(cgroupFd, 0); // target_fd
  attr.writeUInt32LE(BPF_CGROUP_DEVICE, 4); // attach_type
  attr.writeBigUInt64LE(BigInt(l.koffi.address(ids)), 16); // prog_ids
  attr.writeUInt32LE(64, 24); // prog_cnt
  const { rc, errno } = bpf(BPF_PROG_QUERY, attr);
  if (rc < 0) throw new KeelError(`querying cgroup device BPF programs failed: ${errText(errno)}`);
  const count = attr.readUInt32LE(24);
  return Array.from({ length: Math.min(count, 64) }, (_, i) => ids.readUInt32LE(i * 4));
}

/** An fd for a loaded program, by ID. */
export function programFdById(id: number): number {
  const attr = Buffer.alloc(ATTR_SIZE);
  attr.writeUInt32LE(id, 0);
  const { rc, errno } = bpf(BPF_PROG_GET_FD_BY_ID, attr);
  if (rc < 0) throw new KeelError(`opening BPF program ${id} failed: ${errText(errno)}`);
  return rc;
}

export function closeFd(fd: number): void {
  lib().close(fd);
}
