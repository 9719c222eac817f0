// koffi bindings to libseccomp.so.2 — used ONLY by tests, as a reference implementation that
// keel's own seccomp compiler (src/runtime/seccomp) is compared against. The runtime itself never
// loads libseccomp. Loaded on first use.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { koffiLibc } from './libc.js';


type Fn = (...args: any[]) => any;

interface Lib {
  koffi: any;
  seccomp_init: Fn;
  seccomp_release: Fn;
  seccomp_arch_add: Fn;
  seccomp_arch_remove: Fn;
  seccomp_arch_native: Fn;
  seccomp_arch_resolve_name: Fn;
  seccomp_rule_add_array: Fn;
  seccomp_attr_set: Fn;
  seccomp_export_bpf: Fn;
  seccomp_export_pfc: Fn;
  seccomp_syscall_resolve_name_arch: Fn;
  seccomp_syscall_resolve_num_arch: Fn;
  seccomp_version: Fn;
  free: Fn;
  argCmp: any;
}

let cached: Lib | undefined;

function lib(): Lib {
  if (cached) return cached;
  const { koffi, lib: libc } = koffiLibc();
  const so = koffi.load('libseccomp.so.2');
  const argCmp = koffi.struct('scmp_arg_cmp', {
    arg: 'uint32_t',
    op: 'uint32_t',
    datum_a: 'uint64_t',
    datum_b: 'uint64_t',
  });
  const version = koffi.struct('scmp_version', { major: 'uint32_t', minor: 'uint32_t', micro: 'uint32_t' });
  cached = {
    koffi,
    argCmp,
    seccomp_init: so.func('void *seccomp_init(uint32_t def_action)'),
    seccomp_release: so.func('void seccomp_release(void *ctx)'),
    seccomp_arch_add: so.func('int seccomp_arch_add(void *ctx, uint32_t arch_token)'),
    seccomp_arch_remove: so.func('int seccomp_arch_remove(void *ctx, uint32_t arch_token)'),
    seccomp_arch_native: so.func('uint32_t seccomp_arch_native(void)'),
    seccomp_arch_resolve_name: so.func('uint32_t seccomp_arch_resolve_name(const char *name)'),
    seccomp_rule_add_array: so.func(
      'int seccomp_rule_add_array(void *ctx, uint32_t action, int syscall, unsigned int arg_cnt, scmp_arg_cmp *arg_array)',
    ),
    seccomp_attr_set: so.func('int seccomp_attr_set(void *ctx, int attr, uint32_t value)'),
    seccomp_export_bpf: so.func('int seccomp_export_bpf(void *ctx, int fd)'),
    seccomp_export_pfc: so.func('int seccomp_export_pfc(void *ctx, int fd)'),
    seccomp_syscall_resolve_name_arch: so.func('int seccomp_syscall_resolve_name_arch(uint32_t arch, const char *name)'),
    seccomp_syscall_resolve_num_arch: so.func('void *seccomp_syscall_resolve_num_arch(uint32_t arch, int num)'),
    seccomp_version: so.func('seccomp_version', koffi.pointer(version), []),
    free: libc.func('void free(void *ptr)'),
  };
  return cached;
}

/** libseccomp's "no such syscall" answer from the resolve functions. */
export const NR_SCMP_ERROR = -1;

/** libseccomp filter attributes (enum scmp_filter_attr). */
export const SCMP_FLTATR = {
  ACT_DEFAULT: 1,
  ACT_BADARCH: 2,
  CTL_NNP: 3,
  CTL_TSYNC: 4,
  API_TSKIP: 5,
  CTL_LOG: 6,
  CTL_SSB: 7,
  CTL_OPTIMIZE: 8,
  API_SYSRAWRC: 9,
} as const;

/** enum scmp_compare. */
export const SCMP_CMP = { NE: 1, LT: 2, LE: 3, EQ: 4, GE: 5, GT: 6, MASKED_EQ: 7 } as const;

export interface ScmpArgCmp {
  arg: number;
  op: number;
  datumA: bigint;
  datumB: bigint;
}

/** The version of the loaded libseccomp, e.g. "2.5.4". */
export function libseccompVersion(): string {
  const l = lib();
  const v = l.koffi.decode(l.seccomp_version(), 'scmp_version');
  return `${v.major}.${v.minor}.${v.micro}`;
}

/** libseccomp's arch token for a name like "x86_64", "x86", "x32", "aarch64" (0 when unknown). */
export function scmpArchResolveName(name: string): number {
  return lib().seccomp_arch_resolve_name(name) >>> 0;
}

/** libseccomp's native arch token. */
export function scmpArchNative(): number {
  return lib().seccomp_arch_native() >>> 0;
}

/** Syscall number of `name` on `arch` (negative pseudo-number or NR_SCMP_ERROR when absent). */
export function scmpSyscallResolveNameArch(arch: number, name: string): number {
  return lib().seccomp_syscall_resolve_name_arch(arch >>> 0, name);
}

/** Name of syscall `num` on `arch`, or undefined. */
export function scmpSyscallResolveNumArch(arch: number, num: number): string | undefined {
  const l = lib();
  const ptr = l.seccomp_syscall_resolve_num_arch(arch >>> 0, num);
  if (!ptr) return undefined;
  const name = l.koffi.decode(ptr, 'char', -1) as string;
  l.free(ptr);
  return name;
}

function check(rc: number, what: string): void {
  if (rc < 0) {
    const err = new Error(`libseccomp ${what} failed: errno ${-rc}`) as Error & { errno: number };
    err.errno = -rc;
    throw err;
  }
}

/** A libseccomp filter context. Call release() when done. */
export class ScmpFilter {
  private ctx: unknown;

  constructor(defaultAction: number) {
    this.ctx = lib().seccomp_init(defaultAction >>> 0);
    if (!this.ctx) throw new Error(`seccomp_init(0x${(defaultAction >>> 0).toString(16)}) failed`);
  }

  addArch(arch: number): void {
    const rc = lib().seccomp_arch_add(this.ctx, arch >>> 0);
    if (rc === -17 /* EEXIST */) return;
    check(rc, `seccomp_arch_add(0x${(arch >>> 0).toString(16)})`);
  }

  removeArch(arch: number): void {
    check(lib().seccomp_arch_remove(this.ctx, arch >>> 0), 'seccomp_arch_remove');
  }

  setAttr(attr: number, value: number): void {
    check(lib().seccomp_attr_set(this.ctx, attr, value >>> 0), `seccomp_attr_set(${attr})`);
  }

  /** Adds a rule; returns the negative errno libseccomp answered (0 on success) instead of throwing. */
  addRule(action: number, syscall: number, conds: ScmpArgCmp[] = []): number {
    const arr = conds.map((c) => ({ arg: c.arg, op: c.op, datum_a: c.datumA, datum_b: c.datumB }));
    const l = lib();
    return l.seccomp_rule_add_array(this.ctx, action >>> 0, syscall, arr.length, arr.length ? arr : null);
  }

  private exportVia(fn: Fn): Buffer {
    const dir = mkdtempSync(join(tmpdir(), 'keel-scmp-'));
    try {
      const path = join(dir, 'out');
      const fd = openSync(path, 'w+');
      try {
        check(fn(this.ctx, fd), 'export');
      } finally {
        closeSync(fd);
      }
      return readFileSync(path);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** The classic BPF program libseccomp generates (sock_filter entries, host byte order). */
  exportBpf(): Buffer {
    return this.exportVia(lib().seccomp_export_bpf);
  }

  /** libseccomp's human-readable pseudo filter code. */
  exportPfc(): string {
    return this.exportVia(lib().seccomp_export_pfc).toString('utf8');
  }

  release(): void {
    if (this.ctx) lib().seccomp_release(this.ctx);
    this.ctx = null;
  }
}
