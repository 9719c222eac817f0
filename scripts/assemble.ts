// Regenerates src/runtime/native/trampoline-<arch>.ts from the assembly sources beside them.
import { writeFileSync } from 'node:fs';
import { ARCHES, assemble, machineCodeModule, type Arch } from '../src/runtime/native/assemble.js';

for (const arch of Object.keys(ARCHES) as Arch[]) {
  const code = assemble(arch);
  if (!code) { console.error(`skipped ${arch}: no assembler installed`); continue; }
  writeFileSync(new URL(`../src/runtime/native/trampoline-${arch}.ts`, import.meta.url), machineCodeModule(arch, code));
  console.log(`${arch}: ${code.length} bytes`);
}
