/**
 * keel/builder — Dockerfile builds to OCI images: stage graph, step cache, RUN on keel's runtime,
 * COPY/ADD, image config, exports (store, OCI layout, OCI archive, registry), registry client.
 *
 *   const r = await build({ context: 'app/', tags: ['app:1'], outputs: [{ type: 'oci', dest: 'out' }] })
 *     → { manifestDigest, configDigest, config, tags, steps, cached }
 *   Options: dockerfile / dockerfileText, buildArgs, target, noCache, compression ('gzip' | 'zstd'),
 *   runtime (an OCI runtime CLI for RUN instead of keel's runtime in-process), platform, store
 *   (default /var/lib/keel as root, $XDG_DATA_HOME/keel otherwise), buildContexts (named contexts:
 *   a directory or oci-layout://DIR[:TAG]), secrets ({ id: { src | env } }), ssh ({ id: [socket | key files] }), progress ('auto' |
 *   'plain' | 'tty' | 'quiet') and progressStream, sourceDateEpoch, registry ({ insecure, auth,
 *   offline }), cacheTo / cacheFrom (BuildKit-format build caches, see cache.ts). Errors are KeelErrors; a failing step is a StepError `FILE:LINE: INSTRUCTION: why`.
 *
 *   await prune({ store, all })   empties the build cache (all: the stored images too)
 *   BuildStore.open(dir)          the store (see store.ts for its layout and consistency rules)
 *   pullImage / pushImage(s) / pushDocument / RegistryClient   the distribution-spec client (registry.ts)
 *   parseReference / familiarName            image references with Docker's defaults
 *
 * FROM takes `scratch`, another stage, `oci-layout://DIR[:TAG]`, an image of keel's store
 * (tagged by an earlier build), or a registry reference (pulled into the store).
 */
export { build, StepError } from './build.js';
export type { BuildOptions, BuildResult, OutputSpec, SecretSource, RegistryAccess } from './build.js';
export { BuildStore, defaultStoreRoot } from './store.js';
export type { CacheRecord, LayerRecord } from './store.js';
export { pullImage, pushDocument, RegistryClient } from './registry.js';
export { pushImage, pushImages } from './export.js';
export type { RegistryOptions, PushReport, PushDocument } from './registry.js';
export { parseReference, familiarName, fullName } from './imageref.js';
export type { ImageReference } from './imageref.js';
export type { ProgressMode } from './progress.js';
export { parseCacheOption, CACHE_CONFIG_MEDIA_TYPE } from './cache.js';
export type { CacheExportSpec, CacheImportSpec } from './cache.js';
export { parseSshOption } from './ssh.js';

/** Empties the build cache of a store; with `all`, its images too. Waits for running builds. */
export async function prune(opts: { store?: string; all?: boolean } = {}): Promise<{ freedBytes: number; removedImages: number }> {
  const { BuildStore } = await import('./store.js');
  return BuildStore.open(opts.store).prune({ all: opts.all });
}
