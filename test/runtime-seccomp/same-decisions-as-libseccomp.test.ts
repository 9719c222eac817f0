// keel's seccomp BPF must decide every syscall the way runc's filter (libseccomp + runc's -ENOSYS
// stub) does: both programs run in a BPF interpreter over many synthetic seccomp_data inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileSeccomp, syscallNumber, type LinuxSeccomp } from '../../src/runtime/seccomp/index.js';
import { runFilter, disassemble, type SeccompData } from './bpf-vm.js';
import { oracle, runcReference, runReference } from './libseccomp-ref.js';
import { containersDefaultProfile } from './containers-profile.js';
import { libseccompAvailable } from '../../src/runtime/seccomp/generate-tables.js';

// libseccomp is there when it loads (through koffi, as the reference uses it), wherever it is installed.
const skip = process.arch !== 'x64' ? 'reference comparison runs on x86_64 hosts'
  : !(await libseccompAvailable()) ? 'libseccomp.so.2 cannot be loaded (apt-get install libseccomp2)' : false;

// A deterministic PRNG so failures reproduce.
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s;
  };
  return {
    int: (n: number) => next() % n,
    pick: <T>(xs: readonly T[]): T => xs[next() % xs.length]!,
    chance: (p: number) => next() / 0x100000000 < p,
    u64: (): bigint => (BigInt(next()) << 32n) | BigInt(next()),
  };
}
type R = ReturnType<typeof rng>;

const AUDIT = { SCMP_ARCH_X86_64: 0xc000003e, SCMP_ARCH_X32: 0xc000003e, SCMP_ARCH_X86: 0x40000003, SCMP_ARCH_AARCH64: 0xc00000b7, SCMP_ARCH_ARM: 0x40000028 } as const;
const NAMES = [
  'read', 'write', 'open', 'openat', 'close', 'mmap', 'mprotect', 'clone', 'clone3', 'mkdir', 'mkdirat', 'personality',
  'socket', 'bind', 'connect', 'accept', 'accept4', 'send', 'recv', 'sendto', 'socketcall', 'shmget', 'semop', 'ipc',
  'msgsnd', 'kill', 'ptrace', 'unshare', 'setns', 'mount', 'umount2', 'reboot', 'chmod', 'fchmodat', 'futex',
  'futex_time64', 'stat64', 'mmap2', 'uselib', 'set_thread_area', 'renameat', 'io_uring_setup', 'memfd_secret',
  'set_mempolicy_home_node', 'process_madvise', 'not_a_syscall', 'fchmodat2', 'rt_sigaction', 'ioctl', 'prctl',
];
const ACTIONS = ['SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO', 'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_TRAP', 'SCMP_ACT_TRACE', 'SCMP_ACT_LOG'] as const;
const OPS = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'] as const;

function value(r: R): number {
  // JSON numbers: exact up to 2^53.
  switch (r.int(6)) {
    case 0: return r.int(8);
    case 1: return r.int(0x10000);
    case 2: return 0xffffffff - r.int(3);
    case 3: return 0x100000000 + r.int(4);
    case 4: return Number(r.u64() & ((1n << 53n) - 1n));
    default: return r.pick([0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff, 2 ** 32 * 7 + 3]);
  }
}

/** A random profile. With `singleAction`, all conditional rules of a syscall share one action. */
function randomConfig(r: R, singleAction: boolean): LinuxSeccomp {
  const defaultAction = r.pick(['SCMP_ACT_ERRNO', 'SCMP_ACT_ALLOW', 'SCMP_ACT_KILL', 'SCMP_ACT_ERRNO', 'SCMP_ACT_TRAP'] as const);
  const arches = (['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'] as const).filter(() => r.chance(0.5));
  const syscalls: NonNullable<LinuxSeccomp['syscalls']> = [];
  // name → [action, errnoRet] of its conditional rules (singleAction mode)
  const condAction = new Map<string, [string, number | undefined]>();
  const n = 1 + r.int(14);
  for (let i = 0; i < n; i++) {
    const names = [r.pick(NAMES)];
    while (r.chance(0.3)) names.push(r.pick(NAMES));
    let action: string = r.pick(ACTIONS);
    let errnoRet: number | undefined = (action === 'SCMP_ACT_ERRNO' || action === 'SCMP_ACT_TRACE') && r.chance(0.7) ? 1 + r.int(120) : undefined;
    const args: { index: number; value: number; valueTwo?: number; op: (typeof OPS)[number] }[] = [];
    if (r.chance(0.6)) {
      const k = 1 + r.int(3);
      for (let j = 0; j < k; j++) {
        const op = r.pick(OPS);
        args.push({ index: r.int(r.chance(0.3) ? 2 : 6), value: value(r), op, ...(op === 'SCMP_CMP_MASKED_EQ' || r.chance(0.2) ? { valueTwo: value(r) } : {}) });
      }
      if (singleAction) {
        const known = names.map((nm) => condAction.get(nm)).find((x) => x !== undefined);
        if (known) [action, errnoRet] = known;
        for (const nm of names) condAction.set(nm, [action, errnoRet]);
      }
    }
    syscalls.push({
      names: names as [string, ...string[]],
      action: action as (typeof ACTIONS)[number],
      ...(errnoRet !== undefined ? { errnoRet } : {}),
      ...(args.length ? { args } : {}),
    });
  }
  return {
    defaultAction,
    ...(defaultAction === 'SCMP_ACT_ERRNO' && r.chance(0.5) ? { defaultErrnoRet: r.pick([1, 38, 13]) } : {}),
    ...(arches.length ? { architectures: arches } : {}),
    syscalls,
  } as LinuxSeccomp;
}

/** Inputs that probe each rule's syscall on each arch, its argument boundaries, and random numbers. */
function inputsFor(config: LinuxSeccomp, r: R): SeccompData[] {
  const out: SeccompData[] = [];
  const archList = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'] as const;
  const values: bigint[] = [0n, 1n, 0xffffffffn, 0x100000000n, (1n << 64n) - 1n];
  for (const sc of config.syscalls ?? []) {
    for (const a of sc.args ?? []) {
      const v = BigInt(a.value);
      values.push(v, v + 1n, v - 1n < 0n ? 0n : v - 1n, v ^ 0xffffffff00000000n, BigInt(a.valueTwo ?? 0));
      values.push(v | BigInt(a.valueTwo ?? 0), BigInt(a.valueTwo ?? 0) & v);
    }
  }
  const args = (): bigint[] => Array.from({ length: 6 }, () => (r.chance(0.8) ? r.pick(values) : r.u64()) & ((1n << 64n) - 1n));
  for (const arch of archList) {
    const audit = AUDIT[arch];
    const nrs = new Set<number>([0, 1, 2, 102, 117, 0x40000000, 0x40000001, 0xffffffff, 0x80000001, 500, 1000, 0x3fffffff]);
    for (const sc of config.syscalls ?? []) {
      for (const name of sc.names) {
        const nr = syscallNumber(arch === 'SCMP_ARCH_ARM' ? 'SCMP_ARCH_X86' : arch, name);
        if (nr !== undefined) nrs.add(nr).add(nr + 1).add(nr - 1);
      }
    }
    for (let i = 0; i < 8; i++) nrs.add(r.int(460));
    for (const nr of nrs) {
      for (let i = 0; i < 6; i++) {
        const data: SeccompData = { nr: nr | 0, arch: audit, args: args() };
        // x86 socketcall/ipc: probe the call numbers in a0.
        if ((nr === 102 || nr === 117) && r.chance(0.7)) data.args[0] = BigInt(r.int(26));
        // 32-bit ABIs: the kernel zero-extends arguments.
        if (arch === 'SCMP_ARCH_X86' || arch === 'SCMP_ARCH_ARM') data.args = data.args.map((x) => x & 0xffffffffn);
        out.push(data);
      }
    }
  }
  for (let i = 0; i < 50; i++) out.push({ nr: r.int(1000), arch: r.u64() > 1n << 63n ? 0x12345 : 0xc000003e, args: args() });
  return out;
}

const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

interface Tally { inputs: number; libseccompBugs: number; keelSteps: number; libseccompSteps: number }

/**
 * keel's answer must be the rules' answer (the oracle) on every input, and libseccomp's must be too
 * except where libseccomp's own code generation is wrong; those are counted.
 */
function compare(config: LinuxSeccomp, r: R, label: string, tally: Tally): void {
  const ref = runcReference(config);
  const mine = compileSeccomp(config, { nativeArch: 'SCMP_ARCH_X86_64' });
  for (const input of inputsFor(config, r)) {
    const lib = runFilter(ref.program, input);
    const want = runReference(ref, input);
    const got = runFilter(mine.instructions, input);
    const truth = oracle(config, ref, input);
    tally.inputs++;
    tally.keelSteps += got.steps;
    tally.libseccompSteps += lib.steps;
    const where = () =>
      `${label}: arch ${hex(input.arch)} nr ${input.nr >>> 0} args [${input.args.map((a) => '0x' + a.toString(16)).join(', ')}]: ` +
      `keel ${hex(got.ret)}, runc/libseccomp ${hex(want)}, rules say ${[...truth.all].map(hex).join('|')}\n` +
      `config: ${JSON.stringify(config)}\nkeel program:\n${disassemble(mine.instructions)}`;
    if (got.ret !== truth.first) assert.fail(where());
    if (!truth.all.has(want)) tally.libseccompBugs++;
    else if (truth.all.size === 1 && want !== got.ret) assert.fail(where());
  }
}

test('random profiles: keel returns the action runc/libseccomp returns for every probed syscall', { skip }, () => {
  const r = rng(20240601);
  const tally: Tally = { inputs: 0, libseccompBugs: 0, keelSteps: 0, libseccompSteps: 0 };
  for (let i = 0; i < 150; i++) compare(randomConfig(r, true), r, `profile #${i}`, tally);
  assert.ok(tally.inputs > 50000, `only ${tally.inputs} inputs compared`);
  // libseccomp mis-compiles a few sibling 64-bit comparisons; anything more means the oracle is off.
  assert.ok(tally.libseccompBugs < tally.inputs / 200, `libseccomp disagreed with the rules on ${tally.libseccompBugs}/${tally.inputs} inputs`);
  console.log(`# ${tally.inputs} inputs; libseccomp mis-compiled ${tally.libseccompBugs}; BPF steps keel ${tally.keelSteps}, libseccomp ${tally.libseccompSteps}`);
});

test('overlapping conditional rules with different actions: keel takes the first in config order, libseccomp one of them', { skip }, () => {
  const r = rng(777);
  const tally: Tally = { inputs: 0, libseccompBugs: 0, keelSteps: 0, libseccompSteps: 0 };
  for (let i = 0; i < 60; i++) compare(randomConfig(r, false), r, `profile #${i}`, tally);
  assert.ok(tally.libseccompBugs < tally.inputs / 100, `libseccomp disagreed with the rules on ${tally.libseccompBugs}/${tally.inputs} inputs`);
});

test("containers-common's default profile (podman's): same decisions as runc/libseccomp, a fraction of the BPF", { skip }, (t) => {
  const profile = containersDefaultProfile();
  if (!profile) return t.skip('containers-common seccomp.json not installed');
  const r = rng(99);
  const tally: Tally = { inputs: 0, libseccompBugs: 0, keelSteps: 0, libseccompSteps: 0 };
  for (let i = 0; i < 3; i++) compare(profile, r, `containers profile pass ${i}`, tally);
  assert.equal(tally.libseccompBugs, 0);
  const mine = compileSeccomp(profile, { nativeArch: 'SCMP_ARCH_X86_64' });
  const theirs = runcReference(profile).program;
  assert.ok(mine.length < theirs.length, `keel ${mine.length} instructions, libseccomp ${theirs.length}`);
  assert.ok(tally.keelSteps < tally.libseccompSteps, `keel ${tally.keelSteps} steps, libseccomp ${tally.libseccompSteps}`);
  console.log(`# containers profile: keel ${mine.length} instructions, libseccomp ${theirs.length}; ${tally.inputs} inputs, steps keel ${tally.keelSteps} libseccomp ${tally.libseccompSteps}`);
});
