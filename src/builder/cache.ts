// Build cache export and import (`--cache-to`, `--cache-from`) in BuildKit's distributable cache
// format, so the cache of one store can be used by another (another machine, a CI runner):
//
//   the cache manifest   an OCI image manifest whose config has media type
//                        application/vnd.buildkit.cacheconfig.v0 and whose layers are the layer
//                        blobs (gzip), annotated with `containerd.io/uncompressed` (diff ID) and
//                        `buildkit/createdat`; an image index listing the blobs and the config
//                        (BuildKit's older form) is read too
//   the cache config     { layers: [{ blob, parent }], records: [{ digest, layers: [{ layer,
//                        createdAt }], chains, inputs: [[{ link }]] }] }: each record is a step's
//                        cache key (keel's key: see build.ts), linked to its parent step's record,
//                        its result the top of its layer chain (a layer's parent is the layer
//                        below it in the stage); a step that made no layer has its parent's chain
//                        as result, or an empty chain when there is none
//
// Where: `type=local,dest=DIR` / `src=DIR` is an OCI layout whose index.json tags the manifest
// (`latest`, or tag=); `type=registry,ref=REF` is a manifest pushed to REF. `mode=min` (the
// default) exports the steps of the stages that make the image (the target and the stages it is
// FROM), `mode=max` every step of the build.
//
// An imported record is a cache hit like a local one; its layer blob is fetched (and checked
// against its diff ID) only when something needs it: a snapshot to run a later step on, or an
// output. Local cache records are written for imported hits whose layers were fetched.
import type { ContentDescriptor } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import type { BuildStore, BlobRef } from './store.js';
import type { Progress } from './progress.js';
import type { RegistryOptions } from './registry.js';
import { parseReference } from './imageref.js';

export const CACHE_CONFIG_MEDIA_TYPE = 'application/vnd.buildkit.cacheconfig.v0';
const UNCOMPRESSED = 'containerd.io/uncompressed';
const CREATED_AT = 'buildkit/createdat';

export type CacheExportSpec =
  | { type: 'local'; dest: string; mode?: 'min' | 'max'; tag?: string; ignoreError?: boolean }
  | { type: 'registry'; ref: string; mode?: 'min' | 'max'; ignoreError?: boolean };

export type CacheImportSpec =
  | { type: 'local'; src: string; tag?: string; digest?: string }
  | { type: 'registry'; ref: string };

/** What a build knows of one step with a cache key (whether it ran or came from a cache). */
export interface StepRecord {
  /** The key of the step whose file system this step started from (absent for a stage's first step on a base image or scratch). */
  parent?: string;
  /** The layer it made (absent when it changed nothing). */
  layer?: { diffID: string | Promise<string> };
  created: string;
  stage: number;
}

/** A cache hit found in an imported cache. */
export interface ImportedHit {
  created: string;
  layer?: { diffID: string; blob: BlobRef; source: ImportSource };
}

// ---- the cache config (BuildKit's types) ----

interface CacheLayer {
  blob: string;
  parent?: number;
  annotations?: { mediaType?: string; diffID?: string; size?: number; createdAt?: string };
}

interface CacheRecordDoc {
  digest: string;
  layers?: { layer: number; createdAt?: string }[];
  chains?: { layers: number[]; createdAt?: string }[];
  inputs?: { selector?: string; link: number }[][];
}

interface CacheConfig {
  layers?: CacheLayer[];
  records?: CacheRecordDoc[];
}

// ---- parsing options ----

/** `type=local,dest=DIR,mode=max` (or a bare REF for type=registry, as buildx takes it) → a spec. */
export function parseCacheOption(value: string, flag: '--cache-to' | '--cache-from'): CacheExportSpec | CacheImportSpec {
  const kv: Record<string, string> = {};
  if (!value.includes('=')) return { type: 'registry', ref: value };
  for (const part of value.split(',')) {
    const i = part.indexOf('=');
    if (i <= 0) throw new KeelError(`${flag} ${JSON.stringify(value)}: expected key=value pairs separated by commas`);
    kv[part.slice(0, i).trim()] = part.slice(i + 1);
  }
  const type = kv.type ?? 'registry';
  const mode = kv.mode;
  if (mode !== undefined && mode !== 'min' && mode !== 'max') throw new KeelError(`${flag} ${value}: mode must be min or max`);
  const ignoreError = kv['ignore-error'] === 'true';
  if (type === 'local') {
    if (flag === '--cache-to') {
      if (!kv.dest) throw new KeelError(`${flag} ${value}: type=local needs dest=DIR`);
      return { type, dest: kv.dest, mode: mode as 'min' | 'max' | undefined, tag: kv.tag, ignoreError };
    }
    if (!kv.src) throw new KeelError(`${flag} ${value}: type=local needs src=DIR`);
    return { type, src: kv.src, tag: kv.tag, digest: kv.digest };
  }
  if (type === 'registry') {
    if (!kv.ref) throw new KeelError(`${flag} ${value}: type=registry needs ref=NAME:TAG`);
    parseReference(kv.ref);
    return flag === '--cache-to' ? { type, ref: kv.ref, mode: mode as 'min' | 'max' | undefined, ignoreError } : { type, ref: kv.ref };
  }
  throw new KeelError(`${flag} ${value}: unknown cache type ${JSON.stringify(type)} (keel-build has type=local and type=registry)`);
}

// ---- import ----

/** Where an imported cache's blobs come from. */
export interface ImportSource {
  name: string;
  read(blob: BlobRef): AsyncIterable<Uint8Array>;
}

/** The records of the caches given with --cache-from, by key. */
export class CacheImports {
  private readonly hits = new Map<string, ImportedHit>();

  /** Opens every cache; a cache that does not exist yet is a warning (a first CI run has none), an unreachable one an error. */
  static async open(specs: CacheImportSpec[], registry: RegistryOptions, progress: Progress): Promise<CacheImports> {
    const all = new CacheImports();
    for (const spec of specs) {
      const found = spec.type === 'local' ? await openLocal(spec) : await openRegistry(spec, registry);
      if (!found) {
        progress.info(`warning: --cache-from ${describe(spec)}: no cache there yet`);
        continue;
      }
      const n = all.add(found.config, found.descriptors, found.source);
      progress.info(`importing cache ${found.source.name}: ${n} steps`);
    }
    return all;
  }

  get size(): number {
    return this.hits.size;
  }

  lookup(key: string): ImportedHit | undefined {
    return this.hits.get(key);
  }

  /** Reads a cache config; returns how many records it gave. Records that do not make sense are skipped. */
  private add(config: CacheConfig, descriptors: Map<string, ContentDescriptor>, source: ImportSource): number {
    const layers = config.layers ?? [];
    const records = config.records ?? [];
    const top = (i: number): number | undefined => {
      const r = records[i];
      if (!r) return undefined;
      if (r.layers?.length) return r.layers[0]!.layer;
      if (r.chains?.length) return r.chains[0]!.layers.at(-1) ?? -1;
      return undefined;
    };
    let n = 0;
    records.forEach((r, i) => {
      if (!r.digest || this.hits.has(r.digest)) return;
      const t = top(i);
      if (t === undefined) return; // no result: not a hit
      const created = r.layers?.[0]?.createdAt ?? r.chains?.[0]?.createdAt;
      if (!created) return;
      const link = r.inputs?.[0]?.[0]?.link;
      const parentTop = link !== undefined ? top(link) : undefined;
      const made = t >= 0 && (link === undefined || t !== parentTop);
      if (!made) {
        this.hits.set(r.digest, { created });
        n++;
        return;
      }
      const l = layers[t];
      const desc = l ? descriptors.get(l.blob) : undefined;
      const diffID = desc?.annotations?.[UNCOMPRESSED] ?? l?.annotations?.diffID;
      if (!l || !desc || !diffID) return;
      this.hits.set(r.digest, { created, layer: { diffID, blob: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size }, source } });
      n++;
    });
    return n;
  }
}

function describe(spec: CacheImportSpec | CacheExportSpec): string {
  return spec.type === 'local' ? `type=local,${'src' in spec ? `src=${spec.src}` : `dest=${spec.dest}`}` : `type=registry,ref=${spec.ref}`;
}

interface OpenedCache {
  config: CacheConfig;
  descriptors: Map<string, ContentDescriptor>;
  source: ImportSource;
}

/** The cache config a cache manifest (or BuildKit's older index form) points at, and its blobs' descriptors. */
function readManifest(doc: { mediaType?: string; config?: ContentDescriptor; layers?: ContentDescriptor[]; manifests?: ContentDescriptor[] }, where: string): { config: ContentDescriptor; blobs: ContentDescriptor[] } {
  if (doc.config?.mediaType === CACHE_CONFIG_MEDIA_TYPE) return { config: doc.config, blobs: doc.layers ?? [] };
  const cfg = doc.manifests?.find((m) => m.mediaType === CACHE_CONFIG_MEDIA_TYPE);
  if (cfg) return { config: cfg, blobs: (doc.manifests ?? []).filter((m) => m !== cfg) };
  throw new KeelError(`${where}: not a build cache (no ${CACHE_CONFIG_MEDIA_TYPE} config)`);
}

function parseConfig(bytes: Buffer, where: string): CacheConfig {
  try {
    const c = JSON.parse(bytes.toString('utf8')) as CacheConfig;
    if (typeof c !== 'object' || c === null || (c.layers !== undefined && !Array.isArray(c.layers)) || (c.records !== undefined && !Array.isArray(c.records))) throw new Error('bad shape');
    return c;
  } catch {
    throw new KeelError(`${where}: the cache config is not valid JSON of BuildKit's cache format`);
  }
}

async function openLocal(spec: Extract<CacheImportSpec, { type: 'local' }>): Promise<OpenedCache | undefined> {
  const fs = await import('node:fs');
  const { join, resolve } = await import('node:path');
  const dir = resolve(spec.src);
  if (!fs.existsSync(join(dir, 'index.json'))) {
    if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new KeelError(`--cache-from type=local,src=${spec.src}: not a directory`);
    return undefined;
  }
  const { OciLayout, parseDigest, REF_NAME } = await import('../layers/index.js');
  let layout;
  try {
    layout = await OciLayout.open(dir);
  } catch (err) {
    throw new KeelError(`--cache-from type=local,src=${spec.src}: ${(err as Error).message}`);
  }
  const where = `--cache-from type=local,src=${spec.src}`;
  let desc: ContentDescriptor | undefined;
  const index = await layout.readIndex();
  if (spec.digest) desc = index.manifests.find((m) => m.digest === spec.digest) ?? { mediaType: '', digest: spec.digest, size: 0 };
  else desc = index.manifests.find((m) => m.annotations?.[REF_NAME] === (spec.tag ?? 'latest'));
  if (!desc) return undefined;
  const bytes = await layout.readBytes(parseDigest(desc.digest), desc.size || undefined, `${where}: manifest`);
  const m = readManifest(JSON.parse(bytes.toString('utf8')), where);
  const config = parseConfig(await layout.readBytes(parseDigest(m.config.digest), m.config.size, `${where}: config`), where);
  return {
    config,
    descriptors: new Map(m.blobs.map((b) => [b.digest, b])),
    source: { name: `type=local,src=${spec.src}`, read: (b) => layout.readBlob(parseDigest(b.digest), b.size, `${where}: blob ${b.digest}`) },
  };
}

async function openRegistry(spec: Extract<CacheImportSpec, { type: 'registry' }>, registry: RegistryOptions): Promise<OpenedCache | undefined> {
  const { RegistryClient } = await import('./registry.js');
  const ref = parseReference(spec.ref);
  const where = `--cache-from type=registry,ref=${spec.ref}`;
  const client = new RegistryClient(ref.registry, ref.repository, registry, 'pull');
  let m;
  try {
    m = await client.getManifest(ref.digest ?? ref.tag ?? 'latest');
  } catch (err) {
    const msg = (err as Error).message;
    if (/manifest unknown|NAME_UNKNOWN|HTTP 404/.test(msg)) return undefined;
    throw new KeelError(`${where}: ${msg}`);
  }
  const doc = readManifest(JSON.parse(m.bytes.toString('utf8')), where);
  const chunks: Buffer[] = [];
  for await (const c of client.getBlob(doc.config.digest)) chunks.push(c);
  const bytes = Buffer.concat(chunks);
  const { sha256 } = await import('../layers/index.js');
  if (sha256(bytes) !== doc.config.digest) throw new KeelError(`${where}: the cache config does not match its digest`);
  return {
    config: parseConfig(bytes, where),
    descriptors: new Map(doc.blobs.map((b) => [b.digest, b])),
    source: { name: `type=registry,ref=${spec.ref}`, read: (b) => client.getBlob(b.digest) },
  };
}

/**
 * Brings an imported layer into the store: its blob (verified by digest) and the uncompressed blob
 * (verified against the diff ID), recorded like a layer built here.
 */
export async function fetchImportedLayer(store: BuildStore, layer: NonNullable<ImportedHit['layer']>): Promise<void> {
  const { parseDigest, compressionOfMediaType, decompress, MediaType } = await import('../layers/index.js');
  const layout = await store.layout();
  const what = `layer ${layer.blob.digest} of cache ${layer.source.name}`;
  const c = compressionOfMediaType(layer.blob.mediaType);
  if (!c) throw new KeelError(`${what}: unsupported media type ${layer.blob.mediaType}`);
  const d = parseDigest(layer.blob.digest);
  await layout.putStream(layer.source.read(layer.blob), { digest: d, size: layer.blob.size }, what);
  if (c === 'none') {
    if (layer.blob.digest !== layer.diffID) throw new KeelError(`${what}: an uncompressed layer whose digest is not its diff ID ${layer.diffID}`);
    store.addLayerBlobs(layer.diffID, { none: layer.blob });
    return;
  }
  const plain = await layout.putStream(decompress(layout.readBlob(d, layer.blob.size), what), { digest: parseDigest(layer.diffID) }, `${what} (uncompressed)`);
  store.addLayerBlobs(layer.diffID, { [c]: layer.blob, none: { mediaType: MediaType.layer, digest: plain.digest, size: plain.size } });
}

// ---- export ----

export interface ExportInput {
  records: Map<string, StepRecord>;
  /** Stages whose steps mode=min exports (the target and the stages it is FROM). */
  imageStages: Set<number>;
  layerBlob: (diffID: string) => Promise<BlobRef>;
}

/** The cache config and the layer descriptors of the chosen records. */
async function cacheDocument(input: ExportInput, mode: 'min' | 'max'): Promise<{ config: CacheConfig; blobs: ContentDescriptor[] }> {
  const chosen = [...input.records].filter(([, r]) => mode === 'max' || input.imageStages.has(r.stage));
  const keys = new Set(chosen.map(([k]) => k));
  const layers: CacheLayer[] = [];
  const blobs: ContentDescriptor[] = [];
  const layerIndex = new Map<string, number>();
  const records: CacheRecordDoc[] = [];
  const recordIndex = new Map<string, number>();
  const chainTop = new Map<string, number>();
  const visit = async (key: string): Promise<void> => {
    if (recordIndex.has(key)) return;
    const r = input.records.get(key)!;
    const parent = r.parent !== undefined && keys.has(r.parent) ? r.parent : undefined;
    if (parent) await visit(parent);
    const below = parent ? chainTop.get(parent)! : -1;
    let t = below;
    if (r.layer) {
      const diffID = await r.layer.diffID;
      const b = await input.layerBlob(diffID);
      const id = `${b.digest}@${below}`;
      let i = layerIndex.get(id);
      if (i === undefined) {
        i = layers.length;
        layers.push({ blob: b.digest, parent: below, annotations: { mediaType: b.mediaType, diffID, size: b.size, createdAt: r.created } });
        if (!blobs.some((x) => x.digest === b.digest)) blobs.push({ ...b, annotations: { [UNCOMPRESSED]: diffID, [CREATED_AT]: r.created } });
        layerIndex.set(id, i);
      }
      t = i;
    }
    chainTop.set(key, t);
    const rec: CacheRecordDoc = { digest: key };
    if (t >= 0) rec.layers = [{ layer: t, createdAt: r.created }];
    else rec.chains = [{ layers: [], createdAt: r.created }];
    if (parent) rec.inputs = [[{ selector: '', link: recordIndex.get(parent)! }]];
    recordIndex.set(key, records.length);
    records.push(rec);
  };
  for (const [k] of chosen) await visit(k);
  return { config: { layers, records }, blobs };
}

/** Exports the build's cache as `spec` says; returns the cache manifest's descriptor. */
export async function exportCache(store: BuildStore, input: ExportInput, spec: CacheExportSpec, registry: RegistryOptions, progress: Progress): Promise<ContentDescriptor> {
  const { MediaType, sha256, parseDigest } = await import('../layers/index.js');
  const { config, blobs } = await cacheDocument(input, spec.mode ?? 'min');
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc: ContentDescriptor = { mediaType: CACHE_CONFIG_MEDIA_TYPE, digest: sha256(configBytes), size: configBytes.length };
  const manifest = { schemaVersion: 2, mediaType: MediaType.manifest, config: configDesc, layers: blobs };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const descriptor: ContentDescriptor = { mediaType: MediaType.manifest, digest: sha256(bytes), size: bytes.length };
  const src = await store.layout();
  if (spec.type === 'local') {
    const { OciLayout } = await import('../layers/index.js');
    const { resolve } = await import('node:path');
    let dst;
    try {
      dst = await OciLayout.create(resolve(spec.dest));
    } catch (err) {
      throw new KeelError(`--cache-to type=local,dest=${spec.dest}: ${(err as Error).message}`);
    }
    const release = await dst.hold();
    try {
      for (const b of blobs) {
        const d = parseDigest(b.digest);
        if (!(await dst.has(d))) await dst.putStream(src.readBlob(d, b.size), { digest: d, size: b.size }, `layer ${b.digest}`);
      }
      await dst.putBytes(configBytes, { digest: parseDigest(configDesc.digest), size: configDesc.size });
      await dst.putBytes(bytes, { digest: parseDigest(descriptor.digest), size: descriptor.size });
      await dst.tag(spec.tag ?? 'latest', descriptor);
    } finally {
      await release();
    }
  } else {
    const { pushDocument } = await import('./registry.js');
    await src.putBytes(configBytes, { digest: parseDigest(configDesc.digest), size: configDesc.size });
    try {
      await pushDocument(store, parseReference(spec.ref), { descriptor, bytes, blobs: [...blobs, configDesc] }, { ...registry, progress });
    } catch (err) {
      throw new KeelError(`--cache-to type=registry,ref=${spec.ref}: ${(err as Error).message}`);
    }
  }
  progress.info(`exported cache to ${describe(spec)} (${config.records!.length} steps, ${blobs.length} layers): ${descriptor.digest}`);
  return descriptor;
}
