// The syscall tables are generated from this machine's UAPI headers (plus libseccomp for newer calls
// and 32-bit arm); they must be up to date with the generator and agree with libseccomp's own tables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { generateTables, headersAvailable, libseccompAvailable, TABLES_FILE } from '../../src/runtime/seccomp/generate-tables.js';
import { syscallTable } from '../../src/runtime/seccomp/index.js';

test('syscall-tables.ts is what generate-tables.ts produces from the headers here', async (t) => {
  if (!headersAvailable()) return t.skip('linux-libc-dev headers not installed');
  if (!(await libseccompAvailable())) return t.skip('libseccomp.so.2 not installed (needed for arm and newer syscalls)');
  assert.equal(readFileSync(TABLES_FILE, 'utf8'), await generateTables(), 'rerun: node --import tsx src/runtime/seccomp/generate-tables.ts');
});

test('every table entry has the number libseccomp gives the same name', async (t) => {
  if (!(await libseccompAvailable())) return t.skip('libseccomp.so.2 not installed');
  const { scmpArchResolveName, scmpSyscallResolveNameArch } = await import('../../src/runtime/sys/seccomp.js');
  for (const [oci, lib] of [['SCMP_ARCH_X86_64', 'x86_64'], ['SCMP_ARCH_X86', 'x86'], ['SCMP_ARCH_X32', 'x32'], ['SCMP_ARCH_AARCH64', 'aarch64'], ['SCMP_ARCH_ARM', 'arm']] as const) {
    const table = syscallTable(oci)!;
    const token = scmpArchResolveName(lib);
    let checked = 0;
    for (const [name, nr] of Object.entries(table)) {
      const theirs = scmpSyscallResolveNameArch(token, name);
      // libseccomp answers the x86 socket/ipc calls with pseudo-numbers (it multiplexes them itself).
      if (theirs < 0 && oci === 'SCMP_ARCH_X86') continue;
      assert.equal(theirs, nr, `${oci} ${name}`);
      checked++;
    }
    assert.ok(checked > 300, `${oci}: ${checked} names checked`);
  }
});

test('well-known numbers', () => {
  assert.equal(syscallTable('SCMP_ARCH_X86_64')!.read, 0);
  assert.equal(syscallTable('SCMP_ARCH_X86_64')!.clone3, 435);
  assert.equal(syscallTable('SCMP_ARCH_X86')!.socketcall, 102);
  assert.equal(syscallTable('SCMP_ARCH_X32')!.read, 0x40000000);
  assert.equal(syscallTable('SCMP_ARCH_AARCH64')!.openat, 56);
  assert.equal(syscallTable('SCMP_ARCH_AARCH64')!.open, undefined);
  assert.equal(syscallTable('SCMP_ARCH_ARM')!.set_tls, 0xf0005);
});
