// Device access rules (linux.resources.devices): the cgroup v1 semantics, reproduced by an emulator
// so that both back ends enforce the same thing — v1 through devices.allow/devices.deny, v2 through a
// BPF_PROG_TYPE_CGROUP_DEVICE program generated here.
//
// Like runc, the list is applied starting from "deny everything"; an "a" rule resets the state to
// allow-all (allow) or deny-all (deny); other rules add exceptions to the current default or take
// access away from an exception with exactly the same type and numbers (the kernel's v1 behaviour).
import { KeelError } from '../../util/errors.js';
import type { Linux } from '../../spec/index.js';

export type OciDeviceRule = NonNullable<NonNullable<Linux['resources']>['devices']>[number];

/** Access bits as the kernel counts them. */
export const ACC_MKNOD = 1;
export const ACC_READ = 2;
export const ACC_WRITE = 4;
const ACC_ALL = 7;

export interface DeviceRule {
  allow: boolean;
  type: 'a' | 'b' | 'c';
  /** -1 = any. */
  major: number;
  minor: number;
  /** ACC_* bits. */
  access: number;
}

export interface DeviceException {
  type: 'b' | 'c';
  major: number;
  minor: number;
  access: number;
}

export function accessBits(access: string | undefined, field: string): number {
  if (access === undefined || access === '') return ACC_ALL;
  let bits = 0;
  for (const ch of access) {
    if (ch === 'r') bits |= ACC_READ;
    else if (ch === 'w') bits |= ACC_WRITE;
    else if (ch === 'm') bits |= ACC_MKNOD;
    else throw new KeelError(`invalid device access ${JSON.stringify(access)} in ${field} (expected letters from "rwm")`);
  }
  return bits;
}

export function accessString(bits: number): string {
  return `${bits & ACC_READ ? 'r' : ''}${bits & ACC_WRITE ? 'w' : ''}${bits & ACC_MKNOD ? 'm' : ''}`;
}

function number(n: number | undefined | null, field: string): number {
  if (n === undefined || n === null || n === -1) return -1;
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new KeelError(`invalid device number ${n} in ${field}`);
  return n;
}

/** Validates OCI device cgroup rules. */
export function parseDeviceRules(list: readonly OciDeviceRule[], field: string): DeviceRule[] {
  return list.map((d, i) => {
    const at = `${field}[${i}]`;
    if (!d || typeof d.allow !== 'boolean') throw new KeelError(`${at}.allow must be true or false`);
    const type = d.type ?? 'a';
    if (type !== 'a' && type !== 'b' && type !== 'c') {
      throw new KeelError(`invalid device type ${JSON.stringify(d.type)} in ${at}.type (expected "a", "b" or "c")`);
    }
    return { allow: d.allow, type, major: number(d.major, `${at}.major`), minor: number(d.minor, `${at}.minor`), access: accessBits(d.access, `${at}.access`) };
  });
}

/** The device cgroup state rules lead to: a default and the exceptions to it. */
export class DeviceEmulator {
  defaultAllow = false;
  exceptions: DeviceException[] = [];

  static fromRules(rules: readonly DeviceRule[]): DeviceEmulator {
    const e = new DeviceEmulator();
    for (const r of rules) e.apply(r);
    return e;
  }

  apply(rule: DeviceRule): void {
    if (rule.type === 'a') {
      // The kernel treats any "a" line as "everything": reset.
      this.defaultAllow = rule.allow;
      this.exceptions = [];
      return;
    }
    const same = (x: DeviceException) => x.type === rule.type && x.major === rule.major && x.minor === rule.minor;
    if (rule.allow === this.defaultAllow) {
      // Take access away from the exception with exactly these numbers.
      for (const x of this.exceptions) if (same(x)) x.access &= ~rule.access;
      this.exceptions = this.exceptions.filter((x) => x.access !== 0);
      return;
    }
    const found = this.exceptions.find(same);
    if (found) found.access |= rule.access;
    else if (rule.access) this.exceptions.push({ type: rule.type, major: rule.major, minor: rule.minor, access: rule.access });
  }

  /** Whether an access (ACC_* bits) to a device is allowed, as the v1 kernel decides it. */
  allows(type: 'b' | 'c', major: number, minor: number, access: number): boolean {
    const matches = (x: DeviceException) =>
      x.type === type && (x.major === -1 || x.major === major) && (x.minor === -1 || x.minor === minor);
    if (this.defaultAllow) {
      // Denied by any exception that covers part of the access.
      return !this.exceptions.some((x) => matches(x) && (x.access & access) !== 0);
    }
    // Allowed by one exception that covers all of it.
    return this.exceptions.some((x) => matches(x) && (access & ~x.access) === 0);
  }

  /** The state as devices.list prints it in deny-by-default mode ("c 1:3 rwm" lines). */
  listLines(): string[] {
    if (this.defaultAllow) return ['a *:* rwm'];
    return this.exceptions.map((x) => v1Line(x.type, x.major, x.minor, x.access));
  }
}

export function v1Line(type: string, major: number, minor: number, access: number): string {
  const n = (v: number) => (v === -1 ? '*' : String(v));
  return `${type} ${n(major)}:${n(minor)} ${accessString(access)}`;
}

/** Parses devices.list into an emulator (deny-by-default state, or allow-all). */
export function emulatorFromList(text: string): DeviceEmulator {
  const e = new DeviceEmulator();
  for (const line of text.split('\n')) {
    const m = /^([abc]) (\*|\d+):(\*|\d+) ([rwm]+)$/.exec(line.trim());
    if (!m) continue;
    const num = (s: string) => (s === '*' ? -1 : Number(s));
    e.apply({ allow: true, type: m[1] as 'a' | 'b' | 'c', major: num(m[2]!), minor: num(m[3]!), access: accessBits(m[4], 'devices.list') });
  }
  return e;
}

export interface V1Write {
  file: 'devices.allow' | 'devices.deny';
  line: string;
}

/**
 * The writes that take a v1 devices cgroup from `current` (its devices.list, if known) to `target`,
 * never passing through a state that allows more than both (except when the target allows all).
 */
export function v1DeviceWrites(current: DeviceEmulator | undefined, target: DeviceEmulator): V1Write[] {
  const out: V1Write[] = [];
  const key = (x: DeviceException) => `${x.type} ${x.major}:${x.minor}`;
  if (current && !current.defaultAllow && !target.defaultAllow) {
    // Both deny by default: remove the access the target lacks, then add what it has.
    const want = new Map(target.exceptions.map((x) => [key(x), x]));
    for (const x of current.exceptions) {
      const keep = want.get(key(x))?.access ?? 0;
      const drop = x.access & ~keep;
      if (drop) out.push({ file: 'devices.deny', line: v1Line(x.type, x.major, x.minor, drop) });
    }
    const have = new Map(current.exceptions.map((x) => [key(x), x]));
    for (const x of target.exceptions) {
      const add = x.access & ~(have.get(key(x))?.access ?? 0);
      if (add) out.push({ file: 'devices.allow', line: v1Line(x.type, x.major, x.minor, add) });
    }
    return out;
  }
  if (target.defaultAllow) {
    out.push({ file: 'devices.allow', line: 'a *:* rwm' });
    for (const x of target.exceptions) out.push({ file: 'devices.deny', line: v1Line(x.type, x.major, x.minor, x.access) });
  } else {
    out.push({ file: 'devices.deny', line: 'a *:* rwm' });
    for (const x of target.exceptions) out.push({ file: 'devices.allow', line: v1Line(x.type, x.major, x.minor, x.access) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// cgroup v2: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE. Its context is
// struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; } with
// access_type = (access << 16) | type, type BPF_DEVCG_DEV_BLOCK (1) or BPF_DEVCG_DEV_CHAR (2).
// It returns 1 to allow, 0 to deny.

const BPF_DEVCG_DEV_BLOCK = 1;
const BPF_DEVCG_DEV_CHAR = 2;

/** One eBPF instruction: struct bpf_insn { u8 code; u8 dst:4, src:4; s16 off; s32 imm; }. */
export interface EbpfInsn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

const LDXW = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV32_REG = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const MOV64_IMM = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND32_IMM = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_IMM = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const JNE_IMM = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_IMM = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JNE_REG = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT = 0x95; // BPF_JMP | BPF_EXIT

const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5;
const ins = (code: number, dst: number, src: number, off: number, imm: number): EbpfInsn => ({ code, dst, src, off, imm });

/** The device-filter program for an emulator state. */
export function deviceFilterInstructions(state: DeviceEmulator): EbpfInsn[] {
  const out: EbpfInsn[] = [
    ins(LDXW, R2, R1, 0, 0), // r2 = ctx->access_type
    ins(MOV32_REG, R3, R2, 0, 0), // r3 = r2
    ins(AND32_IMM, R2, 0, 0, 0xffff), // r2 = type
    ins(RSH32_IMM, R3, 0, 0, 16), // r3 = access
    ins(LDXW, R4, R1, 4, 0), // r4 = major
    ins(LDXW, R5, R1, 8, 0), // r5 = minor
  ];
  const hit = state.defaultAllow ? 0 : 1;
  for (const x of state.exceptions) {
    const block: EbpfInsn[] = [];
    // Each test jumps to the end of the block (filled in below) when the exception does not apply.
    block.push(ins(JNE_IMM, R2, 0, 0, x.type === 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR));
    if (state.defaultAllow) {
      // Deny when the request shares any access with the exception.
      if (x.access !== ACC_ALL) {
        block.push(ins(MOV32_REG, R1, R3, 0, 0), ins(AND32_IMM, R1, 0, 0, x.access), ins(JEQ_IMM, R1, 0, 0, 0));
      }
    } else if (x.access !== ACC_ALL) {
      // Allow when the exception covers all of the request.
      block.push(ins(MOV32_REG, R1, R3, 0, 0), ins(AND32_IMM, R1, 0, 0, x.access), ins(JNE_REG, R1, R3, 0, 0));
    }
    if (x.major !== -1) block.push(ins(JNE_IMM, R4, 0, 0, x.major | 0));
    if (x.minor !== -1) block.push(ins(JNE_IMM, R5, 0, 0, x.minor | 0));
    block.push(ins(MOV64_IMM, R0, 0, 0, hit), ins(EXIT, 0, 0, 0, 0));
    // Jumps skip to the instruction after the block.
    block.forEach((b, i) => {
      if (b.code === JNE_IMM || b.code === JEQ_IMM || b.code === JNE_REG) b.off = block.length - (i + 1);
    });
    out.push(...block);
  }
  out.push(ins(MOV64_IMM, R0, 0, 0, state.defaultAllow ? 1 : 0), ins(EXIT, 0, 0, 0, 0));
  return out;
}

/** Encodes eBPF instructions (little-endian hosts). */
export function encodeEbpf(prog: readonly EbpfInsn[]): Buffer {
  const buf = Buffer.alloc(prog.length * 8);
  prog.forEach((p, i) => {
    buf[i * 8] = p.code;
    buf[i * 8 + 1] = (p.dst & 0xf) | ((p.src & 0xf) << 4);
    buf.writeInt16LE(p.off, i * 8 + 2);
    buf.writeInt32LE(p.imm | 0, i * 8 + 4);
  });
  return buf;
}

/**
 * The device rules runc adds after the container's own (its AllowedDevices): mknod of any device,
 * /dev/null, /dev/random, /dev/full, /dev/tty, /dev/zero, /dev/urandom, /dev/pts/*, /dev/ptmx and
 * /dev/net/tun. A runtime that wants runc's behaviour appends these to linux.resources.devices
 * (plus an allow rule for each linux.devices entry).
 */
export function runcDefaultDeviceRules(): OciDeviceRule[] {
  const c = (major: number, minor: number | undefined, access = 'rwm'): OciDeviceRule => ({
    allow: true, type: 'c', major, ...(minor === undefined ? {} : { minor }), access,
  });
  return [
    { allow: true, type: 'c', access: 'm' },
    { allow: true, type: 'b', access: 'm' },
    c(1, 3), c(1, 8), c(1, 7), c(5, 0), c(1, 5), c(1, 9), c(136, undefined), c(5, 2), c(10, 200),
  ];
}
