// A separate process that writes into a shared layout, for the concurrency test: puts a layer of
// its own and one shared by every writer, writes an image and tags it, while others do the same
// and a garbage collector runs.
import { OciLayout, writeLayer, writeImage, newImageConfig, type LayerChange } from '../../src/layers/index.js';

const [dir, id, mode] = process.argv.slice(2) as [string, string, string];
const store = await OciLayout.create(dir);
if (mode === 'gc') {
  const until = Date.now() + Number(id);
  let runs = 0;
  while (Date.now() < until) { await store.gc({ tmpMaxAgeMs: 0 }); runs++; }
  process.stdout.write(`gc runs ${runs}\n`);
} else {
  for (let round = 0; round < 3; round++) {
    const release = await store.hold();
    try {
      const own: LayerChange[] = [{ header: { path: `file-${id}-${round}`, type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 } }];
      const shared: LayerChange[] = [{ header: { path: 'shared', type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 } }];
      const a = await writeLayer(store, own, { compression: 'gzip' });
      const b = await writeLayer(store, shared, { compression: 'zstd' });
      await writeImage(store, { config: newImageConfig({ config: { Cmd: ['/bin/true', id] } }), layers: [b, a], tag: `writer-${id}` });
    } finally {
      await release();
    }
  }
}
