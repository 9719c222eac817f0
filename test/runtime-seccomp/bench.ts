// Measures the seccomp compiler: compile time and program size for containers-common's default
// profile, and the BPF instructions a syscall runs through, against what runc/libseccomp produce.
//   node --import tsx test/runtime-seccomp/bench.ts
import { performance } from 'node:perf_hooks';
import { compileSeccomp, syscallTable } from '../../src/runtime/seccomp/index.js';
import { containersDefaultProfile } from './containers-profile.js';
import { runFilter } from './bpf-vm.js';

const profile = containersDefaultProfile();
if (!profile) {
  console.log('containers-common seccomp.json not installed');
  process.exit(0);
}
for (let i = 0; i < 20; i++) compileSeccomp(profile); // warm up
const n = 200;
const t0 = performance.now();
for (let i = 0; i < n; i++) compileSeccomp(profile);
const perCompile = (performance.now() - t0) / n;
const mine = compileSeccomp(profile);
const table = syscallTable('SCMP_ARCH_X86_64')!;
const steps = (prog: typeof mine.instructions) => {
  let total = 0;
  let worst = 0;
  for (const nr of Object.values(table)) {
    const s = runFilter(prog, { nr, arch: 0xc000003e, args: [0n, 0n, 0n, 0n, 0n, 0n] }).steps;
    total += s;
    worst = Math.max(worst, s);
  }
  return { mean: total / Object.keys(table).length, worst };
};
const k = steps(mine.instructions);
console.log(`keel: compile ${perCompile.toFixed(2)} ms, ${mine.length} instructions, x86_64 syscalls run ${k.mean.toFixed(1)} BPF instructions on average (worst ${k.worst})`);
try {
  const { runcReference } = await import('./libseccomp-ref.js');
  const t1 = performance.now();
  const ref = runcReference(profile);
  const refMs = performance.now() - t1;
  const l = steps(ref.program);
  console.log(`runc/libseccomp 2.5 (optimize=2): build ${refMs.toFixed(2)} ms, ${ref.program.length} instructions, ${l.mean.toFixed(1)} on average (worst ${l.worst}) — plus runc's ENOSYS stub`);
} catch (err) {
  console.log(`libseccomp unavailable: ${(err as Error).message}`);
}
