// Compiles the OCI `linux.seccomp` object into a classic-BPF seccomp filter, with runc's semantics
// (runc builds its filters with libseccomp and then prepends an -ENOSYS stub):
//
//  - SCMP_ACT_KILL is SECCOMP_RET_KILL_THREAD; ERRNO and TRACE without errnoRet return EPERM;
//    defaultErrnoRet applies to the default action.
//  - The native architecture is always in the filter; `architectures` adds more. A syscall from an
//    architecture that is not in the filter gets SECCOMP_RET_KILL_THREAD (libseccomp's bad-arch action).
//  - Syscall names are resolved per architecture; names unknown on an architecture are skipped there
//    (unknown everywhere: skipped, reported in `skippedSyscalls`), like runc with libseccomp.
//  - A rule whose action equals the default action is dropped (runc does so before libseccomp sees it).
//  - Several conditions on different arguments must all hold; when two conditions test the same
//    argument, runc turns each condition into a rule of its own (any of them may match).
//  - An unconditional rule for a syscall wins over its conditional rules (libseccomp). Between
//    conditional rules of one syscall the first one (config order) that matches decides; libseccomp
//    orders overlapping rules with different actions by an internal tree order instead.
//  - On 32-bit ABIs (x86, x32) arguments are 32 bits wide: only the low 32 bits of values compare.
//  - SCMP_CMP_MASKED_EQ compares (arg & value) with (valueTwo & value), 32 bits at a time.
//  - On x86 (i386) the socket and SysV IPC calls are also matched through socketcall(2)/ipc(2) by
//    their call number in the first argument, as libseccomp does (other conditions do not apply there).
//  - runc's -ENOSYS stub: unless the default action is ALLOW/LOG/TRACE or ERRNO(ENOSYS), a syscall
//    numbered above the largest one the profile names (per listed architecture) returns ENOSYS, so
//    that libc falls back from syscalls newer than the profile.
import { KeelError } from '../../util/errors.js';
import type { Linux } from '../../spec/index.js';
import { Assembler, encodeFilter, type Label, type SockFilter } from './bpf.js';
import {
  AUDIT_ARCH_AARCH64, AUDIT_ARCH_ARM, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, BPF_MAXINSNS, ENOSYS, EPERM, SECCOMP_DATA_ARCH,
  SECCOMP_DATA_ARGS, SECCOMP_DATA_NR, SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_NEW_LISTENER,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW, SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD, SECCOMP_RET_LOG, SECCOMP_RET_TRACE, SECCOMP_RET_TRAP,
  SECCOMP_RET_USER_NOTIF, X32_SYSCALL_BIT,
} from './constants.js';
import { AARCH64_SYSCALLS, ARM_SYSCALLS, X32_SYSCALLS, X86_64_SYSCALLS, X86_SYSCALLS, type SyscallTable } from './syscall-tables.js';

export type LinuxSeccomp = NonNullable<Linux['seccomp']>;
type OciSyscall = NonNullable<LinuxSeccomp['syscalls']>[number];

/** A 64-bit seccomp value: JSON numbers above 2^53 lose precision, so bigint is accepted too. */
type U64 = number | bigint | string;

// ---------------------------------------------------------------------------------------------
// Architectures

interface ArchInfo {
  /** OCI name, e.g. SCMP_ARCH_X86_64. */
  oci: string;
  /** seccomp_data.arch value. */
  audit: number;
  table: SyscallTable;
  /** Width of syscall arguments in this ABI. */
  argBits: 32 | 64;
}

const ARCHES: Record<string, ArchInfo> = {
  SCMP_ARCH_X86_64: { oci: 'SCMP_ARCH_X86_64', audit: AUDIT_ARCH_X86_64, table: X86_64_SYSCALLS, argBits: 64 },
  SCMP_ARCH_X86: { oci: 'SCMP_ARCH_X86', audit: AUDIT_ARCH_I386, table: X86_SYSCALLS, argBits: 32 },
  SCMP_ARCH_X32: { oci: 'SCMP_ARCH_X32', audit: AUDIT_ARCH_X86_64, table: X32_SYSCALLS, argBits: 32 },
  SCMP_ARCH_AARCH64: { oci: 'SCMP_ARCH_AARCH64', audit: AUDIT_ARCH_AARCH64, table: AARCH64_SYSCALLS, argBits: 64 },
  SCMP_ARCH_ARM: { oci: 'SCMP_ARCH_ARM', audit: AUDIT_ARCH_ARM, table: ARM_SYSCALLS, argBits: 32 },
};

/**
 * Every architecture name the OCI schema allows. Those without a syscall table in keel are accepted
 * and left out of the filter: their syscalls get the bad-arch action (kill), which can only happen
 * on a host that runs binaries of that architecture.
 */
export const OCI_ARCHES = [
  'SCMP_ARCH_X86', 'SCMP_ARCH_X86_64', 'SCMP_ARCH_X32', 'SCMP_ARCH_ARM', 'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_LOONGARCH64', 'SCMP_ARCH_M68K', 'SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64', 'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64', 'SCMP_ARCH_MIPSEL64N32', 'SCMP_ARCH_PPC', 'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390', 'SCMP_ARCH_S390X', 'SCMP_ARCH_SH', 'SCMP_ARCH_SHEB',
  'SCMP_ARCH_PARISC', 'SCMP_ARCH_PARISC64', 'SCMP_ARCH_RISCV64',
] as const;

/** Architectures keel can put in a filter (it has their syscall tables). */
export const SUPPORTED_ARCHES = Object.keys(ARCHES);

/** The OCI architecture of this Node process. */
export function nativeSeccompArch(): string {
  if (process.arch === 'x64') return 'SCMP_ARCH_X86_64';
  if (process.arch === 'arm64') return 'SCMP_ARCH_AARCH64';
  if (process.arch === 'ia32') return 'SCMP_ARCH_X86';
  return `unsupported (${process.arch})`;
}

/** The syscall table keel uses for an OCI architecture name, if it has one. */
export function syscallTable(ociArch: string): SyscallTable | undefined {
  return ARCHES[ociArch]?.table;
}

/** Syscall number of `name` on `ociArch`, or undefined when that ABI lacks it. */
export function syscallNumber(ociArch: string, name: string): number | undefined {
  const table = ARCHES[ociArch]?.table;
  return table && Object.hasOwn(table, name) ? table[name] : undefined;
}

// x86 (i386) multiplexers: socketcall(call, args) and ipc(call, ...) take the call number first.
const X86_SOCKETCALL = 102;
const X86_IPC = 117;
const SOCKETCALL_CALLS: Record<string, number> = {
  socket: 1, bind: 2, connect: 3, listen: 4, accept: 5, getsockname: 6, getpeername: 7, socketpair: 8,
  send: 9, recv: 10, sendto: 11, recvfrom: 12, shutdown: 13, setsockopt: 14, getsockopt: 15, sendmsg: 16,
  recvmsg: 17, accept4: 18, recvmmsg: 19, sendmmsg: 20,
};
const IPC_CALLS: Record<string, number> = {
  semop: 1, semget: 2, semctl: 3, semtimedop: 4, msgsnd: 11, msgrcv: 12, msgget: 13, msgctl: 14,
  shmat: 21, shmdt: 22, shmget: 23, shmctl: 24,
};

// ---------------------------------------------------------------------------------------------
// Actions, operators, flags

const ACTIONS = [
  'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP', 'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE', 'SCMP_ACT_ALLOW', 'SCMP_ACT_LOG', 'SCMP_ACT_NOTIFY',
] as const;

/** The SECCOMP_RET_* value of an OCI action (errnoRet for ERRNO/TRACE, default EPERM). */
export function seccompActionValue(action: string, errnoRet: number | undefined, fieldPath: string): number {
  const data = (): number => {
    if (errnoRet === undefined || errnoRet === null) return EPERM;
    if (!Number.isInteger(errnoRet) || errnoRet < 0 || errnoRet > 0xffff) {
      throw new KeelError(`seccomp errno ${errnoRet} out of range (0-65535) for ${action} in ${fieldPath}`);
    }
    return errnoRet;
  };
  switch (action) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return SECCOMP_RET_KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return SECCOMP_RET_KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return SECCOMP_RET_TRAP;
    case 'SCMP_ACT_ERRNO':
      return (SECCOMP_RET_ERRNO | data()) >>> 0;
    case 'SCMP_ACT_TRACE':
      return (SECCOMP_RET_TRACE | data()) >>> 0;
    case 'SCMP_ACT_ALLOW':
      return SECCOMP_RET_ALLOW;
    case 'SCMP_ACT_LOG':
      return SECCOMP_RET_LOG;
    case 'SCMP_ACT_NOTIFY':
      return SECCOMP_RET_USER_NOTIF;
    default:
      throw new KeelError(
        `unknown seccomp action ${JSON.stringify(action)} in ${fieldPath} (expected one of ${ACTIONS.join(', ')})`,
      );
  }
}

const OPS = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'] as const;
type Op = (typeof OPS)[number];

const FLAGS: Record<string, number> = {
  // runc accepts TSYNC and ignores it: the filter is installed by a single-threaded init right before
  // execve, so there are no other threads to synchronise (and TSYNC is invalid with NEW_LISTENER).
  SECCOMP_FILTER_FLAG_TSYNC: 0,
  SECCOMP_FILTER_FLAG_LOG: SECCOMP_FILTER_FLAG_LOG,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: SECCOMP_FILTER_FLAG_SPEC_ALLOW,
  SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
};

function usesNotify(config: LinuxSeccomp): boolean {
  return (config.syscalls ?? []).some((s) => s?.action === 'SCMP_ACT_NOTIFY');
}

/**
 * The flags the runtime must pass to seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog) for this
 * config: the `flags` it lists (TSYNC is accepted and ignored, like runc) plus
 * SECCOMP_FILTER_FLAG_NEW_LISTENER when a rule uses SCMP_ACT_NOTIFY — seccomp() then returns the
 * listener fd, which the runtime sends to the agent at `listenerPath`.
 * Throws a KeelError for an unknown flag.
 */
export function seccompFlagsFor(config: LinuxSeccomp, fieldPath = 'linux.seccomp'): number {
  let flags = 0;
  (config.flags ?? []).forEach((flag, i) => {
    const value = FLAGS[flag];
    if (value === undefined) {
      throw new KeelError(
        `unknown seccomp flag ${JSON.stringify(flag)} in ${fieldPath}.flags[${i}] (expected one of ${Object.keys(FLAGS).join(', ')})`,
      );
    }
    flags |= value;
  });
  if (usesNotify(config)) flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER;
  return flags >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Rules

interface Cond {
  index: number;
  op: Op;
  value: bigint;
  valueTwo: bigint;
}

interface Rule {
  name: string;
  action: number;
  conds: Cond[];
}

const U64_MAX = (1n << 64n) - 1n;

function toU64(v: U64 | undefined, fieldPath: string): bigint {
  if (v === undefined || v === null) return 0n;
  let b: bigint;
  try {
    if (typeof v === 'number' && !Number.isInteger(v)) throw new Error('not an integer');
    b = BigInt(v);
  } catch {
    throw new KeelError(`seccomp argument value ${JSON.stringify(String(v))} is not an unsigned 64-bit integer in ${fieldPath}`);
  }
  // A JSON number just below 2^64 (e.g. 18446744073709551615) parses as exactly 2^64.
  if (typeof v === 'number' && b === 1n << 64n) b = U64_MAX;
  if (b < 0n || b > U64_MAX) {
    throw new KeelError(`seccomp argument value ${String(v)} is out of the unsigned 64-bit range in ${fieldPath}`);
  }
  return b;
}

type OciArg = NonNullable<OciSyscall['args']>[number];

function parseCond(arg: OciArg, fieldPath: string): Cond {
  if (!arg || typeof arg !== 'object') throw new KeelError(`seccomp argument is not an object in ${fieldPath}`);
  const index = arg.index;
  if (!Number.isInteger(index) || index < 0 || index > 5) {
    throw new KeelError(`seccomp argument index ${JSON.stringify(index)} out of range (0-5) in ${fieldPath}.index`);
  }
  if (!(OPS as readonly string[]).includes(arg.op)) {
    throw new KeelError(
      `unknown seccomp operator ${JSON.stringify(arg.op)} in ${fieldPath}.op (expected one of ${OPS.join(', ')})`,
    );
  }
  return {
    index,
    op: arg.op as Op,
    value: toU64(arg.value as U64, `${fieldPath}.value`),
    valueTwo: toU64(arg.valueTwo as U64 | undefined, `${fieldPath}.valueTwo`),
  };
}

interface ParsedConfig {
  defaultAction: number;
  /** Rules in config order, with runc's expansions applied (one per name, split conditions). */
  rules: Rule[];
  /** Every syscall name mentioned (for the -ENOSYS stub). */
  names: Set<string>;
  arches: string[];
}

function parseConfig(config: LinuxSeccomp, fp: string, nativeArch: string): ParsedConfig {
  if (!config || typeof config !== 'object') throw new KeelError(`${fp} is not an object`);
  const defaultAction = seccompActionValue(config.defaultAction, config.defaultErrnoRet, `${fp}.defaultAction`);
  if (defaultAction === SECCOMP_RET_USER_NOTIF) {
    throw new KeelError(`SCMP_ACT_NOTIFY cannot be the default action in ${fp}.defaultAction`);
  }
  const arches: string[] = [nativeArch];
  (config.architectures ?? []).forEach((arch, i) => {
    if (!(OCI_ARCHES as readonly string[]).includes(arch)) {
      throw new KeelError(`unknown seccomp architecture ${JSON.stringify(arch)} in ${fp}.architectures[${i}]`);
    }
    if (!arches.includes(arch)) arches.push(arch);
  });
  const rules: Rule[] = [];
  const names = new Set<string>();
  (config.syscalls ?? []).forEach((sc, i) => {
    const at = `${fp}.syscalls[${i}]`;
    if (!sc || typeof sc !== 'object') throw new KeelError(`${at} is not an object`);
    const action = seccompActionValue(sc.action, sc.errnoRet, `${at}.action`);
    const conds = (sc.args ?? []).map((a, j) => parseCond(a, `${at}.args[${j}]`));
    if (!Array.isArray(sc.names) || sc.names.length === 0) throw new KeelError(`${at}.names is empty`);
    sc.names.forEach((name, j) => {
      if (typeof name !== 'string' || name === '') {
        throw new KeelError(`empty or non-string syscall name in ${at}.names[${j}]`);
      }
      if (action === SECCOMP_RET_USER_NOTIF && name === 'write') {
        throw new KeelError(`SCMP_ACT_NOTIFY cannot be used for the write syscall in ${at}`);
      }
      names.add(name);
      if (action === defaultAction) return; // redundant: runc skips it
      const indexes = conds.map((c) => c.index);
      if (new Set(indexes).size !== indexes.length) {
        for (const c of conds) rules.push({ name, action, conds: [c] });
      } else {
        rules.push({ name, action, conds });
      }
    });
  });
  return { defaultAction, rules, names, arches };
}

// ---------------------------------------------------------------------------------------------
// Per-architecture decision: nr → outcome

type Outcome = { ret: number } | { body: number };

interface SubArch {
  info: ArchInfo;
  /** nr → rules in config order (after multiplexing), for this ABI. */
  byNr: Map<number, Rule[]>;
  /** -ENOSYS above this number (runc's stub), or undefined. */
  enosysAbove: number | undefined;
}

interface ArchBlock {
  audit: number;
  subs: SubArch[];
}

function rulesForArch(info: ArchInfo, rules: Rule[]): Map<number, Rule[]> {
  const byNr = new Map<number, Rule[]>();
  const add = (nr: number, rule: Rule) => {
    const list = byNr.get(nr);
    if (list) list.push(rule);
    else byNr.set(nr, [rule]);
  };
  for (const rule of rules) {
    const nr = Object.hasOwn(info.table, rule.name) ? info.table[rule.name] : undefined;
    if (nr !== undefined) add(nr, rule);
    if (info.oci === 'SCMP_ARCH_X86') {
      const sock = SOCKETCALL_CALLS[rule.name];
      const ipc = IPC_CALLS[rule.name];
      const call = sock ?? ipc;
      if (call !== undefined) {
        add(sock !== undefined ? X86_SOCKETCALL : X86_IPC, {
          name: rule.name,
          action: rule.action,
          conds: [{ index: 0, op: 'SCMP_CMP_EQ', value: BigInt(call), valueTwo: 0n }],
        });
      }
    }
  }
  return byNr;
}

/** Largest syscall number among `names` on this ABI, as runc's -ENOSYS stub computes it. */
function lastSyscall(info: ArchInfo, names: Set<string>): number {
  let last = 0;
  for (const name of names) {
    if (!Object.hasOwn(info.table, name)) continue;
    // libseccomp resolves the multiplexed calls to pseudo-numbers on x86, so runc never counts them.
    if (info.oci === 'SCMP_ARCH_X86' && (SOCKETCALL_CALLS[name] !== undefined || IPC_CALLS[name] !== undefined)) continue;
    last = Math.max(last, info.table[name]!);
  }
  return last;
}

/** runc adds its -ENOSYS stub unless the default action lets syscalls through or already is ENOSYS. */
function stubApplies(defaultAction: number): boolean {
  const kind = (defaultAction & 0xffff0000) >>> 0;
  if (kind === SECCOMP_RET_ALLOW || kind === SECCOMP_RET_LOG || kind === SECCOMP_RET_TRACE) return false;
  return defaultAction !== ((SECCOMP_RET_ERRNO | ENOSYS) >>> 0);
}

const BAD_ARCH = SECCOMP_RET_KILL_THREAD;

/** The outcome for syscall number `nr` (unsigned) in an arch block; the reference semantics. */
function outcomeFor(block: ArchBlock, nr: number, defaultAction: number): Outcome {
  const enosys = { ret: (SECCOMP_RET_ERRNO | ENOSYS) >>> 0 };
  if (block.audit === AUDIT_ARCH_X86_64) {
    const x64 = block.subs.find((s) => s.info.oci === 'SCMP_ARCH_X86_64');
    const x32 = block.subs.find((s) => s.info.oci === 'SCMP_ARCH_X32');
    const bit30 = (nr & X32_SYSCALL_BIT) !== 0;
    // runc's stub runs first and splits on bit 30 alone.
    const stub = bit30 ? x32 : x64;
    if (stub?.enosysAbove !== undefined && nr > stub.enosysAbove) return enosys;
    // libseccomp: without x32 in the filter, numbers >= 2^30 other than -1 are a bad architecture.
    if (!x32 && nr >= X32_SYSCALL_BIT && nr !== 0xffffffff) return { ret: BAD_ARCH };
    if (!x64 && nr < X32_SYSCALL_BIT) return { ret: BAD_ARCH };
    return ruleOutcome(nr >= X32_SYSCALL_BIT ? x32 : x64, nr, defaultAction);
  }
  const sub = block.subs[0]!;
  if (sub.enosysAbove !== undefined && nr > sub.enosysAbove) return enosys;
  return ruleOutcome(sub, nr, defaultAction);
}

function ruleOutcome(sub: SubArch | undefined, nr: number, defaultAction: number): Outcome {
  const rules = sub?.byNr.get(nr);
  if (!rules) return { ret: defaultAction };
  const uncond = rules.find((r) => r.conds.length === 0);
  return uncond ? { ret: uncond.action } : { body: nr };
}

function sameOutcome(a: Outcome, b: Outcome): boolean {
  return 'ret' in a ? 'ret' in b && a.ret === b.ret : 'body' in b && a.body === b.body;
}

/** The rules that decide a syscall: an unconditional rule wins; otherwise the conditional ones in order. */
function effectiveRules(rules: Rule[]): Rule[] {
  const uncond = rules.find((r) => r.conds.length === 0);
  return uncond ? [uncond] : rules;
}

// ---------------------------------------------------------------------------------------------
// Code generation

class Gen {
  readonly asm = new Assembler();
  private rets = new Map<number, Label>();

  constructor(private readonly littleEndian: boolean) {}

  /** A label for a shared `ret value` (emitted by flushReturns). */
  retLabel(value: number): Label {
    let l = this.rets.get(value >>> 0);
    if (!l) {
      l = this.asm.label();
      this.rets.set(value >>> 0, l);
    }
    return l;
  }

  flushReturns(): void {
    for (const [value, label] of this.rets) {
      this.asm.place(label);
      this.asm.ret(value);
    }
    this.rets.clear();
  }

  private argOffset(index: number, hi: boolean): number {
    const lowFirst = this.littleEndian;
    return SECCOMP_DATA_ARGS + 8 * index + ((hi === lowFirst) ? 4 : 0);
  }

  /** Code that falls through when `c` holds and jumps to `fail` otherwise. */
  cond(c: Cond, argBits: 32 | 64, fail: Label): void {
    const a = this.asm;
    const pass = a.label();
    const width = argBits === 64 ? 64n : 32n;
    const mask = (1n << width) - 1n;
    let value = c.value & mask;
    let datum = c.valueTwo & mask;
    const lo = (v: bigint) => Number(v & 0xffffffffn);
    const hi = (v: bigint) => Number((v >> 32n) & 0xffffffffn);
    if (c.op === 'SCMP_CMP_MASKED_EQ') datum &= value; // compare (arg & mask) with (datum & mask)
    const ldLo = () => a.ldAbs(this.argOffset(c.index, false));
    const ldHi = () => a.ldAbs(this.argOffset(c.index, true));

    if (argBits === 32) {
      ldLo();
      const v = lo(value);
      switch (c.op) {
        case 'SCMP_CMP_EQ': a.jump('jeq', v, pass, fail); break;
        case 'SCMP_CMP_NE': a.jump('jne', v, pass, fail); break;
        case 'SCMP_CMP_GT': a.jump('jgt', v, pass, fail); break;
        case 'SCMP_CMP_GE': a.jump('jge', v, pass, fail); break;
        case 'SCMP_CMP_LT': a.jump('jlt', v, pass, fail); break;
        case 'SCMP_CMP_LE': a.jump('jle', v, pass, fail); break;
        case 'SCMP_CMP_MASKED_EQ':
          a.and(v);
          a.jump('jeq', lo(datum), pass, fail);
          break;
      }
      a.place(pass);
      return;
    }

    const vh = hi(value);
    const vl = lo(value);
    const low = a.label();
    switch (c.op) {
      case 'SCMP_CMP_EQ':
        ldHi(); a.jump('jeq', vh, low, fail);
        a.place(low); ldLo(); a.jump('jeq', vl, pass, fail);
        break;
      case 'SCMP_CMP_NE':
        ldHi(); a.jump('jeq', vh, low, pass);
        a.place(low); ldLo(); a.jump('jne', vl, pass, fail);
        break;
      case 'SCMP_CMP_GT':
      case 'SCMP_CMP_GE': {
        const eqHi = a.label();
        ldHi(); a.jump('jgt', vh, pass, eqHi);
        a.place(eqHi); a.jump('jeq', vh, low, fail);
        a.place(low); ldLo(); a.jump(c.op === 'SCMP_CMP_GT' ? 'jgt' : 'jge', vl, pass, fail);
        break;
      }
      case 'SCMP_CMP_LT':
      case 'SCMP_CMP_LE': {
        const eqHi = a.label();
        ldHi(); a.jump('jgt', vh, fail, eqHi);
        a.place(eqHi); a.jump('jeq', vh, low, pass);
        a.place(low); ldLo(); a.jump(c.op === 'SCMP_CMP_LT' ? 'jlt' : 'jle', vl, pass, fail);
        break;
      }
      case 'SCMP_CMP_MASKED_EQ': {
        const mh = hi(value);
        const ml = lo(value);
        if (mh !== 0) {
          ldHi(); a.and(mh); a.jump('jeq', hi(datum), low, fail);
        }
        a.place(low);
        ldLo(); a.and(ml); a.jump('jeq', lo(datum), pass, fail);
        break;
      }
    }
    a.place(pass);
  }

  /** A decision tree over sorted intervals [starts[i], starts[i+1]) → targets[i]. A must hold nr. */
  tree(starts: number[], targets: Label[]): void {
    const a = this.asm;
    // Pre-order: each internal node, then its left subtree, then its right subtree.
    const emit = (lo: number, hi: number, here: Label | null): void => {
      if (lo === hi) return;
      if (here) a.place(here);
      const mid = (lo + hi + 1) >> 1;
      const left = lo === mid - 1 ? targets[lo]! : a.label();
      const right = mid === hi ? targets[hi]! : a.label();
      a.jump('jge', starts[mid]!, right, left);
      if (lo !== mid - 1) emit(lo, mid - 1, left);
      if (mid !== hi) emit(mid, hi, right);
    };
    if (starts.length === 1) a.ja(targets[0]!);
    else emit(0, starts.length - 1, null);
  }
}

export interface SeccompCompileOptions {
  /** The host's architecture as an OCI name (default: that of this process). */
  nativeArch?: string;
  /** Prepend runc's -ENOSYS behaviour (default true). */
  enosysStub?: boolean;
  /** The config's location in messages (default "linux.seccomp"). */
  fieldPath?: string;
  /** Byte order of the target (default: this host's). */
  littleEndian?: boolean;
}

export interface CompiledSeccomp {
  /** struct sock_filter[] in the target's byte order: 8 bytes per instruction. */
  filter: Buffer;
  /** The same program, decoded. */
  instructions: SockFilter[];
  /** Number of instructions (struct sock_fprog.len). */
  length: number;
  /** Flags for seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog); see seccompFlagsFor(). */
  flags: number;
  /** True when flags include SECCOMP_FILTER_FLAG_NEW_LISTENER: seccomp() returns a listener fd. */
  newListener: boolean;
  listenerPath?: string;
  listenerMetadata?: string;
  /** The SECCOMP_RET_* value of the default action. */
  defaultAction: number;
  /** Architectures in the filter (OCI names), the native one first. */
  architectures: string[];
  /** Listed architectures keel has no syscall table for (left out: their syscalls are killed). */
  ignoredArchitectures: string[];
  /** Syscall names no architecture in the filter knows (ignored, as runc does). */
  skippedSyscalls: string[];
}

/**
 * Compiles `linux.seccomp` to a seccomp BPF program. Throws a KeelError naming the field for an
 * unknown action, operator, flag or architecture, an argument index outside 0-5, an errno outside
 * 0-65535, NOTIFY as default action or for write(2), NOTIFY without listenerPath, or a program
 * longer than the kernel accepts.
 */
export function compileSeccomp(config: LinuxSeccomp, options: SeccompCompileOptions = {}): CompiledSeccomp {
  const fp = options.fieldPath ?? 'linux.seccomp';
  const nativeArch = options.nativeArch ?? nativeSeccompArch();
  if (!ARCHES[nativeArch]) {
    throw new KeelError(`seccomp is not supported on this host architecture (${nativeArch}): keel has no syscall table for it`);
  }
  const parsed = parseConfig(config, fp, nativeArch);
  const flags = seccompFlagsFor(config, fp);
  const newListener = (flags & SECCOMP_FILTER_FLAG_NEW_LISTENER) !== 0;
  if (newListener && !config.listenerPath) {
    throw new KeelError(`${fp}.listenerPath must be set when a rule uses SCMP_ACT_NOTIFY`);
  }
  if ((flags & SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV) && !newListener) {
    throw new KeelError(`SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV in ${fp}.flags needs a rule with SCMP_ACT_NOTIFY`);
  }

  const stub = (options.enosysStub ?? true) && stubApplies(parsed.defaultAction);
  const listed = new Set<string>(config.architectures ?? []);
  const blocks: ArchBlock[] = [];
  const inFilter: string[] = [];
  const ignored: string[] = [];
  for (const oci of parsed.arches) {
    const info = ARCHES[oci];
    if (!info) {
      ignored.push(oci);
      continue;
    }
    inFilter.push(oci);
    const last = lastSyscall(info, parsed.names);
    const sub: SubArch = {
      info,
      byNr: rulesForArch(info, parsed.rules),
      enosysAbove: stub && listed.has(oci) && last > 0 ? last : undefined,
    };
    const block = blocks.find((b) => b.audit === info.audit);
    if (block) block.subs.push(sub);
    else blocks.push({ audit: info.audit, subs: [sub] });
  }
  const skipped = [...parsed.names].filter((n) => !inFilter.some((a) => syscallNumber(a, n) !== undefined
    || (a === 'SCMP_ARCH_X86' && (SOCKETCALL_CALLS[n] !== undefined || IPC_CALLS[n] !== undefined))));

  const littleEndian = options.littleEndian ?? true;
  const g = new Gen(littleEndian);
  const a = g.asm;
  a.ldAbs(SECCOMP_DATA_ARCH);
  const blockLabels = blocks.map(() => a.label());
  blocks.forEach((b, i) => {
    const next = a.label();
    a.jump('jeq', b.audit, blockLabels[i]!, next);
    a.place(next);
  });
  a.ret(BAD_ARCH);

  for (const [i, block] of blocks.entries()) {
    a.place(blockLabels[i]!);
    // Breakpoints where the outcome may change; between two of them it is constant.
    const points = new Set<number>([0, X32_SYSCALL_BIT, 0x80000000, 0xc0000000, 0xffffffff]);
    for (const sub of block.subs) {
      for (const nr of sub.byNr.keys()) {
        points.add(nr >>> 0);
        if (nr >>> 0 < 0xffffffff) points.add((nr >>> 0) + 1);
      }
      if (sub.enosysAbove !== undefined) points.add(sub.enosysAbove + 1);
    }
    const sorted = [...points].sort((x, y) => x - y);
    const starts: number[] = [];
    const outcomes: Outcome[] = [];
    for (const p of sorted) {
      const o = outcomeFor(block, p, parsed.defaultAction);
      if (outcomes.length && sameOutcome(outcomes[outcomes.length - 1]!, o)) continue;
      starts.push(p);
      outcomes.push(o);
    }
    const bodies = new Map<number, Label>();
    const targets = outcomes.map((o) => {
      if ('ret' in o) return g.retLabel(o.ret);
      const l = a.label();
      bodies.set(o.body, l);
      return l;
    });
    if (starts.length > 1) a.ldAbs(SECCOMP_DATA_NR);
    g.tree(starts, targets);

    for (const [nr, label] of bodies) {
      a.place(label);
      const sub = block.audit === AUDIT_ARCH_X86_64
        ? block.subs.find((s) => (s.info.oci === 'SCMP_ARCH_X32') === (nr >= X32_SYSCALL_BIT))!
        : block.subs[0]!;
      for (const rule of effectiveRules(sub.byNr.get(nr)!)) {
        if (rule.conds.length === 0) {
          a.ja(g.retLabel(rule.action));
          break;
        }
        const next = a.label();
        for (const c of rule.conds) g.cond(c, sub.info.argBits, next);
        a.ja(g.retLabel(rule.action));
        a.place(next);
      }
      a.ja(g.retLabel(parsed.defaultAction));
    }
    g.flushReturns();
  }

  const instructions = a.assemble();
  if (instructions.length > BPF_MAXINSNS) {
    throw new KeelError(
      `the seccomp filter for ${fp} needs ${instructions.length} BPF instructions; the kernel allows ${BPF_MAXINSNS}`,
    );
  }
  return {
    filter: encodeFilter(instructions, littleEndian),
    instructions,
    length: instructions.length,
    flags,
    newListener,
    ...(config.listenerPath ? { listenerPath: config.listenerPath } : {}),
    ...(config.listenerMetadata ? { listenerMetadata: config.listenerMetadata } : {}),
    defaultAction: parsed.defaultAction,
    architectures: inFilter,
    ignoredArchitectures: ignored,
    skippedSyscalls: skipped,
  };
}
