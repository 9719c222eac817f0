// Runs a syscall program in a new process made by the native clone trampoline.
import { libc } from '../sys/libc.js';
import { Program, type Arena } from './program.js';
import { TRAMPOLINE_X86_64 } from './trampoline-x86_64.js';

const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
const MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
const ARENA_SIZE = 4 << 20;
const DATA_START = 256 << 10;
const STACK_SIZE = 64 << 10;

let trampoline: { fn: any; proto: any } | undefined;
let arena: Arena | undefined;

function machineCode(): Buffer {
  if (process.arch === 'x64') return TRAMPOLINE_X86_64;
  throw new Error(`keel's clone trampoline is not available for ${process.arch}`);
}

function loadTrampoline(): { fn: any; proto: any } {
  if (trampoline) return trampoline;
  const c = libc();
  const code = machineCode();
  const size = Math.ceil(code.length / 4096) * 4096;
  const page = c.mmap(null, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (!page || c.koffi.address(page) === 0xffffffffffffffffn) throw new Error(`mmap of the trampoline failed: ${c.strerror(c.errno())}`);
  new Uint8Array(c.koffi.view(page, size)).set(code);
  if (c.mprotect(page, size, PROT_READ | PROT_EXEC) !== 0) throw new Error(`mprotect of the trampoline failed: ${c.strerror(c.errno())}`);
  const proto = c.koffi.proto('long keel_trampoline(void *ctx)');
  trampoline = { fn: page, proto };
  return trampoline;
}

/** The process-wide arena programs are built in. Programs run one at a time. */
export function programArena(): Arena {
  if (arena) return arena;
  const c = libc();
  const ptr = c.mmap(null, ARENA_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  const base = BigInt(c.koffi.address(ptr));
  if (base === 0xffffffffffffffffn) throw new Error(`mmap of the program arena failed: ${c.strerror(c.errno())}`);
  const ab = c.koffi.view(ptr, ARENA_SIZE) as ArrayBuffer;
  arena = {
    base, size: ARENA_SIZE, view: new DataView(ab), bytes: new Uint8Array(ab),
    dataStart: DATA_START, stackStart: ARENA_SIZE - STACK_SIZE, stackSize: STACK_SIZE,
  };
  void DATA_START;
  (arena as any).ptr = ptr; // keep the mapping's koffi handle alive
  return arena;
}

export function newProgram(): Program {
  return new Program(programArena());
}

export interface CloneResult { pid: number; pidfd: number }

/**
 * Clones with `flags` (CLONE_* namespace flags, CLONE_VM/CLONE_VFORK) and runs `program` in the
 * child. Failing steps are reported on `errFd` (see trampoline-x86_64.S). Returns the child's pid
 * and a pidfd for it.
 */
export function cloneProgram(program: Program, flags: number, errFd: number, opts: { cgroupFd?: number } = {}): CloneResult {
  const t = loadTrampoline();
  const pidfdCell = program.cell(0xffffffffn);
  program.finish(errFd, { flags: BigInt(flags) | 0x1000n /* CLONE_PIDFD */, pidfd: pidfdCell, exitSignal: 17, cgroupFd: opts.cgroupFd });
  const c = libc();
  const rc = Number(c.koffi.call(t.fn, t.proto, c.koffi.as(program.arena.base === 0n ? null : (program.arena as any).ptr, 'void *')));
  if (rc < 0) {
    const errno = -rc;
    const err = new Error(`clone3 failed: ${c.strerror(errno)}`) as NodeJS.ErrnoException;
    err.errno = errno;
    throw err;
  }
  return { pid: rc, pidfd: Number(program.getU64(pidfdCell) & 0xffffffffn) };
}
