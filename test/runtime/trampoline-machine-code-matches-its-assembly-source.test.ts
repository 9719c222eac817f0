import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ARCHES, assemble, machineCodeModule, type Arch } from '../../src/runtime/native/assemble.js';

for (const arch of Object.keys(ARCHES) as Arch[]) {
  const source = new URL(`../../src/runtime/native/trampoline-${arch}.S`, import.meta.url);
  let hasSource = true;
  try { readFileSync(source); } catch { hasSource = false; }
  if (!hasSource) continue; // an architecture keel has no trampoline for yet
  test(`the committed ${arch} trampoline bytes are what its assembly source assembles to`, (t) => {
    const code = assemble(arch);
    if (!code) return t.skip(`no assembler for ${arch} installed (binutils${arch === 'aarch64' ? '-aarch64-linux-gnu' : ''})`);
    const committed = readFileSync(new URL(`../../src/runtime/native/trampoline-${arch}.ts`, import.meta.url), 'utf8');
    assert.equal(committed, machineCodeModule(arch, code), `src/runtime/native/trampoline-${arch}.ts is stale: run npm run assemble`);
  });
}
