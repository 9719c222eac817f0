// Where a built image goes: the store's layout (tagged), an OCI layout directory, an OCI archive;
// registry.ts pushes. Layer blobs are made in the wanted compression when first needed, from the
// uncompressed blob or from the snapshot of the step that made the layer.
import * as fs from 'node:fs';
import { join, resolve as resolvePath } from 'node:path';
import type { ImageConfig, ContentDescriptor } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import type { BuildStore, BlobRef, CompressionName } from './store.js';
import type { FinalImage, RegistryAccess, OutputSpec } from './types.js';
import type { Progress } from './progress.js';
import type { RegistryOptions, PushReport } from './registry.js';
import type { OciLayout } from '../layers/index.js';
import type { ImageReference } from './imageref.js';

/**
 * The blob of a layer in the wanted compression, in the store's layout: made (and recorded) from
 * the uncompressed blob when missing. Base-image layers keep the blob they came with.
 */
export async function layerBlob(store: BuildStore, diffID: string, want: CompressionName | 'any'): Promise<BlobRef> {
  await store.ensureLayer(diffID);
  const rec = store.layerRecord(diffID);
  if (!rec) throw new KeelError(`layer ${diffID}: no record in the store`);
  const any = rec.blobs.none ?? rec.blobs.gzip ?? rec.blobs.zstd;
  if (want === 'any' && any) return any;
  if (want !== 'any' && rec.blobs[want]) return rec.blobs[want]!;
  if (want !== 'any' && any && !rec.blobs.none) return any; // a base image's layer keeps its own compression
  const { createCompressor, parseDigest, layerMediaType, writeLayer, changesFromUpper } = await import('../layers/index.js');
  const layout = await store.layout();
  const c: CompressionName = want === 'any' ? 'none' : want;
  if (!any) {
    // Made from the snapshot of the step that made the layer, exactly as then.
    const src = rec.source;
    if (!src || !store.snapshotComplete(src.snapshot)) throw new KeelError(`layer ${diffID}: no blob and no snapshot in the store (run \`keel-build prune\`, then build again)`);
    const layer = await writeLayer(layout, changesFromUpper(store.snapshotPath(src.snapshot), { sourceDateEpoch: src.epoch ?? Infinity }), { compression: c });
    if (layer.diffID !== diffID) throw new KeelError(`layer ${diffID}: its snapshot ${src.snapshot} now gives ${layer.diffID} (was the store modified?)`);
    const ref: BlobRef = { mediaType: layer.descriptor.mediaType, digest: layer.descriptor.digest, size: layer.descriptor.size };
    store.addLayerBlobs(diffID, { [c]: ref });
    return ref;
  }
  const source = rec.blobs.none!;
  const comp = await createCompressor(c as 'gzip' | 'zstd');
  const writer = await layout.blobWriter();
  const { pipeline } = await import('node:stream/promises');
  const { Readable } = await import('node:stream');
  try {
    await pipeline(Readable.from(layout.readBlob(parseDigest(source.digest), source.size)), comp, writer);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const info = await writer.commit(undefined, 'layer');
  const ref: BlobRef = { mediaType: layerMediaType(c), digest: info.digest, size: info.size };
  store.addLayerBlobs(diffID, { [c]: ref });
  return ref;
}

/** Writes one image's config and manifest into `layout` (its layer blobs must be there) and tags it. */
export async function writeImageDocs(layout: OciLayout, img: FinalImage, blobs: BlobRef[], tags: string[]): Promise<WrittenImage> {
  const { validateImageConfig, validateImageManifest } = await import('../spec/index.js');
  const { MediaType, sha256, REF_NAME, parseDigest } = await import('../layers/index.js');
  const config = validateImageConfig({ ...img.config, rootfs: { type: 'layers', diff_ids: img.layers.map((l) => l.diffID) } }, 'image config');
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc: ContentDescriptor = { mediaType: MediaType.config, digest: sha256(configBytes), size: configBytes.length };
  const layers = blobs.length ? blobs : undefined;
  if (!layers) {
    // The image-spec wants at least one layer: an empty one, as other builders write.
    const { writeLayer } = await import('../layers/index.js');
    const r = await writeLayer(layout, [], { compression: 'gzip' });
    blobs.push({ mediaType: r.descriptor.mediaType, digest: r.descriptor.digest, size: r.descriptor.size });
    (config.rootfs.diff_ids as string[]).push(r.diffID);
    return writeImageDocs(layout, { ...img, layers: [{ diffID: r.diffID }] }, blobs, tags);
  }
  const manifest = validateImageManifest({
    schemaVersion: 2,
    mediaType: MediaType.manifest,
    config: configDesc,
    layers: blobs.map((b) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })),
  }, 'image manifest');
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDesc: ContentDescriptor = { mediaType: MediaType.manifest, digest: sha256(manifestBytes), size: manifestBytes.length };
  for (const b of blobs) {
    if (!(await layout.has(parseDigest(b.digest)))) throw new KeelError(`layer blob ${b.digest} is missing from ${layout.root}`);
  }
  if (!(await layout.has(parseDigest(configDesc.digest)))) await layout.putBytes(configBytes, { digest: parseDigest(configDesc.digest), size: configDesc.size });
  if (!(await layout.has(parseDigest(manifestDesc.digest)))) await layout.putBytes(manifestBytes, { digest: parseDigest(manifestDesc.digest), size: manifestDesc.size });
  if (tags.length) {
    const index = await layout.readIndex();
    for (const t of tags) {
      const cur = index.manifests.find((m) => m.annotations?.[REF_NAME] === t);
      if (cur?.digest === manifestDesc.digest) continue;
      await layout.tag(t, { ...manifestDesc, platform: platformOf(config) });
    }
  }
  return { manifest: manifestDesc, config: configDesc, doc: config };
}

/** The documents written for one image: its manifest and config. */
export interface WrittenImage {
  manifest: ContentDescriptor;
  config: ContentDescriptor;
  doc: ImageConfig;
}

/** What an output wrote: the image's manifest, or for several platforms their index (`top`). */
export interface WrittenSet {
  top: ContentDescriptor;
  images: WrittenImage[];
}

/**
 * Writes the documents of the images (one per platform) into `layout`, their layers being `blobs`
 * (already there), and tags `tags` with the one image's manifest or, for several, an image index
 * listing each manifest with its platform.
 */
export async function writeImageSet(layout: OciLayout, imgs: FinalImage[], blobs: BlobRef[][], tags: string[]): Promise<WrittenSet> {
  if (imgs.length === 1) {
    const one = await writeImageDocs(layout, imgs[0]!, blobs[0]!, tags);
    return { top: one.manifest, images: [one] };
  }
  const images: WrittenImage[] = [];
  for (let i = 0; i < imgs.length; i++) images.push(await writeImageDocs(layout, imgs[i]!, blobs[i]!, []));
  const { bytes, descriptor } = await indexOf(images);
  const { parseDigest, REF_NAME } = await import('../layers/index.js');
  const d = parseDigest(descriptor.digest);
  if (!(await layout.has(d))) await layout.putBytes(bytes, { digest: d, size: bytes.length });
  const index = await layout.readIndex();
  for (const t of tags) {
    if (index.manifests.find((m) => m.annotations?.[REF_NAME] === t)?.digest === descriptor.digest) continue;
    await layout.tag(t, descriptor);
  }
  return { top: descriptor, images };
}

/** The image index of several platforms' manifests (validated), its bytes and descriptor. */
export async function indexOf(images: WrittenImage[]): Promise<{ bytes: Buffer; descriptor: ContentDescriptor }> {
  const { validateImageIndex } = await import('../spec/index.js');
  const { MediaType, sha256 } = await import('../layers/index.js');
  const doc = validateImageIndex({
    schemaVersion: 2,
    mediaType: MediaType.index,
    manifests: images.map((w) => ({ ...w.manifest, platform: platformOf(w.doc) })),
  }, 'image index');
  const bytes = Buffer.from(JSON.stringify(doc));
  return { bytes, descriptor: { mediaType: MediaType.index, digest: sha256(bytes), size: bytes.length } };
}

function platformOf(c: ImageConfig): { architecture: string; os: string; variant?: string } {
  return { architecture: c.architecture, os: c.os, ...(c.variant ? { variant: c.variant } : {}) };
}

/** Writes the images into the store's layout (tagged with `tags`), layers as they are there. */
export async function storeImages(store: BuildStore, imgs: FinalImage[], tags: string[]): Promise<WrittenSet> {
  const layout = await store.layout();
  const blobs: BlobRef[][] = [];
  for (const img of imgs) {
    const b: BlobRef[] = [];
    for (const l of img.layers) b.push(await layerBlob(store, l.diffID, 'any'));
    blobs.push(b);
  }
  return writeImageSet(layout, imgs, blobs, tags);
}

/** Writes the images to an OCI layout directory (created when missing), layers compressed. */
export async function exportLayout(store: BuildStore, imgs: FinalImage[], dest: string, refNames: string[], compression: 'gzip' | 'zstd'): Promise<WrittenSet> {
  const { OciLayout, parseDigest } = await import('../layers/index.js');
  const src = await store.layout();
  const dst = await OciLayout.create(dest);
  const release = await dst.hold();
  try {
    const blobs: BlobRef[][] = [];
    for (const img of imgs) {
      const b: BlobRef[] = [];
      for (const l of img.layers) {
        const ref = await layerBlob(store, l.diffID, compression);
        const d = parseDigest(ref.digest);
        if (!(await dst.has(d))) await dst.putStream(src.readBlob(d, ref.size), { digest: d, size: ref.size }, `layer ${d}`);
        b.push(ref);
      }
      blobs.push(b);
    }
    return await writeImageSet(dst, imgs, blobs, refNames);
  } finally {
    await release();
  }
}

/** The ref names an OCI layout gets for `-t NAME:TAG` (the tags; `latest` when none). */
export function layoutRefNames(tags: string[]): string[] {
  const out = tags.map((t) => {
    const at = t.indexOf('@');
    const base = at >= 0 ? t.slice(0, at) : t;
    const slash = base.lastIndexOf('/');
    const colon = base.lastIndexOf(':');
    return colon > slash ? base.slice(colon + 1) : 'latest';
  });
  return out.length ? [...new Set(out)] : ['latest'];
}

export function registryOptions(r: RegistryAccess | undefined): RegistryOptions {
  return { insecure: r?.insecure, auth: r?.auth, credentials: r?.credentials, chunkSize: r?.chunkSize };
}

export interface OutputsResult {
  top: ContentDescriptor;
  images: WrittenImage[];
  /** Tags written (store or layout ref names, or pushed references). */
  written: string[];
  pushes: PushReport[];
}

/**
 * Sends the built images (one per platform) to every output: the store (tagged with the `-t` names),
 * an OCI layout, an OCI archive, or the registries of the tags. Returns what the last output wrote.
 */
export async function writeOutputs(store: BuildStore, imgs: FinalImage[], o: {
  outputs: OutputSpec[]; tags: string[]; compression: 'gzip' | 'zstd'; registry?: RegistryAccess; progress: Progress; workDir: string;
}): Promise<OutputsResult> {
  const { parseReference } = await import('./imageref.js');
  const { storeTag } = await import('./images.js');
  const storeTags = o.tags.map((t) => storeTag(parseReference(t)));
  let result: WrittenSet | undefined;
  const written: string[] = [];
  const pushes: PushReport[] = [];
  for (const out of o.outputs) {
    if (out.type === 'store') {
      result = await storeImages(store, imgs, storeTags);
      written.push(...storeTags);
    } else if (out.type === 'oci') {
      const names = layoutRefNames(o.tags);
      result = await exportLayout(store, imgs, resolvePath(out.dest), names, o.compression);
      o.progress.info(`exported to OCI layout ${out.dest} (${names.join(', ')})`);
      written.push(...names.map((n) => `${out.dest}:${n}`));
    } else if (out.type === 'oci-archive') {
      const names = layoutRefNames(o.tags);
      result = await exportLayout(store, imgs, join(o.workDir, 'archive-layout'), names, o.compression);
      await writeArchive(join(o.workDir, 'archive-layout'), out.dest);
      o.progress.info(`exported to OCI archive ${out.dest}`);
      written.push(...names.map((n) => `${out.dest}:${n}`));
    } else if (out.type === 'registry') {
      result = await storeImages(store, imgs, storeTags);
      for (const t of o.tags) {
        const pushed = await pushImages(store, imgs, parseReference(t), { ...registryOptions(o.registry), progress: o.progress, compression: o.compression });
        pushes.push(...pushed.reports);
        result = pushed.set;
        written.push(t);
      }
    }
  }
  return { top: result!.top, images: result!.images, written, pushes };
}

/** Writes the OCI layout `dir` as an OCI archive at `dest` (atomically: a partial file is removed). */
async function writeArchive(dir: string, destArg: string): Promise<void> {
  const { OciLayout, exportArchive } = await import('../layers/index.js');
  const dest = resolvePath(destArg);
  const part = `${dest}.part-${process.pid}`;
  let fd: number;
  try {
    fd = fs.openSync(part, 'w', 0o644);
  } catch (err) {
    throw new KeelError(`--output type=oci-archive,dest=${destArg}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
  }
  const out = fs.createWriteStream(part, { fd });
  try {
    await exportArchive(await OciLayout.open(dir), out);
    await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
    fs.renameSync(part, dest);
  } catch (err) {
    out.destroy();
    fs.rmSync(part, { force: true });
    throw new KeelError(`--output type=oci-archive,dest=${destArg}: ${(err as Error).message}`);
  }
}

/**
 * Pushes images (one per platform) to `ref`: one image as its manifest; several platforms' images
 * each by digest, then their image index under the tag. Layers go in `compression` (made when
 * missing); the documents are written into the store's layout first.
 */
export async function pushImages(store: BuildStore, imgs: FinalImage[], ref: ImageReference, opts: RegistryOptions & { compression: 'gzip' | 'zstd' }): Promise<{ set: WrittenSet; reports: PushReport[] }> {
  const { pushDocument, familiarName } = await importRegistry();
  const layout = await store.layout();
  const { parseDigest } = await import('../layers/index.js');
  const images: WrittenImage[] = [];
  const reports: PushReport[] = [];
  for (const img of imgs) {
    const blobs: BlobRef[] = [];
    for (const l of img.layers) blobs.push(await layerBlob(store, l.diffID, opts.compression));
    const w = await writeImageDocs(layout, img, blobs, []);
    const bytes = await layout.readBytes(parseDigest(w.manifest.digest), w.manifest.size);
    const manifest = JSON.parse(bytes.toString('utf8')) as { layers: ContentDescriptor[]; config: ContentDescriptor };
    reports.push(await pushDocument(store, ref, { descriptor: w.manifest, bytes, blobs: [...manifest.layers, manifest.config] }, { ...opts, byDigest: imgs.length > 1 }));
    images.push(w);
  }
  let top = images[0]!.manifest;
  if (imgs.length > 1) {
    const { bytes, descriptor } = await indexOf(images);
    reports.push(await pushDocument(store, ref, { descriptor, bytes, blobs: [] }, opts));
    top = descriptor;
  }
  opts.progress?.info(`pushed ${familiarName(ref)}@${top.digest}${imgs.length > 1 ? ` (${imgs.length} platforms)` : ''}`);
  return { set: { top, images }, reports };
}

/** Pushes one built image to `ref` (see pushImages). */
export async function pushImage(store: BuildStore, img: FinalImage, ref: ImageReference, opts: RegistryOptions & { compression: 'gzip' | 'zstd' }): Promise<PushReport & WrittenImage> {
  const r = await pushImages(store, [img], ref, opts);
  return { ...r.reports[0]!, ...r.set.images[0]! };
}

function importRegistry() {
  return Promise.all([import('./registry.js'), import('./imageref.js')]).then(([r, i]) => ({ pushDocument: r.pushDocument, familiarName: i.familiarName }));
}
