// Syscall programs: what the native trampoline's child runs instead of JavaScript.
//
// A Program is compiled in TypeScript (from config.json, see ../container/init-program.ts) into one
// memory arena: a header, the instructions, and the data they point to (strings, structs, argv
// arrays, the child's stack). The trampoline clones and the child interprets the instructions:
// each is a raw syscall with up to six arguments, optional loads/stores through memory cells and
// jumps on success or on a tolerated errno. See trampoline-x86_64.S for the exact encoding.

export const PSEUDO_FAIL = 1000;
export const PSEUDO_STORE = 1001;
export const PSEUDO_CHECK32 = 1002;

const HEADER = 128;
const INSN_SIZE = 96;
const NEXT = 0xffffffffffffffffn;
const ANY_ERRNO = 0xffffffffffffffffn;

/** An argument: a number, a bigint, or `{ load: address }` to pass the u64 stored at that address. */
export type Arg = number | bigint | { load: bigint };

export interface StepOptions {
  /** What the step does, for the error message when it fails ("mount proc on /proc"). */
  what: string;
  /** An errno (or 'any') that does not fail the program; with `onError`, where to go. */
  tolerate?: number | 'any';
  onError?: string;
  /** Where to go on success (a label); `notOnZero` keeps a result of 0 on the next instruction. */
  onOk?: string;
  notOnZero?: boolean;
  /** Store the result (u64) at this address. */
  store?: bigint;
}

interface Insn { nr: number; args: Arg[]; opts: StepOptions; }

/** The memory a program lives in: one mapping, reused by every program of this process. */
export interface Arena {
  base: bigint;
  size: number;
  view: DataView;
  bytes: Uint8Array;
  /** Offset of the data area and of the stack inside the arena. */
  dataStart: number;
  stackStart: number;
  stackSize: number;
}

export class Program {
  readonly arena: Arena;
  private insns: Insn[] = [];
  private labels = new Map<string, number>();
  private dataOffset: number;

  constructor(arena: Arena) {
    this.arena = arena;
    this.dataOffset = arena.dataStart;
  }

  get length(): number { return this.insns.length; }

  /** Reserves `size` bytes of data (8-byte aligned) and returns their address. */
  alloc(size: number, align = 8): bigint {
    const off = Math.ceil(this.dataOffset / align) * align;
    if (off + size > this.arena.stackStart) throw new Error('syscall program too large for its arena');
    this.arena.bytes.fill(0, off, off + size);
    this.dataOffset = off + size;
    return this.arena.base + BigInt(off);
  }

  /** Copies bytes into the data area and returns their address. */
  bytes(data: Uint8Array, align = 8): bigint {
    const addr = this.alloc(data.length, align);
    this.arena.bytes.set(data, Number(addr - this.arena.base));
    return addr;
  }

  /** A NUL-terminated string in the data area. */
  cstr(text: string): bigint {
    const enc = Buffer.from(text + '\0', 'utf8');
    return this.bytes(enc, 1);
  }

  /** A NULL-terminated array of C strings (argv, envp). */
  cstrArray(items: string[]): bigint {
    const ptrs = items.map((s) => this.cstr(s));
    const addr = this.alloc((ptrs.length + 1) * 8);
    ptrs.forEach((p, i) => this.setU64(addr + BigInt(i * 8), p));
    return addr;
  }

  /** An 8-byte cell, zeroed or holding `value`. */
  cell(value: bigint = 0n): bigint {
    const addr = this.alloc(8);
    this.setU64(addr, value);
    return addr;
  }

  setU64(addr: bigint, value: bigint): void {
    this.arena.view.setBigUint64(Number(addr - this.arena.base), BigInt.asUintN(64, value), true);
  }

  setU32(addr: bigint, value: number): void {
    this.arena.view.setUint32(Number(addr - this.arena.base), value >>> 0, true);
  }

  getU64(addr: bigint): bigint {
    return this.arena.view.getBigUint64(Number(addr - this.arena.base), true);
  }

  /** Appends a syscall step. */
  sys(nr: number, args: Arg[], opts: StepOptions): this {
    if (args.length > 6) throw new Error('a syscall takes at most six arguments');
    this.insns.push({ nr, args, opts });
    return this;
  }

  /** Marks the next instruction with a label for jumps. */
  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`duplicate label ${name}`);
    this.labels.set(name, this.insns.length);
    return this;
  }

  /** Fails the program with `errno` (reported as the step `what`). */
  fail(errno: number, what: string): this {
    return this.sys(PSEUDO_FAIL, [errno], { what });
  }

  /** Stores `value` at `addr`; with onOk, an unconditional jump. */
  store(addr: bigint, value: bigint, opts: Partial<StepOptions> = {}): this {
    return this.sys(PSEUDO_STORE, [addr, value], { what: 'store', ...opts });
  }

  /** Fails unless the u32 at `addr` is zero (e.g. a wait status); its value is reported as the errno. */
  check32(addr: bigint, what: string): this {
    return this.sys(PSEUDO_CHECK32, [addr], { what });
  }

  /** Unconditional jump. */
  jump(label: string): this {
    return this.store(this.cell(), 0n, { what: `jump ${label}`, onOk: label });
  }

  /** The error message for step `index` failing with `errno`; a FAIL step's text says it all. */
  explain(index: number, errno: number, describeErrno: (e: number) => string): string {
    const insn = this.insns[index];
    if (insn?.nr === PSEUDO_FAIL) return this.describe(index);
    return `${this.describe(index)}: ${describeErrno(errno)}`;
  }

  /** What step `index` does, for error messages (at most 400 characters: values quoted in it may be long). */
  describe(index: number): string {
    const what = this.insns[index]?.opts.what ?? `step ${index}`;
    return what.length > 400 ? `${what.slice(0, 400)}…` : what;
  }

  private target(label: string | undefined): bigint {
    if (label === undefined) return NEXT;
    const t = this.labels.get(label);
    if (t === undefined) throw new Error(`undefined label ${label}`);
    return BigInt(t);
  }

  /**
   * Writes the header and instructions into the arena. `cloneArgs` is struct clone_args (11 u64);
   * the child's stack is set here.
   */
  finish(errFd: number, cloneArgs: { flags: bigint; pidfd?: bigint; exitSignal: number; cgroupFd?: number }): void {
    const { view, stackStart, stackSize, base } = this.arena;
    const capacity = Math.floor((this.arena.dataStart - HEADER) / INSN_SIZE);
    if (this.insns.length > capacity) throw new Error('syscall program has too many steps');
    view.setBigUint64(0, BigInt(this.insns.length), true);
    view.setBigInt64(8, BigInt(errFd), true);
    view.setBigUint64(16, 0n, true);
    view.setBigUint64(24, 0n, true);
    const ca = 32;
    const cgroup = cloneArgs.cgroupFd !== undefined && cloneArgs.cgroupFd >= 0;
    const fields = [
      cloneArgs.flags | (cgroup ? 0x200000000n : 0n), // CLONE_INTO_CGROUP
      cloneArgs.pidfd ?? 0n, 0n, 0n, BigInt(cloneArgs.exitSignal),
      base + BigInt(stackStart), BigInt(stackSize), 0n, 0n, 0n, cgroup ? BigInt(cloneArgs.cgroupFd!) : 0n,
    ];
    fields.forEach((v, i) => view.setBigUint64(ca + i * 8, v, true));
    this.insns.forEach((insn, i) => {
      const off = HEADER + i * INSN_SIZE;
      let flags = 0n;
      const args: bigint[] = [];
      insn.args.forEach((a, j) => {
        if (typeof a === 'object') { flags |= 1n << BigInt(j); args.push(a.load); }
        else args.push(BigInt.asUintN(64, BigInt(a)));
      });
      while (args.length < 6) args.push(0n);
      if (insn.opts.store !== undefined) flags |= 64n;
      if (insn.opts.notOnZero) flags |= 128n;
      const tol = insn.opts.tolerate === undefined ? 0n : insn.opts.tolerate === 'any' ? ANY_ERRNO : BigInt(insn.opts.tolerate);
      const words = [BigInt(insn.nr), flags, insn.opts.store ?? 0n, tol, this.target(insn.opts.onError), this.target(insn.opts.onOk), ...args];
      words.forEach((w, k) => view.setBigUint64(off + k * 8, w, true));
    });
  }
}
