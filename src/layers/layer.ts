/**
 * Turning changes into a layer blob in one pass: tar → sha256 (diffID) → gzip/zstd → sha256
 * (blob digest) + size → temporary file → renamed to its digest in the store.
 */
import * as fs from 'node:fs';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import type { Transform, Writable } from 'node:stream';
import { KeelError } from '../util/errors.js';
import type { ContentDescriptor } from '../spec/index.js';
import { TarWriter, type ChunkSink } from './tar.js';
import { Hasher, type Digest } from './digest.js';
import { createCompressor, layerMediaType, type Compression } from './compression.js';
import type { LayerChange } from './diff.js';
import type { OciLayout } from './store.js';

export interface LayerWriteOptions {
  /** Default gzip. */
  compression?: Compression;
  /** Compression level (gzip 0-9, default 6; zstd 1-19, default 3). */
  level?: number;
}

export interface LayerResult {
  /** Descriptor of the stored blob (media type from the compression). */
  descriptor: ContentDescriptor & { digest: Digest };
  /** Digest of the uncompressed tar: the image config's rootfs.diff_ids entry. */
  diffID: Digest;
  /** Size of the uncompressed tar. */
  uncompressedSize: number;
  /** Number of archive entries (whiteouts included). */
  entries: number;
}

export type ChangeSource = AsyncIterable<LayerChange> | Iterable<LayerChange>;

async function writeChanges(tw: TarWriter, changes: ChangeSource): Promise<number> {
  let n = 0;
  for await (const ch of changes) {
    n++;
    const h = ch.header;
    if (h.type === 'file' && h.size > 0) {
      if (!ch.source) throw new KeelError(`layer entry ${h.path}: no source for ${h.size} bytes of data`);
      let fd: number;
      try {
        fd = fs.openSync(ch.source, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      } catch (err) {
        throw new KeelError(`${ch.source}: cannot read: ${(err as Error).message}`);
      }
      try {
        const st = fs.fstatSync(fd);
        if (!st.isFile() || st.size !== h.size) throw new KeelError(`${ch.source}: changed while the layer was being written`);
        await tw.addFromFd(h, fd, ch.source);
      } finally {
        fs.closeSync(fd);
      }
    } else {
      await tw.add(h);
    }
  }
  await tw.finish();
  return n;
}

function pushTo(w: Writable | Transform, chunk: Buffer): void | Promise<void> {
  if (w.write(chunk)) return;
  return new Promise<void>((resolve, reject) => {
    const onErr = (e: Error) => { w.off('drain', onDrain); reject(e); };
    const onDrain = () => { w.off('error', onErr); resolve(); };
    w.once('drain', onDrain);
    w.once('error', onErr);
  });
}

/**
 * Writes a layer into the store: streams the changes as a deterministic tar, compresses it, and
 * stores the blob. Nothing is held in memory beyond one batch buffer; a failure leaves no blob.
 */
export async function writeLayer(layout: OciLayout, changes: ChangeSource, opts: LayerWriteOptions = {}): Promise<LayerResult> {
  const compression = opts.compression ?? 'gzip';
  const blob = await layout.blobWriter();
  const diff = new Hasher('sha256');
  let compressor: Transform | undefined;
  try {
    let sink: ChunkSink;
    if (compression === 'none') {
      sink = { write: (c) => { diff.update(c); return pushTo(blob, c); } };
    } else {
      const comp = await createCompressor(compression, opts.level);
      compressor = comp;
      comp.pipe(blob);
      comp.on('error', (e) => blob.destroy(e));
      sink = { write: (c) => { diff.update(c); return pushTo(comp, c); } };
    }
    const tw = new TarWriter(sink);
    const entries = await writeChanges(tw, changes);
    if (compressor) {
      compressor.end();
      await finished(blob);
    }
    const info = await blob.commit(undefined, 'layer');
    return {
      descriptor: { mediaType: layerMediaType(compression), digest: info.digest, size: info.size },
      diffID: diff.digest(),
      uncompressedSize: diff.size,
      entries,
    };
  } catch (err) {
    compressor?.destroy();
    await blob.abort();
    throw err;
  }
}

/**
 * Writes a layer to any writable stream instead of the store (e.g. stdout), returning the same
 * digests. Used by benchmarks and by callers that upload while they build.
 */
export async function writeLayerToStream(out: Writable, changes: ChangeSource, opts: LayerWriteOptions = {}): Promise<{ diffID: Digest; digest: Digest; size: number; uncompressedSize: number; entries: number }> {
  const compression = opts.compression ?? 'gzip';
  const diff = new Hasher('sha256');
  const outHash = new Hasher('sha256');
  let sink: ChunkSink;
  let compressor: Transform | undefined;
  if (compression === 'none') {
    sink = { write: (c) => { diff.update(c); outHash.update(c); return pushTo(out, c); } };
  } else {
    const comp = await createCompressor(compression, opts.level);
    compressor = comp;
    comp.on('data', (c: Buffer) => {
      outHash.update(c);
      if (!out.write(c)) {
        comp.pause();
        out.once('drain', () => comp.resume());
      }
    });
    sink = { write: (c) => { diff.update(c); return pushTo(comp, c); } };
  }
  const entries = await writeChanges(new TarWriter(sink), changes);
  if (compressor) {
    compressor.end();
    await once(compressor, 'end');
  }
  return { diffID: diff.digest(), digest: outHash.digest(), size: outHash.size, uncompressedSize: diff.size, entries };
}
