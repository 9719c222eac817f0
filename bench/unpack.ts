// Unpack throughput: `keel-build unpack` (the library's unpackImage: digest and diff_id verified,
// symlinks resolved inside the root, size caps checked while streaming) against `umoci unpack`
// and GNU tar on the same image: one gzip layer made from TREE.
//
//   node --import tsx bench/unpack.ts [TREE] [--runs N]      (default TREE: /usr/share)
//
// KEEL_BASELINE=/path/to/src/layers/index.ts adds the unpackImage of another checkout as one more
// case, run interleaved with the others (how the "before" column of bench/unpack.md was taken). Runs of the tools alternate so that each sees
// the same page-cache writeback pressure; the median of N runs is reported as wall time, MB/s of
// compressed layer, MB/s of tar and entries/s, and as CPU time (user + system, this process and
// the tools it waited for), which other work on a shared machine disturbs much less.
import * as fs from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir, cpus } from 'node:os';
import { execFileSync, spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
const tree = args.find((a, i) => !a.startsWith('--') && (runsAt < 0 || i !== runsAt + 1)) ?? '/usr/share';
const L = await import('../src/layers/index.js');
const baseline = process.env.KEEL_BASELINE ? await import(pathToFileURL(resolve(process.env.KEEL_BASELINE)).href) as typeof L : undefined;
const work = fs.mkdtempSync(join(tmpdir(), 'keel-bench-unpack-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const sh = (cmd: string) => execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** CPU seconds used so far by this process and its waited-for children (utime, stime, cutime, cstime). */
function cpuSeconds(): number {
  const stat = fs.readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields from the 3rd (state) on
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
}

const layoutDir = join(work, 'layout');
const store = await L.OciLayout.create(layoutDir);
const layer = await L.writeLayer(store, L.changesFromTree(tree), { compression: 'gzip' });
await L.writeImage(store, { config: L.newImageConfig({ config: { Cmd: ['/bin/true'] } }), layers: [layer], tag: 'bench' });
const blobMB = layer.descriptor.size / 1e6;
const tarMB = layer.uncompressedSize / 1e6;

const bundle = join(work, 'bundle');
const fresh = () => { fs.rmSync(bundle, { recursive: true, force: true }); sh('sync'); };
const cases: [string, () => Promise<unknown> | unknown][] = [
  ['keel unpackImage (digest + diff_id verified)', () => L.unpackImage(layoutDir, 'bench', bundle)],
  ['keel unpackImage, O_NOFOLLOW walk (kernels without openat2)', () => L.unpackImage(layoutDir, 'bench', bundle, { apply: { resolver: 'walk' } })],
];
if (baseline) cases.push([`keel unpackImage, baseline ${process.env.KEEL_BASELINE}`, () => baseline.unpackImage(layoutDir, 'bench', bundle)]);
if (has('umoci')) cases.push(['umoci unpack', () => sh(`umoci unpack --image '${layoutDir}:bench' '${bundle}'`)]);
cases.push(['GNU tar -xzf (same blob, no verification)', () => { fs.mkdirSync(join(bundle, 'rootfs'), { recursive: true }); sh(`tar -C '${bundle}/rootfs' --numeric-owner -xpzf '${store.blobPath(layer.descriptor.digest)}'`); }]);

const samples = cases.map(() => [] as number[]);
const cpu = cases.map(() => [] as number[]);
for (let i = 0; i < runs; i++) {
  for (const [j, [, fn]] of cases.entries()) {
    fresh();
    const c0 = cpuSeconds();
    const t0 = performance.now();
    await fn();
    samples[j]!.push(performance.now() - t0);
    cpu[j]!.push(cpuSeconds() - c0);
  }
}
fresh();
console.log(`tree: ${tree} — ${layer.entries} entries, layer ${blobMB.toFixed(0)} MB gzip, ${tarMB.toFixed(0)} MB tar; median of ${runs} runs; ${cpus().length} CPUs\n`);
console.log('| case | wall time | layer MB/s | tar MB/s | entries/s | CPU time |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const [j, [name]] of cases.entries()) {
  const s = median(samples[j]!) / 1000;
  console.log(`| ${name} | ${s.toFixed(2)} s | ${(blobMB / s).toFixed(0)} | ${(tarMB / s).toFixed(0)} | ${Math.round(layer.entries / s)} | ${median(cpu[j]!).toFixed(2)} s |`);
}
