// Assembles the trampoline sources of this folder with binutils (`as`, `objcopy`), for the
// committed machine-code modules (trampoline-<arch>.ts) and the test that checks they match.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

export const ARCHES = {
  x86_64: { as: ['as', 'x86_64-linux-gnu-as'], objcopy: ['objcopy', 'x86_64-linux-gnu-objcopy'], flags: ['--64'] },
  aarch64: { as: ['aarch64-linux-gnu-as'], objcopy: ['aarch64-linux-gnu-objcopy'], flags: [] as string[] },
} as const;
export type Arch = keyof typeof ARCHES;

function which(candidates: readonly string[], hostArch: boolean): string | undefined {
  for (const c of candidates) {
    // The plain `as`/`objcopy` only count for the machine's own architecture.
    if (!c.includes('-linux-gnu-') && !hostArch) continue;
    try { execFileSync('sh', ['-c', `command -v ${c}`], { stdio: 'pipe' }); return c; } catch { /* next */ }
  }
  return undefined;
}

/** Machine code of src/runtime/native/trampoline-<arch>.S, or undefined when no assembler for it is installed. */
export function assemble(arch: Arch): Buffer | undefined {
  const tools = ARCHES[arch];
  const host = (process.arch === 'x64' ? 'x86_64' : process.arch === 'arm64' ? 'aarch64' : '') === arch;
  const src = new URL(`./trampoline-${arch}.S`, import.meta.url).pathname;
  if (!existsSync(src)) return undefined;
  const as = which(tools.as, host);
  const objcopy = which(tools.objcopy, host);
  if (!as || !objcopy) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'keel-as-'));
  try {
    execFileSync(as, [...tools.flags, '-o', join(dir, 't.o'), src], { stdio: 'pipe' });
    execFileSync(objcopy, ['-O', 'binary', '-j', '.text', join(dir, 't.o'), join(dir, 't.bin')], { stdio: 'pipe' });
    return readFileSync(join(dir, 't.bin'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The TypeScript module holding an architecture's machine code. */
export function machineCodeModule(arch: Arch, code: Buffer): string {
  const hex = code.toString('hex').replace(/(.{96})/g, "$1'\n  + '");
  return `// GENERATED from trampoline-${arch}.S by \`npm run assemble\` (src/runtime/native/assemble.ts). Do not edit.\n` +
    `export const TRAMPOLINE_${arch.toUpperCase()} = Buffer.from(\n  '${hex}',\n  'hex');\n`;
}
