// Test helper: builds the filter runc would build for an OCI seccomp config — libseccomp (through
// koffi) for the rules, and runc's -ENOSYS stub modelled on top — so keel's compiler can be compared
// with it input by input.
import {
  ScmpFilter, SCMP_CMP, SCMP_FLTATR, NR_SCMP_ERROR, scmpArchResolveName, scmpSyscallResolveNameArch,
} from '../../src/runtime/sys/seccomp.js';
import { decodeFilter, type SockFilter } from '../../src/runtime/seccomp/bpf.js';
import { seccompActionValue, type LinuxSeccomp } from '../../src/runtime/seccomp/index.js';
import { runFilter, type SeccompData } from './bpf-vm.js';

const OP: Record<string, number> = {
  SCMP_CMP_NE: SCMP_CMP.NE, SCMP_CMP_LT: SCMP_CMP.LT, SCMP_CMP_LE: SCMP_CMP.LE, SCMP_CMP_EQ: SCMP_CMP.EQ,
  SCMP_CMP_GE: SCMP_CMP.GE, SCMP_CMP_GT: SCMP_CMP.GT, SCMP_CMP_MASKED_EQ: SCMP_CMP.MASKED_EQ,
};

/** libseccomp's arch token for an OCI name (SCMP_ARCH_X86_64 → "x86_64"). */
export function scmpArch(oci: string): number {
  const token = scmpArchResolveName(oci.replace(/^SCMP_ARCH_/, '').toLowerCase());
  if (!token) throw new Error(`libseccomp does not know ${oci}`);
  return token;
}

const AUDIT_X86_64 = 0xc000003e;

export interface Reference {
  program: SockFilter[];
  /** runc's stub: per audit arch, [x86_64-or-only largest, x32 largest]. */
  stub: Map<number, { main?: number; x32?: number }> | null;
  /** libseccomp refused a rule (runc would fail to start the container). */
  ruleErrors: string[];
}

/** What runc 1.1 + libseccomp produce for `config` on an x86_64 host. */
export function runcReference(config: LinuxSeccomp): Reference {
  const def = seccompActionValue(config.defaultAction, config.defaultErrnoRet, 'ref');
  const f = new ScmpFilter(def);
  const ruleErrors: string[] = [];
  try {
    for (const arch of config.architectures ?? []) f.addArch(scmpArch(arch));
    // runc's configs hold one syscall entry per name; above 32 it asks for libseccomp's binary tree.
    const names = (config.syscalls ?? []).reduce((n, sc) => n + sc.names.length, 0);
    if (names > 32) f.setAttr(SCMP_FLTATR.CTL_OPTIMIZE, 2);
    const native = scmpArch('SCMP_ARCH_X86_64');
    for (const sc of config.syscalls ?? []) {
      const act = seccompActionValue(sc.action, sc.errnoRet, 'ref');
      for (const name of sc.names) {
        if (act === def) continue;
        const nr = scmpSyscallResolveNameArch(native, name);
        if (nr === NR_SCMP_ERROR) continue;
        const conds = (sc.args ?? []).map((a) => ({
          arg: a.index,
          op: OP[a.op]!,
          datumA: BigInt(a.value),
          datumB: BigInt(a.valueTwo ?? 0),
        }));
        const counts = new Map<number, number>();
        for (const c of conds) counts.set(c.arg, (counts.get(c.arg) ?? 0) + 1);
        const groups = [...counts.values()].some((n) => n > 1) ? conds.map((c) => [c]) : [conds];
        for (const g of groups) {
          const rc = f.addRule(act, nr, g);
          if (rc < 0) ruleErrors.push(`${name}: ${rc}`);
        }
      }
    }
    const program = decodeFilter(f.exportBpf());
    return { program, stub: runcStub(config, def), ruleErrors };
  } finally {
    f.release();
  }
}

function runcStub(config: LinuxSeccomp, def: number): Reference['stub'] {
  const kind = (def & 0xffff0000) >>> 0;
  if (kind === 0x7fff0000 || kind === 0x7ffc0000 || kind === 0x7ff00000) return null;
  if (def === 0x50026) return null;
  const stub = new Map<number, { main?: number; x32?: number }>();
  for (const oci of config.architectures ?? []) {
    const token = scmpArch(oci);
    let largest = 0;
    for (const sc of config.syscalls ?? []) {
      for (const name of sc.names) {
        const nr = scmpSyscallResolveNameArch(token, name);
        if (nr > largest) largest = nr;
      }
    }
    if (largest === 0) continue;
    const audit = oci === 'SCMP_ARCH_X32' ? AUDIT_X86_64 : token;
    const entry = stub.get(audit) ?? {};
    if (oci === 'SCMP_ARCH_X32') entry.x32 = largest;
    else entry.main = largest;
    stub.set(audit, entry);
  }
  return stub;
}

/** Runs runc's stub, then libseccomp's filter. */
export function runReference(ref: Reference, input: SeccompData): number {
  const s = ref.stub?.get(input.arch >>> 0);
  if (s) {
    const nr = input.nr >>> 0;
    const bit30 = (nr & 0x40000000) !== 0;
    if ((input.arch >>> 0) === AUDIT_X86_64) {
      const last = bit30 ? s.x32 : s.main;
      if (last !== undefined && nr > last) return 0x50026;
    } else if (s.main !== undefined && nr > s.main) {
      return 0x50026;
    }
  }
  return runFilter(ref.program, input).ret;
}

// ---------------------------------------------------------------------------------------------
// The documented rule semantics evaluated directly (no BPF), with syscall numbers from libseccomp.
// libseccomp 2.5.4 has code-generation bugs (it reuses the accumulator across sibling 64-bit
// comparisons), so where its BPF and this oracle differ the oracle is what the rules say.

import { scmpSyscallResolveNumArch } from '../../src/runtime/sys/seccomp.js';

const SOCKETCALL: Record<string, number> = {
  socket: 1, bind: 2, connect: 3, listen: 4, accept: 5, getsockname: 6, getpeername: 7, socketpair: 8,
  send: 9, recv: 10, sendto: 11, recvfrom: 12, shutdown: 13, setsockopt: 14, getsockopt: 15, sendmsg: 16,
  recvmsg: 17, accept4: 18, recvmmsg: 19, sendmmsg: 20,
};
const IPC: Record<string, number> = {
  semop: 1, semget: 2, semctl: 3, semtimedop: 4, msgsnd: 11, msgrcv: 12, msgget: 13, msgctl: 14,
  shmat: 21, shmdt: 22, shmget: 23, shmctl: 24,
};

const numberCache = new Map<string, Map<string, number>>();
/** name → real syscall number on an ABI, from libseccomp's number → name table. */
function libseccompNumbers(oci: string): Map<string, number> {
  let m = numberCache.get(oci);
  if (m) return m;
  m = new Map();
  const token = scmpArch(oci);
  const base = oci === 'SCMP_ARCH_X32' ? 0x40000000 : 0;
  for (let nr = base; nr < base + 1024; nr++) {
    const name = scmpSyscallResolveNumArch(token, nr);
    if (name && !m.has(name)) m.set(name, nr);
  }
  numberCache.set(oci, m);
  return m;
}

const AUDIT_OF: Record<string, number> = {
  SCMP_ARCH_X86_64: 0xc000003e, SCMP_ARCH_X32: 0xc000003e, SCMP_ARCH_X86: 0x40000003,
  SCMP_ARCH_AARCH64: 0xc00000b7, SCMP_ARCH_ARM: 0x40000028,
};
const BITS32 = new Set(['SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_ARM']);

interface OracleRule { action: number; conds: { index: number; op: string; value: bigint; two: bigint }[] }

/** Every action the rules allow for `input` (one, unless overlapping conditional rules differ). */
export function oracle(config: LinuxSeccomp, ref: Reference, input: SeccompData): { first: number; all: Set<number> } {
  const one = (x: number) => ({ first: x, all: new Set([x]) });
  const s = ref.stub?.get(input.arch >>> 0);
  const nr = input.nr >>> 0;
  if (s) {
    const last = (input.arch >>> 0) === AUDIT_X86_64 ? ((nr & 0x40000000) ? s.x32 : s.main) : s.main;
    if (last !== undefined && nr > last) return one(0x50026);
  }
  const def = seccompActionValue(config.defaultAction, config.defaultErrnoRet, 'oracle');
  const arches = new Set(['SCMP_ARCH_X86_64', ...(config.architectures ?? [])]);
  const abis = [...arches].filter((a) => AUDIT_OF[a] === (input.arch >>> 0));
  if (abis.length === 0) return one(0);
  let abi: string;
  if ((input.arch >>> 0) === AUDIT_X86_64) {
    const x32 = arches.has('SCMP_ARCH_X32');
    if (!x32 && nr >= 0x40000000 && nr !== 0xffffffff) return one(0);
    abi = x32 && nr >= 0x40000000 ? 'SCMP_ARCH_X32' : 'SCMP_ARCH_X86_64';
  } else {
    abi = abis[0]!;
  }
  const numbers = libseccompNumbers(abi);
  const rules: OracleRule[] = [];
  for (const sc of config.syscalls ?? []) {
    const action = seccompActionValue(sc.action, sc.errnoRet, 'oracle');
    if (action === def) continue;
    const conds = (sc.args ?? []).map((a) => ({ index: a.index, op: a.op, value: BigInt(a.value), two: BigInt(a.valueTwo ?? 0) }));
    const split = new Set(conds.map((c) => c.index)).size !== conds.length;
    for (const name of sc.names) {
      if (numbers.get(name) === nr) {
        if (split) for (const c of conds) rules.push({ action, conds: [c] });
        else rules.push({ action, conds });
      }
      const call = abi === 'SCMP_ARCH_X86' ? (nr === 102 ? SOCKETCALL[name] : nr === 117 ? IPC[name] : undefined) : undefined;
      if (call !== undefined) rules.push({ action, conds: [{ index: 0, op: 'SCMP_CMP_EQ', value: BigInt(call), two: 0n }] });
    }
  }
  const uncond = rules.find((r) => r.conds.length === 0);
  if (uncond) return one(uncond.action);
  const mask = BITS32.has(abi) ? 0xffffffffn : (1n << 64n) - 1n;
  const holds = (c: OracleRule['conds'][number]): boolean => {
    const a = input.args[c.index]! & mask;
    const v = c.value & mask;
    switch (c.op) {
      case 'SCMP_CMP_EQ': return a === v;
      case 'SCMP_CMP_NE': return a !== v;
      case 'SCMP_CMP_GT': return a > v;
      case 'SCMP_CMP_GE': return a >= v;
      case 'SCMP_CMP_LT': return a < v;
      case 'SCMP_CMP_LE': return a <= v;
      case 'SCMP_CMP_MASKED_EQ': return (a & v) === (c.two & mask & v);
      default: throw new Error(`op ${c.op}`);
    }
  };
  const matching = rules.filter((r) => r.conds.every(holds)).map((r) => r.action);
  return matching.length ? { first: matching[0]!, all: new Set(matching) } : one(def);
}
