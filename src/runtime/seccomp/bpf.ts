// A small classic-BPF assembler: instructions with symbolic forward jumps, resolved back to front
// so that conditional jumps longer than 255 instructions get `ja` trampolines automatically.

// Instruction classes, sizes, modes, operations (linux/filter.h, linux/bpf_common.h).
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;
export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;
export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_LEN = 0x80;
export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_MOD = 0x90;
export const BPF_XOR = 0xa0;
export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;
export const BPF_K = 0x00;
export const BPF_X = 0x08;
export const BPF_A = 0x10;
export const BPF_TAX = 0x00;
export const BPF_TXA = 0x80;

/** One struct sock_filter. */
export interface SockFilter {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

/** The size of one struct sock_filter in bytes. */
export const SOCK_FILTER_SIZE = 8;

/** A jump target; place it with Assembler.place(). */
export interface Label {
  readonly id: number;
}

type Item =
  | { t: 'op'; code: number; k: number }
  | { t: 'jcc'; code: number; k: number; jt: Label; jf: Label }
  | { t: 'ja'; target: Label }
  | { t: 'label'; label: Label };

/** Conditional jump kinds. `jne`, `jlt`, `jle` are the swapped forms of jeq, jge, jgt. */
export type JumpCond = 'jeq' | 'jne' | 'jgt' | 'jge' | 'jlt' | 'jle' | 'jset';

export class Assembler {
  private items: Item[] = [];
  private nextLabel = 0;

  label(): Label {
    return { id: this.nextLabel++ };
  }

  /** Places `label` at the next instruction. */
  place(label: Label): void {
    this.items.push({ t: 'label', label });
  }

  /** A = 32-bit word at `offset` of the input (seccomp_data). */
  ldAbs(offset: number): void {
    this.items.push({ t: 'op', code: BPF_LD | BPF_W | BPF_ABS, k: offset });
  }

  /** A &= k. */
  and(k: number): void {
    this.items.push({ t: 'op', code: BPF_ALU | BPF_AND | BPF_K, k: k >>> 0 });
  }

  ret(k: number): void {
    this.items.push({ t: 'op', code: BPF_RET | BPF_K, k: k >>> 0 });
  }

  ja(target: Label): void {
    this.items.push({ t: 'ja', target });
  }

  /** if (A <cond> k) goto ifTrue else goto ifFalse. */
  jump(cond: JumpCond, k: number, ifTrue: Label, ifFalse: Label): void {
    const [code, t, f] =
      cond === 'jeq' ? [BPF_JEQ, ifTrue, ifFalse]
      : cond === 'jne' ? [BPF_JEQ, ifFalse, ifTrue]
      : cond === 'jgt' ? [BPF_JGT, ifTrue, ifFalse]
      : cond === 'jge' ? [BPF_JGE, ifTrue, ifFalse]
      : cond === 'jlt' ? [BPF_JGE, ifFalse, ifTrue]
      : cond === 'jle' ? [BPF_JGT, ifFalse, ifTrue]
      : [BPF_JSET, ifTrue, ifFalse];
    this.items.push({ t: 'jcc', code: BPF_JMP | code | BPF_K, k: k >>> 0, jt: t, jf: f });
  }

  /** Number of items queued (not the final instruction count: trampolines may be added). */
  get size(): number {
    return this.items.length;
  }

  /** Resolves labels and returns the program. Every jump must go forward. */
  assemble(): SockFilter[] {
    // Built back to front: `out` holds the tail of the program, reversed. A label's position is
    // out.length when it was reached, so a jump emitted when out.length == n to a label at p skips
    // n - p instructions.
    const out: SockFilter[] = [];
    const pos = new Map<number, number>();
    const where = (l: Label): number => {
      const p = pos.get(l.id);
      if (p === undefined) throw new Error(`BPF assembler: label ${l.id} is not placed after its jump`);
      return p;
    };
    for (let i = this.items.length - 1; i >= 0; i--) {
      const it = this.items[i]!;
      switch (it.t) {
        case 'label':
          pos.set(it.label.id, out.length);
          break;
        case 'op':
          out.push({ code: it.code, jt: 0, jf: 0, k: it.k });
          break;
        case 'ja': {
          const k = out.length - where(it.target);
          if (k !== 0) out.push({ code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k }); // `ja +0` is a no-op
          break;
        }
        case 'jcc': {
          let t = where(it.jt);
          let f = where(it.jf);
          const far = (p: number) => out.length - p > 255;
          const trampoline = (p: number): number => {
            out.push({ code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k: out.length - p });
            return out.length;
          };
          if (far(f)) f = trampoline(f);
          if (far(t)) t = trampoline(t);
          if (far(f)) f = trampoline(f);
          out.push({ code: it.code, jt: out.length - t, jf: out.length - f, k: it.k });
          break;
        }
      }
    }
    return out.reverse();
  }
}

/** Packs instructions into the byte layout of struct sock_filter[] (host byte order by default). */
export function encodeFilter(program: readonly SockFilter[], littleEndian = true): Buffer {
  const buf = Buffer.alloc(program.length * SOCK_FILTER_SIZE);
  program.forEach((ins, i) => {
    const o = i * SOCK_FILTER_SIZE;
    if (littleEndian) {
      buf.writeUInt16LE(ins.code, o);
      buf.writeUInt32LE(ins.k >>> 0, o + 4);
    } else {
      buf.writeUInt16BE(ins.code, o);
      buf.writeUInt32BE(ins.k >>> 0, o + 4);
    }
    buf[o + 2] = ins.jt;
    buf[o + 3] = ins.jf;
  });
  return buf;
}

/** Unpacks struct sock_filter[] bytes. */
export function decodeFilter(buf: Uint8Array, littleEndian = true): SockFilter[] {
  if (buf.length % SOCK_FILTER_SIZE !== 0) throw new Error(`BPF program of ${buf.length} bytes is not a multiple of 8`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: SockFilter[] = [];
  for (let o = 0; o < buf.length; o += SOCK_FILTER_SIZE) {
    out.push({
      code: view.getUint16(o, littleEndian),
      jt: view.getUint8(o + 2),
      jf: view.getUint8(o + 3),
      k: view.getUint32(o + 4, littleEndian),
    });
  }
  return out;
}
