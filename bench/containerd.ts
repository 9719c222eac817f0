// containerd with keel's shim against containerd with runc's shim, side by side in one run:
//
//   run     `ctr run --rm IMAGE ID /bin/true`, end to end (shim start, create, start, wait, delete)
//   pod     the same for a second container of a pod (annotation io.kubernetes.cri.sandbox-id),
//           whose first container runs: the pod's shim is already there
//   exec    `ctr task exec` of /bin/true in a running task
//   inproc  keel's runtime as a library (create + start + wait + delete, no CLI, no containerd)
//           against `runc run` of the same bundle
//
// Usage (root, after npm run build): node --import tsx bench/containerd.ts [-n RUNS]
// Runs alternate between the two sides; medians and quartiles are printed as a markdown table.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Containerd, containerdSkip, IMAGE, KEEL_RUNTIME } from '../test/shim/containerd-env.js';

const n = Number(process.argv[process.argv.indexOf('-n') + 1] ?? 0) || 20;
const RUNC = 'io.containerd.runc.v2';

const skip = containerdSkip() || (spawnSync('sh', ['-c', 'command -v runc']).status !== 0 && 'runc not installed');
if (skip) { console.error(`bench/containerd.ts: ${skip}`); process.exit(1); }

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  return s[Math.floor(i)]! + (s[Math.ceil(i)]! - s[Math.floor(i)]!) * (i - Math.floor(i));
}
const fmt = (xs: number[]) => `${quantile(xs, 0.5).toFixed(1)} ms (${quantile(xs, 0.25).toFixed(1)}–${quantile(xs, 0.75).toFixed(1)})`;

function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

function check(r: ReturnType<Containerd['ctr']>, what: string): void {
  if (r.status !== 0) throw new Error(`${what}: status ${r.status}: ${r.stderr.trim()}`);
}

const results: { what: string; keel: number[]; runc: number[] }[] = [];

/** Runs `a` (keel) and `b` (runc) alternately `n` times (after one warm-up each). */
async function sideBySide(what: string, keel: (i: number) => number | Promise<number>, runc: (i: number) => number | Promise<number>): Promise<void> {
  const row = { what, keel: [] as number[], runc: [] as number[] };
  await keel(-1); await runc(-1);
  for (let i = 0; i < n; i++) {
    row.keel.push(await keel(i));
    row.runc.push(await runc(i));
  }
  results.push(row);
  console.error(`${what}: keel ${fmt(row.keel)}, runc ${fmt(row.runc)}`);
}

const cd = new Containerd();
try {
  const why = await cd.start();
  if (why) throw new Error(why);
  await cd.importImage();
  const runRm = (runtime: string, id: string, extra: string[] = []) => timed(() => check(cd.ctr(['run', '--rm', '--runtime', runtime, ...extra, IMAGE, id, '/bin/true']), `ctr run ${id}`));

  await sideBySide('`ctr run --rm` /bin/true', (i) => runRm(KEEL_RUNTIME, `k${i + 1}`), (i) => runRm(RUNC, `r${i + 1}`));

  // A pod per runtime, its first container running; the measured container joins it.
  for (const [rt, p] of [[KEEL_RUNTIME, 'kp'], [RUNC, 'rp']] as const) {
    check(cd.ctr(['run', '-d', '--runtime', rt, '--annotation', `io.kubernetes.cri.sandbox-id=${p}`, IMAGE, `${p}-sandbox`, 'sleep', '100000']), `${p} sandbox`);
  }
  await sideBySide('second container of a pod, `ctr run --rm`',
    (i) => runRm(KEEL_RUNTIME, `kp${i + 1}`, ['--annotation', 'io.kubernetes.cri.sandbox-id=kp']),
    (i) => runRm(RUNC, `rp${i + 1}`, ['--annotation', 'io.kubernetes.cri.sandbox-id=rp']));

  const exec = (task: string, i: number) => timed(() => check(cd.ctr(['task', 'exec', '--exec-id', `x${i + 1}`, task, '/bin/true']), `exec in ${task}`));
  await sideBySide('`ctr task exec` /bin/true', (i) => exec('kp-sandbox', i), (i) => exec('rp-sandbox', i));

  // keel's runtime in-process against `runc run`, on one bundle (the image's rootfs, a default spec).
  const bundle = join(cd.dir, 'bundle');
  for (const d of ['bin', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(bundle, 'rootfs', d), { recursive: true });
  copyFileSync('/bin/busybox', join(bundle, 'rootfs/bin/busybox'));
  symlinkSync('busybox', join(bundle, 'rootfs/bin/true'));
  const runtime = await import('../src/runtime/index.js');
  const spec = runtime.defaultSpec();
  spec.process!.args = ['/bin/true'];
  spec.process!.terminal = false;
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  const ctx = { root: join(cd.dir, 'keel-root') };
  const devNull = (await import('node:fs')).openSync('/dev/null', 'r+');
  const runcRoot = join(cd.dir, 'runc-root');
  await sideBySide('lifecycle: keel library create+start+wait+delete vs `runc run`', async (i) => {
    const id = `lib${i + 1}`;
    const t0 = performance.now();
    await runtime.create(ctx, id, { bundle, stdio: [devNull, devNull, devNull] });
    const { pid } = await runtime.state(ctx, id);
    const exit = runtime.watchExit(pid!);
    await runtime.start(ctx, id);
    await exit;
    await runtime.remove(ctx, id);
    return performance.now() - t0;
  }, (i) => timed(() => {
    const r = spawnSync('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `runc${i + 1}`], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`runc run: status ${r.status}`);
  }));
} finally {
  await cd.cleanup();
}

const lines = [
  `| what (${n} runs each, alternating) | keel | runc | keel / runc |`,
  '|---|---:|---:|---:|',
  ...results.map((r) => `| ${r.what} | ${fmt(r.keel)} | ${fmt(r.runc)} | ${(quantile(r.keel, 0.5) / quantile(r.runc, 0.5)).toFixed(2)} |`),
];
console.log(lines.join('\n'));
