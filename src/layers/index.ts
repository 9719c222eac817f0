/**
 * keel/layers — tar layers, compression, the content-addressed blob store, safe unpacking, and
 * image documents. Everything streams: no layer is ever held in memory, digests are computed
 * while the bytes go by.
 *
 * Store (an OCI image layout directory):
 *   const store = await OciLayout.create(dir)        // or OciLayout.open(dir) for an existing one
 *   await store.putBytes(buf) / putStream(chunks, expected?) → { digest, size }   (atomic, idempotent)
 *   store.readBlob(digest, size?)  → AsyncGenerator<Buffer>, throws at the end if the digest is wrong
 *   await store.readJson(descriptor, what) / readBytes(digest)                      (verified)
 *   await store.has(digest) / size(digest)
 *   await store.tag(tag, manifestDescriptor) / untag(tag) / tags() / resolve(ref?, {platform})
 *   const release = await store.hold()   // keeps gc away from blobs you are about to reference:
 *                                         // hold from the first writeLayer until writeImage has tagged
 *   await store.gc()                      // removes blobs unreachable from index.json (waits for
 *                                         // holders; never call it while this process holds)
 *   Safe for many processes at once: puts are atomic renames, index.json updates are serialised
 *   by a flock, gc and writers exclude each other with a flock on the layout directory.
 *
 * Making layers (each returns { descriptor, diffID, uncompressedSize, entries }):
 *   await writeLayer(store, changesFromUpper(upperDir), { compression: 'gzip' | 'zstd' | 'none', level })
 *   await writeLayer(store, changesFromTree(dir))             // everything in dir, e.g. COPY into an empty upper
 *   await writeLayer(store, changesFromDiff(lowerDir, upperDir))
 *   Changes are { header: TarHeader, source?: path } items; any (async) iterable of them works.
 *   Options of the change sources: { sourceDateEpoch (default $SOURCE_DATE_EPOCH), xattrs }.
 *   The overlay upper dir must come from a mount with redirect_dir=off,metacopy=off.
 *
 * Applying layers (rootfs snapshots):
 *   await applyLayerBlob(store, layerDescriptor, targetDir, { expectedDiffID })
 *   await applyLayer(targetDir, anyTarStream)    // gzip/zstd/plain detected from the bytes
 *   Paths resolve as if targetDir were / (symlinks followed but never out of it; `parentSymlinks:
 *   'refuse'` refuses them instead); hostile archives are refused with a KeelError naming the
 *   entry; size (`maxSize`, default free space less a margin) and entry count are capped while
 *   streaming. See apply.ts for the rules.
 *
 * Images:
 *   const written = await writeImage(store, { config: newImageConfig({ config: { Cmd: [...] } }),
 *                                             layers: [layerResult, ...], tag: 'latest' })
 *   const img = await readImage(store, 'latest')   // { manifest, config, manifestDescriptor, ... }
 *   await listImages(store) / copyImage(srcStore, ref, dstStore, tag)   (e.g. FROM another layout)
 *   await unpackImage(layoutDir, tag, bundleDir, { maxUnpackedSize })   // rootfs/ + config.json, like `umoci unpack`
 *   await exportArchive(store, writable, { tags }) / importArchive(tarChunks, store, { tag })
 *     (importArchive reads OCI archives and docker-archives: `docker save`, `podman save`)
 *
 * Low level: TarWriter / readTar (tar codec with PAX and xattrs), createCompressor /
 * decompress, Hasher / sha256 / parseDigest, MediaType constants.
 */
export { OciLayout, BlobWriter, REF_NAME, checkTag, hostPlatform, isIndexMediaType, isManifestMediaType } from './store.js';
export type { BlobInfo, ResolveOptions, ResolvedManifest, IndexEntry } from './store.js';
export { writeLayer, writeLayerToStream } from './layer.js';
export type { LayerWriteOptions, LayerResult, ChangeSource } from './layer.js';
export { changesFromUpper, changesFromTree, changesFromDiff, sourceDateEpochFromEnv, WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from './diff.js';
export type { LayerChange, WalkOptions } from './diff.js';
export { applyLayer, applyLayerBlob, hasCapMknod, defaultUnpackLimit, parseSize, formatSize, MAX_PATH, MAX_NAME, DEFAULT_MAX_ENTRIES } from './apply.js';
export type { ApplyOptions, ApplyResult } from './apply.js';
export { writeImage, readImage, listImages, newImageConfig, copyImage } from './image.js';
export type { ImageLayer, ImageWriteInput, WrittenImage, ReadImage, ImageSummary } from './image.js';
export { unpackImage, runtimeSpecFromImage, parseLayoutRef } from './unpack.js';
export type { UnpackOptions, UnpackResult, RuntimeSpecOptions } from './unpack.js';
export { resolveUser, readFileInRoot } from './user.js';
export type { ResolvedUser } from './user.js';
export { exportArchive, importArchive } from './archive.js';
export type { ExportOptions, ImportOptions } from './archive.js';
export { TarWriter, readTar, encodeHeader } from './tar.js';
export type { TarHeader, TarEntry, EntryType, ChunkSink } from './tar.js';
export { MediaType, layerMediaType, compressionOfMediaType, detectCompression, createCompressor, createDecompressor, decompress, DEFAULT_LEVEL } from './compression.js';
export type { Compression } from './compression.js';
export { Hasher, sha256, parseDigest, isDigest } from './digest.js';
export type { Digest } from './digest.js';
