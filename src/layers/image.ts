/**
 * Image documents: config, manifest and index entries, built and validated with the generated
 * ajv validators, written to and read from an OCI layout.
 */
import { KeelError } from '../util/errors.js';
import { validateImageConfig, validateImageManifest } from '../spec/index.js';
import type { ImageConfig, ImageManifest, ContentDescriptor } from '../spec/index.js';
import { MediaType, compressionOfMediaType, type Compression } from './compression.js';
import { parseDigest, type Digest } from './digest.js';
import { hostPlatform, REF_NAME, isIndexMediaType, isManifestMediaType, type OciLayout, type ResolveOptions, type IndexEntry } from './store.js';
import { writeLayer } from './layer.js';

export interface ImageLayer {
  descriptor: ContentDescriptor;
  diffID: Digest | string;
}

export interface ImageWriteInput {
  /** The config; `rootfs` is filled in from `layers` (any given is replaced). */
  config: Omit<ImageConfig, 'rootfs'> & { rootfs?: ImageConfig['rootfs'] };
  layers: ImageLayer[];
  /** Tag in index.json (`org.opencontainers.image.ref.name`); untagged when absent. */
  tag?: string;
  /** Manifest annotations. */
  annotations?: Record<string, string>;
  /**
   * The image-spec schema wants at least one layer: with no layers, an empty one is written
   * (compressed as this says, default gzip) unless this is false (then writing fails).
   */
  emptyLayer?: Compression | false;
}

export interface WrittenImage {
  manifestDescriptor: ContentDescriptor & { digest: Digest };
  configDescriptor: ContentDescriptor & { digest: Digest };
  manifest: ImageManifest;
  config: ImageConfig;
}

/** A config for this platform with the given process settings (a starting point for builders). */
export function newImageConfig(opts: { config?: ImageConfig['config']; created?: string; author?: string; history?: ImageConfig['history']; platform?: { os: string; architecture: string; variant?: string } } = {}): Omit<ImageConfig, 'rootfs'> {
  const p = opts.platform ?? hostPlatform();
  const cfg: Omit<ImageConfig, 'rootfs'> = { architecture: p.architecture, os: p.os };
  if (p.variant) cfg.variant = p.variant;
  if (opts.created) cfg.created = opts.created;
  if (opts.author) cfg.author = opts.author;
  if (opts.config) cfg.config = opts.config;
  if (opts.history) cfg.history = opts.history;
  return cfg;
}

/** Writes config and manifest blobs (validated) and tags the manifest; returns their descriptors. */
export async function writeImage(layout: OciLayout, input: ImageWriteInput): Promise<WrittenImage> {
  // From the first blob to the tag, keep gc away (it would see the new blobs unreferenced).
  const release = await layout.hold();
  try {
    return await writeImageHeld(layout, input);
  } finally {
    await release();
  }
}

async function writeImageHeld(layout: OciLayout, input: ImageWriteInput): Promise<WrittenImage> {
  const layers = [...input.layers];
  if (layers.length === 0) {
    if (input.emptyLayer === false) throw new KeelError('image: at least one layer is required (image-spec manifest schema)');
    const r = await writeLayer(layout, [], { compression: input.emptyLayer ?? 'gzip' });
    layers.push({ descriptor: r.descriptor, diffID: r.diffID });
  }
  for (const [i, l] of layers.entries()) {
    parseDigest(l.diffID, `layer ${i + 1} diffID`);
    parseDigest(l.descriptor.digest, `layer ${i + 1} digest`);
    if (compressionOfMediaType(l.descriptor.mediaType) === undefined) {
      throw new KeelError(`layer ${i + 1}: ${l.descriptor.mediaType} is not a layer media type`);
    }
  }
  const config = validateImageConfig({
    ...input.config,
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) },
  }, 'image config');
  const configDescriptor = await layout.putJson(config, MediaType.config) as WrittenImage['configDescriptor'];
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.manifest,
    config: configDescriptor,
    layers: layers.map((l) => {
      const d: ContentDescriptor = { mediaType: l.descriptor.mediaType, digest: l.descriptor.digest, size: l.descriptor.size };
      if (l.descriptor.annotations) d.annotations = l.descriptor.annotations;
      if (l.descriptor.urls) d.urls = l.descriptor.urls;
      return d;
    }) as ImageManifest['layers'],
  };
  if (input.annotations && Object.keys(input.annotations).length) manifest.annotations = input.annotations;
  validateImageManifest(manifest, 'image manifest');
  for (const l of layers) {
    if (!l.descriptor.urls && !(await layout.has(l.descriptor.digest as Digest))) {
      throw new KeelError(`image: layer ${l.descriptor.digest} is not in ${layout.root}`);
    }
  }
  const manifestDescriptor = await layout.putJson(manifest, MediaType.manifest) as WrittenImage['manifestDescriptor'];
  const platform: NonNullable<IndexEntry['platform']> = { architecture: config.architecture, os: config.os };
  if (config.variant) platform.variant = config.variant;
  if (input.tag) await layout.tag(input.tag, { ...manifestDescriptor, platform });
  return { manifestDescriptor, configDescriptor, manifest, config };
}

export interface ReadImage {
  /** The tag (or digest) asked for, as resolved. */
  ref: string | undefined;
  manifestDescriptor: ContentDescriptor;
  manifest: ImageManifest;
  configDescriptor: ContentDescriptor;
  config: ImageConfig;
}

/** Reads an image by tag or digest: manifest and config verified against their digests and schemas. */
export async function readImage(layout: OciLayout, ref?: string, opts: ResolveOptions = {}): Promise<ReadImage> {
  const { descriptor } = await layout.resolve(ref, opts);
  const what = `manifest ${descriptor.digest}`;
  const doc = await layout.readJson(descriptor, what);
  const manifest = validateImageManifest(doc, what);
  if (manifest.mediaType && !isManifestMediaType(manifest.mediaType)) {
    throw new KeelError(`${what}: media type ${manifest.mediaType} is not an image manifest`);
  }
  const configWhat = `image config ${manifest.config.digest}`;
  if (manifest.config.mediaType !== MediaType.config && manifest.config.mediaType !== MediaType.dockerConfig) {
    throw new KeelError(`${configWhat}: media type ${manifest.config.mediaType} is not an image config (an artifact?)`);
  }
  const config = validateImageConfig(await layout.readJson(manifest.config, configWhat), configWhat);
  const layerCount = manifest.layers.filter((l) => compressionOfMediaType(l.mediaType) !== undefined).length;
  if (layerCount !== manifest.layers.length) {
    const bad = manifest.layers.find((l) => compressionOfMediaType(l.mediaType) === undefined)!;
    throw new KeelError(`${what}: layer ${bad.digest} has unsupported media type ${bad.mediaType}`);
  }
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new KeelError(`${what}: ${manifest.layers.length} layers but the config lists ${config.rootfs.diff_ids.length} diff_ids`);
  }
  return { ref, manifestDescriptor: descriptor, manifest, configDescriptor: manifest.config, config };
}

export interface ImageSummary {
  tag: string | undefined;
  digest: string;
  mediaType: string;
  platform: string | undefined;
  created: string | undefined;
  /** Config plus layers, compressed (what the blobs take); undefined when it could not be read. */
  size: number | undefined;
  layers: number | undefined;
  error?: string;
}

/** The images a layout's index.json lists (each multi-platform index resolved for this platform). */
export async function listImages(layout: OciLayout, opts: ResolveOptions = {}): Promise<ImageSummary[]> {
  const index = await layout.readIndex();
  const out: ImageSummary[] = [];
  for (const entry of index.manifests) {
    const tag = entry.annotations?.[REF_NAME];
    const s: ImageSummary = {
      tag, digest: entry.digest, mediaType: entry.mediaType,
      platform: entry.platform ? `${entry.platform.os}/${entry.platform.architecture}${entry.platform.variant ? `/${entry.platform.variant}` : ''}` : undefined,
      created: undefined, size: undefined, layers: undefined,
    };
    if (isManifestMediaType(entry.mediaType) || isIndexMediaType(entry.mediaType)) {
      try {
        const img = await readImage(layout, entry.digest, opts);
        s.created = img.config.created;
        s.layers = img.manifest.layers.length;
        s.size = img.manifest.config.size + img.manifest.layers.reduce((n, l) => n + l.size, 0);
        s.platform ??= `${img.config.os}/${img.config.architecture}${img.config.variant ? `/${img.config.variant}` : ''}`;
      } catch (err) {
        s.error = (err as Error).message;
      }
    }
    out.push(s);
  }
  return out;
}

/**
 * Copies one image (manifest, config, layers; for a multi-platform tag, the chosen platform's
 * manifest) from one layout to another, verifying every blob, and tags it in the destination.
 * Blobs already in the destination are not copied again.
 */
export async function copyImage(src: OciLayout, ref: string | undefined, dst: OciLayout, tag?: string, opts: ResolveOptions = {}): Promise<ReadImage> {
  const img = await readImage(src, ref, opts);
  const release = await dst.hold();
  try {
    const blobs = [...img.manifest.layers, img.manifest.config, img.manifestDescriptor];
    for (const b of blobs) {
      const digest = parseDigest(b.digest, 'descriptor digest');
      if (b.urls && !(await src.has(digest))) continue; // foreign layer: not stored here either
      if (await dst.has(digest)) continue;
      await dst.putStream(src.readBlob(digest, b.size), { digest, size: b.size }, `blob ${digest}`);
    }
    if (tag) {
      const entry: IndexEntry = { mediaType: img.manifestDescriptor.mediaType, digest: img.manifestDescriptor.digest, size: img.manifestDescriptor.size };
      entry.platform = { architecture: img.config.architecture, os: img.config.os };
      if (img.config.variant) entry.platform.variant = img.config.variant;
      await dst.tag(tag, entry);
    }
  } finally {
    await release();
  }
  return img;
}
