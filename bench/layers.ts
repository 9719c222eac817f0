// Layer throughput: keel's tar + hash + compress pipeline against `tar | gzip -1` and
// `tar | zstd -3` on the same tree, and keel's safe apply against `tar -x`.
//
//   node --import tsx bench/layers.ts [TREE] [--runs N]      (default TREE: /usr/share)
//
// Each case runs N times (default 3) after a warm-up read of the tree; the median is reported as
// wall time and MB/s of uncompressed tar. Output is a Markdown table.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execFileSync, spawnSync } from 'node:child_process';
import { OciLayout, writeLayer, writeLayerToStream, changesFromTree, applyLayerBlob, type Compression } from '../src/layers/index.js';

const args = process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
const tree = args.find((a, i) => !a.startsWith('--') && (runsAt < 0 || i !== runsAt + 1)) ?? '/usr/share';
const work = fs.mkdtempSync(join(tmpdir(), 'keel-bench-layers-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function time(fn: () => Promise<unknown> | unknown, before?: () => void): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    before?.();
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  return median(samples);
}

function sh(cmd: string): void {
  execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
}

// Warm the page cache and measure the tree as tar sees it.
const tarBytes = Number(execFileSync('sh', ['-c', `tar -C '${tree}' --numeric-owner -cf - . | wc -c`]).toString().trim());
const entries = Number(execFileSync('sh', ['-c', `find '${tree}' | wc -l`]).toString().trim());
const mb = tarBytes / 1e6;

const rows: [string, number, string][] = [];
const add = (name: string, ms: number, note = '') => rows.push([name, ms, note]);

const devnull = () => fs.createWriteStream('/dev/null');
async function keelStream(c: Compression, level?: number): Promise<number> {
  const out = devnull();
  const r = await writeLayerToStream(out, changesFromTree(tree), { compression: c, level });
  await new Promise<void>((resolve) => out.end(resolve));
  return r.size;
}

const sizes = new Map<string, number>();
add('keel tar + sha256 (no compression)', await time(async () => sizes.set('none', await keelStream('none'))));
add('GNU tar | sha256sum', await time(() => sh(`tar -C '${tree}' --numeric-owner -cf - . | sha256sum >/dev/null`)));
add('keel tar + gzip -1 + 2×sha256', await time(async () => sizes.set('gzip1', await keelStream('gzip', 1))));
if (has('gzip')) add('GNU tar | gzip -1', await time(() => sh(`tar -C '${tree}' --numeric-owner -cf - . | gzip -1 >/dev/null`)));
add('keel tar + gzip -6 (default) + 2×sha256', await time(async () => sizes.set('gzip6', await keelStream('gzip', 6))));
if (has('gzip')) add('GNU tar | gzip -6', await time(() => sh(`tar -C '${tree}' --numeric-owner -cf - . | gzip -6 >/dev/null`)));
add('keel tar + zstd -3 (default) + 2×sha256', await time(async () => sizes.set('zstd3', await keelStream('zstd', 3))));
if (has('zstd')) add('GNU tar | zstd -3', await time(() => sh(`tar -C '${tree}' --numeric-owner -cf - . | zstd -q -3 >/dev/null`)));

// Into the store (blob file written, renamed to its digest) and back out.
const store = await OciLayout.create(join(work, 'layout'));
let gz: Awaited<ReturnType<typeof writeLayer>> | undefined;
add('keel writeLayer gzip -6 into a layout', await time(async () => { gz = await writeLayer(store, changesFromTree(tree), { compression: 'gzip' }); }));
let zs: Awaited<ReturnType<typeof writeLayer>> | undefined;
add('keel writeLayer zstd -3 into a layout', await time(async () => { zs = await writeLayer(store, changesFromTree(tree), { compression: 'zstd' }); }));

// Applying is mostly kernel time (file creation, page cache writeback); keel and GNU tar runs
// alternate so that both see the same writeback pressure left by the runs before them.
const target = join(work, 'rootfs');
const fresh = () => { fs.rmSync(target, { recursive: true, force: true }); fs.mkdirSync(target); sh('sync'); };
async function alternate(a: () => Promise<unknown> | unknown, b: () => unknown): Promise<[number, number]> {
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < runs; i++) {
    for (const [fn, out] of [[a, ta], [b, tb]] as const) {
      fresh();
      const t0 = performance.now();
      await fn();
      out.push(performance.now() - t0);
    }
  }
  return [median(ta), median(tb)];
}
const applyCases: [string, typeof gz, string, string][] = [
  ['gzip', gz, 'GNU tar -xzf (same blob)', '-xpzf'],
  ['zstd', zs, 'GNU tar --zstd -xf (same blob)', '--zstd -xpf'],
];
for (const [name, layer, gnuName, flags] of applyCases) {
  const [k, g] = await alternate(
    () => applyLayerBlob(store, layer!.descriptor, target, { expectedDiffID: layer!.diffID }),
    () => sh(`tar -C '${target}' --numeric-owner ${flags} '${store.blobPath(layer!.descriptor.digest)}'`),
  );
  add(`keel applyLayerBlob (${name}, digest + diffID verified)`, k);
  add(gnuName, g);
}

console.log(`tree: ${tree} — ${entries} entries, ${mb.toFixed(0)} MB as tar; median of ${runs} runs; ${(await import('node:os')).cpus().length} CPUs`);
console.log(`compressed: gzip -1 ${((sizes.get('gzip1') ?? 0) / 1e6).toFixed(0)} MB, gzip -6 ${((sizes.get('gzip6') ?? 0) / 1e6).toFixed(0)} MB, zstd -3 ${((sizes.get('zstd3') ?? 0) / 1e6).toFixed(0)} MB\n`);
console.log('| case | time | throughput (tar MB/s) |');
console.log('|---|---:|---:|');
for (const [name, ms] of rows) console.log(`| ${name} | ${(ms / 1000).toFixed(2)} s | ${(mb / (ms / 1000)).toFixed(0)} |`);
