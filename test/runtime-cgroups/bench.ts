// Measures the cgroup manager on this host: create + set + apply + stats + freeze/thaw + destroy.
//   node --import tsx test/runtime-cgroups/bench.ts
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createCgroupManager, runcDefaultDeviceRules } from '../../src/runtime/cgroups/index.js';
import { cleanupParent, uniqueParent } from './helpers.js';

const parent = uniqueParent('bench');
const times: Record<string, number[]> = {};
const time = async <T>(k: string, f: () => T | Promise<T>): Promise<T> => {
  const t = performance.now();
  const r = await f();
  (times[k] ??= []).push(performance.now() - t);
  return r;
};
try {
  for (let i = 0; i < 30; i++) {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const cg = await time('new manager', () => createCgroupManager({ cgroupsPath: `${parent}/c${i}`, containerId: `c${i}` }));
    await time('create', () => cg.create());
    await time('set', () => cg.set({
      memory: { limit: 256 << 20 }, pids: { limit: 100 }, cpu: { shares: 512, quota: 50000, period: 100000 },
      devices: [{ allow: false, access: 'rwm' }, ...runcDefaultDeviceRules()],
    }));
    await time('apply', () => cg.apply(child.pid!));
    await time('stats', () => cg.stats());
    await time('freeze+thaw', async () => { await cg.freeze(); await cg.thaw(); });
    await time('destroy (kill)', () => cg.destroy({ kill: true }));
  }
} finally {
  cleanupParent(parent);
}
for (const [k, v] of Object.entries(times)) {
  const sorted = v.slice(5).sort((a, b) => a - b); // drop warm-up
  console.log(`${k.padEnd(16)} median ${sorted[Math.floor(sorted.length / 2)]!.toFixed(2)} ms`);
}
