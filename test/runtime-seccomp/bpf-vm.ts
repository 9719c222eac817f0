// Test helper: a classic-BPF interpreter and disassembler for seccomp programs, written from the
// instruction set in linux/filter.h (and the kernel's seccomp_check_filter rules), so the programs
// keel and libseccomp generate can be run over synthetic seccomp_data.
import {
  BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_DIV, BPF_IMM, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP,
  BPF_JSET, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MUL, BPF_NEG, BPF_OR, BPF_RET,
  BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_W, BPF_X, BPF_XOR, type SockFilter,
} from '../../src/runtime/seccomp/bpf.js';

export interface SeccompData {
  nr: number;
  arch: number;
  ip?: bigint;
  args: bigint[];
}

/** The 64 bytes of struct seccomp_data (little endian). */
export function packSeccompData(d: SeccompData): DataView {
  const buf = new DataView(new ArrayBuffer(64));
  buf.setInt32(0, d.nr | 0, true);
  buf.setUint32(4, d.arch >>> 0, true);
  buf.setBigUint64(8, d.ip ?? 0n, true);
  for (let i = 0; i < 6; i++) buf.setBigUint64(16 + 8 * i, BigInt.asUintN(64, d.args[i] ?? 0n), true);
  return buf;
}

export interface RunResult {
  ret: number;
  steps: number;
}

/** Runs a seccomp filter over one input; throws on anything the kernel would reject at run time. */
export function runFilter(prog: readonly SockFilter[], data: SeccompData | DataView): RunResult {
  const mem = data instanceof DataView ? data : packSeccompData(data);
  let A = 0;
  let X = 0;
  const M = new Uint32Array(16);
  let pc = 0;
  let steps = 0;
  while (pc < prog.length) {
    const ins = prog[pc]!;
    steps++;
    const cls = ins.code & 0x07;
    const k = ins.k >>> 0;
    switch (cls) {
      case BPF_LD: {
        const mode = ins.code & 0xe0;
        if (mode === BPF_ABS) {
          if ((ins.code & 0x18) !== BPF_W || k % 4 !== 0 || k + 4 > 64) throw new Error(`bad load at ${pc}`);
          A = mem.getUint32(k, true);
        } else if (mode === BPF_IMM) A = k;
        else if (mode === BPF_MEM) A = M[k]!;
        else if (mode === BPF_LEN) A = 64;
        else throw new Error(`unsupported ld mode at ${pc}`);
        break;
      }
      case BPF_LDX: {
        const mode = ins.code & 0xe0;
        if (mode === BPF_IMM) X = k;
        else if (mode === BPF_MEM) X = M[k]!;
        else if (mode === BPF_LEN) X = 64;
        else throw new Error(`unsupported ldx mode at ${pc}`);
        break;
      }
      case BPF_ST:
        M[k] = A;
        break;
      case BPF_STX:
        M[k] = X;
        break;
      case BPF_ALU: {
        const src = (ins.code & BPF_X) ? X : k;
        switch (ins.code & 0xf0) {
          case BPF_ADD: A = (A + src) >>> 0; break;
          case BPF_SUB: A = (A - src) >>> 0; break;
          case BPF_MUL: A = Number((BigInt(A) * BigInt(src)) & 0xffffffffn); break;
          case BPF_DIV: if (src === 0) return { ret: 0, steps }; A = Math.floor(A / src) >>> 0; break;
          case BPF_MOD: if (src === 0) return { ret: 0, steps }; A = (A % src) >>> 0; break;
          case BPF_OR: A = (A | src) >>> 0; break;
          case BPF_AND: A = (A & src) >>> 0; break;
          case BPF_XOR: A = (A ^ src) >>> 0; break;
          case BPF_LSH: A = src >= 32 ? 0 : (A << src) >>> 0; break;
          case BPF_RSH: A = src >= 32 ? 0 : A >>> src; break;
          case BPF_NEG: A = (-A) >>> 0; break;
          default: throw new Error(`bad alu op at ${pc}`);
        }
        break;
      }
      case BPF_JMP: {
        const op = ins.code & 0xf0;
        if (op === BPF_JA) {
          pc += 1 + k;
          continue;
        }
        const src = (ins.code & BPF_X) ? X : k;
        let cond: boolean;
        if (op === BPF_JEQ) cond = A === src;
        else if (op === BPF_JGT) cond = A > src;
        else if (op === BPF_JGE) cond = A >= src;
        else if (op === BPF_JSET) cond = (A & src) !== 0;
        else throw new Error(`bad jump at ${pc}`);
        pc += 1 + (cond ? ins.jt : ins.jf);
        continue;
      }
      case BPF_RET:
        return { ret: ((ins.code & 0x18) === BPF_A ? A : k) >>> 0, steps };
      case BPF_MISC:
        if (ins.code & 0x80) A = X; else X = A;
        break;
      default:
        throw new Error(`bad instruction class at ${pc}`);
    }
    pc++;
  }
  throw new Error('BPF program fell off its end');
}

const JOPS: Record<number, string> = { [BPF_JEQ]: 'jeq', [BPF_JGT]: 'jgt', [BPF_JGE]: 'jge', [BPF_JSET]: 'jset' };

/** One line per instruction, for debugging. */
export function disassemble(prog: readonly SockFilter[]): string {
  return prog
    .map((ins, pc) => {
      const k = `0x${(ins.k >>> 0).toString(16)}`;
      const cls = ins.code & 0x07;
      let text: string;
      if (cls === BPF_LD && (ins.code & 0xe0) === BPF_ABS) text = `ld [${ins.k}]`;
      else if (cls === BPF_ALU && (ins.code & 0xf0) === BPF_AND) text = `and #${k}`;
      else if (cls === BPF_RET) text = `ret #${k}`;
      else if (cls === BPF_JMP && (ins.code & 0xf0) === BPF_JA) text = `ja ${pc + 1 + ins.k}`;
      else if (cls === BPF_JMP) text = `${JOPS[ins.code & 0xf0] ?? '?'} #${k} ${pc + 1 + ins.jt} ${pc + 1 + ins.jf}`;
      else text = `code=0x${ins.code.toString(16)} k=${k}`;
      return `${String(pc).padStart(4)}: ${text}`;
    })
    .join('\n');
}
