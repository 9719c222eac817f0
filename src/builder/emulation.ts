// RUN steps of another architecture run through an emulator the kernel starts for their binaries:
// a binfmt_misc handler (qemu-user-static's) registered with the F flag, so the interpreter is
// opened at registration and works inside a container's root filesystem, which does not hold it.
// Before such a step runs, the handlers registered in /proc/sys/fs/binfmt_misc are matched against
// an ELF header of the step's architecture, as the kernel would match its binaries.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { KeelError } from '../util/errors.js';
import type { Platform } from './images.js';

const BINFMT = '/proc/sys/fs/binfmt_misc';

/** ELF class, byte order and machine of the architectures OCI names. */
const ELF: Record<string, { machine: number; bits: 32 | 64; le: boolean; qemu: string }> = {
  amd64: { machine: 62, bits: 64, le: true, qemu: 'x86_64' },
  '386': { machine: 3, bits: 32, le: true, qemu: 'i386' },
  arm64: { machine: 183, bits: 64, le: true, qemu: 'aarch64' },
  arm: { machine: 40, bits: 32, le: true, qemu: 'arm' },
  riscv64: { machine: 243, bits: 64, le: true, qemu: 'riscv64' },
  ppc64le: { machine: 21, bits: 64, le: true, qemu: 'ppc64le' },
  s390x: { machine: 22, bits: 64, le: false, qemu: 's390x' },
  mips64le: { machine: 8, bits: 64, le: true, qemu: 'mips64el' },
  loong64: { machine: 258, bits: 64, le: true, qemu: 'loongarch64' },
};

/** This machine's architecture in OCI's words. */
export function hostArchitecture(): string {
  return ({ x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', riscv64: 'riscv64', ppc64: 'ppc64le', s390x: 's390x', loong64: 'loong64' } as Record<string, string>)[process.arch] ?? process.arch;
}

/** Whether this machine runs the platform's binaries itself (amd64 runs 386, arm64 runs arm). */
export function runsNatively(p: Platform): boolean {
  const host = hostArchitecture();
  if (p.os !== 'linux') return false;
  return p.architecture === host || (host === 'amd64' && p.architecture === '386') || (host === 'arm64' && p.architecture === 'arm');
}

/** The first bytes of an executable of the architecture (what binfmt_misc matches). */
function elfHeader(arch: string): Buffer | undefined {
  const e = ELF[arch];
  if (!e) return undefined;
  const h = Buffer.alloc(64);
  h.set([0x7f, 0x45, 0x4c, 0x46, e.bits === 64 ? 2 : 1, e.le ? 1 : 2, 1, 0]);
  if (e.le) { h.writeUInt16LE(2, 16); h.writeUInt16LE(e.machine, 18); } else { h.writeUInt16BE(2, 16); h.writeUInt16BE(e.machine, 18); }
  return h;
}

export interface BinfmtHandler {
  name: string;
  interpreter: string;
  flags: string;
}

/** The enabled binfmt_misc handlers whose magic matches an executable of `arch`. */
export function handlersFor(arch: string): BinfmtHandler[] {
  const header = elfHeader(arch);
  if (!header) return [];
  let names: string[];
  try {
    if (fs.readFileSync(join(BINFMT, 'status'), 'utf8').trim() !== 'enabled') return [];
    names = fs.readdirSync(BINFMT).filter((n) => n !== 'status' && n !== 'register');
  } catch {
    return [];
  }
  const out: BinfmtHandler[] = [];
  for (const name of names) {
    let text: string;
    try { text = fs.readFileSync(join(BINFMT, name), 'utf8'); } catch { continue; }
    const field = (k: string) => new RegExp(`^${k}:? (.*)$`, 'm').exec(text)?.[1]?.trim();
    if (!/^enabled$/m.test(text)) continue;
    const magicHex = field('magic');
    if (!magicHex) continue; // an extension handler
    const magic = Buffer.from(magicHex, 'hex');
    const mask = field('mask') ? Buffer.from(field('mask')!, 'hex') : Buffer.alloc(magic.length, 0xff);
    const offset = Number(field('offset') ?? 0);
    let ok = offset + magic.length <= header.length;
    for (let i = 0; ok && i < magic.length; i++) ok = (header[offset + i]! & (mask[i] ?? 0xff)) === magic[i];
    if (ok) out.push({ name, interpreter: field('interpreter') ?? '', flags: field('flags') ?? '' });
  }
  return out;
}

/** Throws a one-line KeelError unless RUN steps of `p` can run here (natively or emulated). */
export function checkCanRun(p: Platform): void {
  if (runsNatively(p)) return;
  const name = `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
  if (p.os !== 'linux') throw new KeelError(`cannot run ${name} binaries: only linux steps run here`);
  const e = ELF[p.architecture];
  if (!e) throw new KeelError(`cannot run ${name} binaries: no emulator is known for ${p.architecture}`);
  if (!fs.existsSync(join(BINFMT, 'status'))) {
    throw new KeelError(`cannot run ${name} binaries: binfmt_misc is not mounted on ${BINFMT} (mount it, then register qemu-${e.qemu}-static with the F flag)`);
  }
  const found = handlersFor(p.architecture);
  if (found.length === 0) throw new KeelError(`cannot run ${name} binaries: no binfmt_misc handler for ${e.qemu} ELF binaries is registered (install qemu-user-static and register qemu-${e.qemu}-static with the F flag)`);
  if (!found.some((h) => h.flags.includes('F'))) {
    throw new KeelError(`cannot run ${name} binaries: the binfmt_misc handler ${found[0]!.name} (${found[0]!.interpreter}) lacks the F flag, so a container cannot reach its interpreter (register it with flags F)`);
  }
}
