// Regenerates src/runtime/seccomp/syscall-tables.ts from the Linux UAPI headers of this machine
// (Debian's linux-libc-dev): the x86 family from asm/unistd_{64,32,x32}.h, aarch64 from
// asm-generic/unistd.h preprocessed with arm64's __ARCH_WANT_* switches. System calls newer than
// the headers (numbered above their last entry) are added from libseccomp's own table when
// libseccomp.so.2 is installed (Debian updates it more often than the kernel headers). 32-bit arm
// has no UAPI header on an x86 machine: its table comes from libseccomp alone (when installed).
//
//   node --import tsx src/runtime/seccomp/generate-tables.ts          # rewrite the table file
//   node --import tsx src/runtime/seccomp/generate-tables.ts --check  # exit 1 when out of date
//
// test/runtime-seccomp/syscall-tables.test.ts fails when the committed file differs from what this
// script produces (where the headers exist).
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const HEADERS = {
  x86_64: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h',
  x86: '/usr/include/x86_64-linux-gnu/asm/unistd_32.h',
  x32: '/usr/include/x86_64-linux-gnu/asm/unistd_x32.h',
  generic: '/usr/include/asm-generic/unistd.h',
} as const;

/** What arch/arm64/include/uapi/asm/unistd.h switches on before including asm-generic/unistd.h. */
const ARM64_WANT = [
  '__ARCH_WANT_RENAMEAT',
  '__ARCH_WANT_NEW_STAT',
  '__ARCH_WANT_SET_GET_RLIMIT',
  '__ARCH_WANT_TIME32_SYSCALLS',
  '__ARCH_WANT_SYS_CLONE3',
  '__ARCH_WANT_MEMFD_SECRET',
];

/** Markers in asm-generic/unistd.h that are not system calls. */
const NOT_SYSCALLS = new Set(['syscalls', 'arch_specific_syscall']);

const X32_SYSCALL_BIT = 0x40000000;

/** Parses `#define __NR_name value` lines, resolving simple references between macros. */
function parseDefines(text: string): Map<string, number> {
  const raw = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^#define\s+(__NR\w+)\s+(.+?)\s*$/.exec(line);
    if (m) raw.set(m[1]!, m[2]!);
  }
  const resolve = (expr: string, depth = 0): number | undefined => {
    if (depth > 8) return undefined;
    const e = expr.replace(/^\((.*)\)$/, '$1').trim();
    if (/^\d+$/.test(e)) return Number(e);
    const x32 = /^__X32_SYSCALL_BIT\s*\+\s*(\d+)$/.exec(e);
    if (x32) return X32_SYSCALL_BIT + Number(x32[1]);
    const ref = raw.get(e);
    return ref === undefined ? undefined : resolve(ref, depth + 1);
  };
  const out = new Map<string, number>();
  for (const [name, expr] of raw) {
    if (!name.startsWith('__NR_')) continue;
    const syscall = name.slice('__NR_'.length);
    if (NOT_SYSCALLS.has(syscall)) continue;
    const value = resolve(expr);
    if (value !== undefined) out.set(syscall, value);
  }
  return out;
}

function aarch64Defines(): string {
  const args = ['-E', '-dM', ...ARM64_WANT.map((d) => `-D${d}`), '-D__BITS_PER_LONG=64', '-x', 'c', '-'];
  return execFileSync('gcc', args, { input: '#include <asm-generic/unistd.h>\n', encoding: 'utf8' });
}

/** libseccomp's names for numbers above the header table's last one (newer syscalls), if installed. */
async function newerFromLibseccomp(arch: string, table: Map<string, number>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let sys: typeof import('../sys/seccomp.js');
  try {
    sys = await import('../sys/seccomp.js');
    sys.libseccompVersion();
  } catch {
    return out;
  }
  const token = sys.scmpArchResolveName(arch);
  if (!token) return out;
  const base = arch === 'x32' ? X32_SYSCALL_BIT : 0;
  // x32 keeps its own compat calls at 512-547; the common numbering continues below them.
  const last = Math.max(...[...table.values()].filter((nr) => nr < base + 512));
  for (let nr = last + 1; nr < base + 512; nr++) {
    const name = sys.scmpSyscallResolveNumArch(token, nr);
    if (name && !table.has(name)) out.set(name, nr);
  }
  return out;
}

/** The 32-bit arm (EABI) table from libseccomp: numbers 0-1023 and the ARM-private 0xf0000 range. */
async function armFromLibseccomp(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const sys = await import('../sys/seccomp.js');
  const token = sys.scmpArchResolveName('arm');
  for (const [from, to] of [[0, 1024], [0xf0000, 0xf0100]] as const) {
    for (let nr = from; nr < to; nr++) {
      const name = sys.scmpSyscallResolveNumArch(token, nr);
      if (name) out.set(name, nr);
    }
  }
  return out;
}

/** True when libseccomp.so.2 can be loaded (the generator needs it for arm and newer syscalls). */
export async function libseccompAvailable(): Promise<boolean> {
  try {
    (await import('../sys/seccomp.js')).libseccompVersion();
    return true;
  } catch {
    return false;
  }
}

/** True when every header the generator reads is present (and gcc for the generic table). */
export function headersAvailable(): boolean {
  return Object.values(HEADERS).every((p) => existsSync(p));
}

function render(tables: Record<string, Map<string, number>>): string {
  const lines = [
    '// GENERATED by src/runtime/seccomp/generate-tables.ts from the Linux UAPI headers',
    '// (asm/unistd_64.h, asm/unistd_32.h, asm/unistd_x32.h, asm-generic/unistd.h for arm64), plus',
    "// syscalls newer than those headers from libseccomp's table.",
    '// Do not edit by hand: rerun the generator.',
    '',
    '/** Syscall name → number as the kernel reports it in seccomp_data.nr (x32 numbers include bit 30). */',
    'export type SyscallTable = Readonly<Record<string, number>>;',
    '',
  ];
  for (const [arch, table] of Object.entries(tables)) {
    const entries = [...table].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
    lines.push(`export const ${arch.toUpperCase()}_SYSCALLS: SyscallTable = Object.freeze(Object.assign(Object.create(null), {`);
    for (const [name, nr] of entries) lines.push(`  ${name}: ${nr},`);
    lines.push('}));', '');
  }
  return lines.join('\n');
}

/** The text syscall-tables.ts should have, from this machine's headers (and libseccomp). */
export async function generateTables(): Promise<string> {
  const read = (p: string) => readFileSync(p, 'utf8');
  const tables: Record<string, Map<string, number>> = {
    x86_64: parseDefines(read(HEADERS.x86_64)),
    x86: parseDefines(read(HEADERS.x86)),
    x32: parseDefines(read(HEADERS.x32)),
    aarch64: parseDefines(aarch64Defines()),
  };
  for (const [arch, table] of Object.entries(tables)) {
    for (const [name, nr] of await newerFromLibseccomp(arch, table)) table.set(name, nr);
  }
  tables.arm = await armFromLibseccomp();
  return render(tables);
}

export const TABLES_FILE = fileURLToPath(new URL('./syscall-tables.ts', import.meta.url));

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = await generateTables();
  if (process.argv.includes('--check')) {
    const current = existsSync(TABLES_FILE) ? readFileSync(TABLES_FILE, 'utf8') : '';
    if (current !== text) {
      console.error(`${TABLES_FILE} is out of date; rerun src/runtime/seccomp/generate-tables.ts`);
      process.exit(1);
    }
  } else {
    writeFileSync(TABLES_FILE, text);
    console.log(`wrote ${TABLES_FILE}`);
  }
}
