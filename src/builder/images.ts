// Base images (FROM, COPY --from, RUN --mount from=): a local OCI layout (`oci-layout://DIR[:TAG]`),
// an image of keel's store (`name[:tag]`, as tagged by `keel-build build -t`), or a registry pull.
// Whatever the source, the image's blobs end up in the store's layout with a record per layer, so
// its layers can be unpacked into snapshots and exported without going back to the source.
import type { ImageConfig, ContentDescriptor } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import type { BuildStore } from './store.js';
import { chainLayers, type LayerRef } from './snapshots.js';
import { parseReference, familiarName, type ImageReference } from './imageref.js';

export interface ResolvedImage {
  /** The reference as written. */
  name: string;
  manifestDigest: string;
  config: ImageConfig;
  layers: LayerRef[];
  /** The manifest's layer descriptors (blobs in the store's layout). */
  blobs: ContentDescriptor[];
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface ImageResolver {
  /** Pulls an image from its registry into the store; undefined when registries are not used. */
  pull?: (ref: ImageReference, platform: Platform) => Promise<ResolvedImage>;
}

export function parsePlatform(p: string): Platform {
  const [os, architecture, variant] = p.split('/');
  if (!os || !architecture) throw new KeelError(`platform ${JSON.stringify(p)}: expected OS/ARCH[/VARIANT]`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** Records the layer blobs of an image now in the store's layout. */
export async function recordLayers(store: BuildStore, config: ImageConfig, layers: ContentDescriptor[]): Promise<LayerRef[]> {
  const { compressionOfMediaType } = await import('../layers/index.js');
  const diffIDs = config.rootfs.diff_ids;
  layers.forEach((l, i) => {
    const c = compressionOfMediaType(l.mediaType);
    const diffID = diffIDs[i]!;
    if (!c) throw new KeelError(`layer ${l.digest}: unsupported media type ${l.mediaType}`);
    const have = store.layerRecord(diffID);
    if (have?.blobs[c]?.digest === l.digest) return;
    store.addLayerBlobs(diffID, { [c]: { mediaType: l.mediaType, digest: l.digest, size: l.size } });
  });
  return chainLayers(diffIDs);
}

/** Splits `oci-layout://DIR[:TAG]` / `oci-layout://DIR@sha256:...`. */
export async function parseLayoutSource(value: string): Promise<{ dir: string; ref: string | undefined }> {
  const { parseLayoutRef } = await import('../layers/index.js');
  const { layout, ref } = parseLayoutRef(value.slice('oci-layout://'.length));
  return { dir: layout, ref };
}

/** An image from a local OCI layout, copied into the store. */
export async function imageFromLayout(store: BuildStore, name: string, dir: string, ref: string | undefined, platform: Platform): Promise<ResolvedImage> {
  const { OciLayout, copyImage } = await import('../layers/index.js');
  let src;
  try {
    src = await OciLayout.open(dir);
  } catch (err) {
    throw new KeelError(`${name}: ${(err as Error).message}`);
  }
  const dst = await store.layout();
  const img = await copyImage(src, ref, dst, undefined, { platform });
  const layers = await recordLayers(store, img.config, img.manifest.layers);
  return { name, manifestDigest: img.manifestDescriptor.digest, config: img.config, layers, blobs: img.manifest.layers };
}

/** Store tag of a reference: its familiar name (busybox:latest, localhost:5000/app:1). */
export function storeTag(ref: ImageReference): string {
  return familiarName(ref);
}

/** An image of keel's store by reference, or undefined when the store has none by that name. */
export async function imageFromStore(store: BuildStore, name: string, ref: ImageReference, platform: Platform): Promise<ResolvedImage | undefined> {
  const { readImage, REF_NAME } = await import('../layers/index.js');
  const layout = await store.layout();
  const tag = storeTag(ref);
  const index = await layout.readIndex();
  const entry = index.manifests.find((m) => m.annotations?.[REF_NAME] === tag) ??
    (ref.digest ? index.manifests.find((m) => m.digest === ref.digest) : undefined);
  if (!entry) return undefined;
  const img = await readImage(layout, entry.digest, { platform });
  const layers = await recordLayers(store, img.config, img.manifest.layers);
  return { name, manifestDigest: img.manifestDescriptor.digest, config: img.config, layers, blobs: img.manifest.layers };
}

/** Resolves a base image reference to an image in the store. */
export async function resolveImage(store: BuildStore, name: string, platform: Platform, resolver: ImageResolver): Promise<ResolvedImage> {
  if (name.startsWith('oci-layout://')) {
    const { dir, ref } = await parseLayoutSource(name);
    return imageFromLayout(store, name, dir, ref, platform);
  }
  const ref = parseReference(name);
  const local = await imageFromStore(store, name, ref, platform);
  if (local) return local;
  if (!resolver.pull) {
    throw new KeelError(`image ${JSON.stringify(name)}: not in keel's store (${store.root}) and registry pulls are off`);
  }
  try {
    return await resolver.pull(ref, platform);
  } catch (err) {
    const { RegistryUnreachable } = await import('./registry.js');
    if (!(err instanceof RegistryUnreachable)) throw err;
    throw new KeelError(`${err.message}; to build from a local copy of ${name} instead, give an OCI layout ` +
      `(--build-context ${name}=oci-layout://DIR[:TAG]; an OCI archive becomes one with tar -xf FILE -C DIR), ` +
      `an image of keel's store (keel-build build -t ${name} ...), or a registry you can reach (e.g. docker-registry on localhost:5000)`, { cause: err });
  }
}
