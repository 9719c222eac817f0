// The image half of keel-conformance: checks an OCI image layout directory against the image-spec.
// It validates oci-layout, index.json and every index, manifest and config reachable from it (or
// from the manifests tagged TAG) with keel's generated schema validators; verifies the digest and
// size of every blob; compares media types; streams every layer (gzip, zstd or plain) through a
// strict tar reader to check its entries and whiteouts and to compute its diffID, which must equal
// the config's rootfs.diff_ids. Findings are aggregated per check over the whole layout.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { lstat, open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import {
  IMAGE_SPEC_VERSION,
  checkContentDescriptor,
  checkImageConfig,
  checkImageIndex,
  checkImageLayout,
  checkImageManifest,
  type ContentDescriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type ValidationProblem,
} from '../../src/spec/index.js';
import { KeelError } from '../../src/util/errors.js';
import { specRef, type SpecRef } from '../check.js';
import { makeReport, pool, type CheckMeta, type CheckResult, type Level, type Report } from '../report.js';
import { TarReader, cleanPath, type TarEntry } from './tar.js';

export interface LayoutRef {
  dir: string;
  /** Only the manifests whose org.opencontainers.image.ref.name is this tag. */
  tag?: string;
}

/** Splits DIR[:TAG]; a path that exists as a directory is taken whole even if it has a colon. */
export function parseLayoutRef(ref: string): LayoutRef {
  if (existsSync(ref) && statSync(ref).isDirectory()) return { dir: ref };
  const i = ref.lastIndexOf(':');
  if (i > 0 && !ref.slice(i + 1).includes('/')) return { dir: ref.slice(0, i), tag: ref.slice(i + 1) };
  return { dir: ref };
}

export const MEDIA = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ndLayer: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ndLayerGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ndLayerZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
} as const;

type Compression = 'none' | 'gzip' | 'zstd';
const LAYER_COMPRESSION: Record<string, Compression> = {
  [MEDIA.layer]: 'none',
  [MEDIA.layerGzip]: 'gzip',
  [MEDIA.layerZstd]: 'zstd',
  [MEDIA.ndLayer]: 'none',
  [MEDIA.ndLayerGzip]: 'gzip',
  [MEDIA.ndLayerZstd]: 'zstd',
};

const REF_NAME = 'org.opencontainers.image.ref.name';
const SPEC = `https://github.com/opencontainers/image-spec/blob/v${IMAGE_SPEC_VERSION}/`;
const layoutMd = (t: string) => specRef(SPEC, 'image-layout.md', t);
const descriptorMd = (t: string) => specRef(SPEC, 'descriptor.md', t);
const manifestMd = (t: string) => specRef(SPEC, 'manifest.md', t);
const indexMd = (t: string) => specRef(SPEC, 'image-index.md', t);
const configMd = (t: string) => specRef(SPEC, 'config.md', t);
const layerMd = (t: string) => specRef(SPEC, 'layer.md', t);

function meta(ref: SpecRef, id: string, level: Level, statement: string): CheckMeta {
  return { id, section: ref.section, url: ref.url, level, statement };
}

/** Every image check, in report order. */
export const IMAGE_CHECKS: CheckMeta[] = [
  meta(layoutMd('oci-layout file'), 'layout.oci-layout', 'MUST', 'The oci-layout file MUST exist, MUST be a JSON object and MUST contain imageLayoutVersion.'),
  meta(layoutMd('index.json file'), 'layout.index-json', 'MUST', 'index.json MUST exist and MUST be an image index JSON object.'),
  meta(layoutMd('Content'), 'layout.blobs-dir', 'MUST', 'The blobs directory MUST exist.'),
  meta(layoutMd('Blobs'), 'layout.blob-names', 'MUST', 'The entry names <alg> and <encoded> under blobs MUST match the digest grammar.'),
  meta(layoutMd('Blobs'), 'layout.blob-digests', 'MUST', 'The content of blobs/<alg>/<encoded> MUST match the digest <alg>:<encoded>.'),
  meta(descriptorMd('Properties'), 'descriptor.schema', 'MUST', 'Every descriptor is a valid content descriptor (mediaType, digest, size, ...).'),
  meta(descriptorMd('Registered algorithms'), 'descriptor.digest-algorithm', 'MUST', 'sha256 and sha512 encoded portions MUST be lowercase hex of 64 and 128 characters.'),
  meta(layoutMd('Blobs'), 'descriptor.blob-present', 'SHOULD', 'A referenced blob missing from the layout SHOULD be fulfilled by an external blob store (it is present here, or the descriptor has urls).'),
  meta(descriptorMd('Properties'), 'descriptor.size', 'MUST', 'size specifies the size, in bytes, of the raw content (it equals the blob length).'),
  meta(descriptorMd('Digests'), 'descriptor.digest', 'MUST', 'The digest of the targeted content matches the descriptor digest.'),
  meta(descriptorMd('Embedded Content'), 'descriptor.embedded-data', 'MUST', 'data, when present, MUST be base64 of the content: its digest and size match the descriptor.'),
  meta(descriptorMd('Properties'), 'descriptor.media-type', 'MUST', "mediaType is the media type of the referenced content (it matches the manifest's or index's own mediaType)."),
  meta(indexMd('Image Index Property Descriptions'), 'index.schema', 'MUST', 'Every image index (index.json and nested indexes) is valid against the image index schema (schemaVersion 2).'),
  meta(indexMd('Image Index Property Descriptions'), 'index.media-type', 'MUST', 'An index mediaType, when used, MUST be application/vnd.oci.image.index.v1+json.'),
  meta(indexMd('Image Index Property Descriptions'), 'index.media-type-present', 'SHOULD', 'The index mediaType property SHOULD be used.'),
  meta(manifestMd('Image Manifest Property Descriptions'), 'manifest.schema', 'MUST', 'Every image manifest is valid against the image manifest schema (schemaVersion 2).'),
  meta(manifestMd('Image Manifest Property Descriptions'), 'manifest.media-type', 'MUST', 'A manifest mediaType, when used, MUST be application/vnd.oci.image.manifest.v1+json.'),
  meta(manifestMd('Image Manifest Property Descriptions'), 'manifest.media-type-present', 'SHOULD', 'The manifest mediaType property SHOULD be used.'),
  meta(manifestMd('Image Manifest Property Descriptions'), 'manifest.layer-media-types', 'SHOULD', 'Image layers SHOULD use the OCI layer media types (tar, tar+gzip, tar+zstd).'),
  meta(indexMd('Image Index Property Descriptions'), 'index.platform-matches-config', 'SHOULD', "A descriptor's platform describes the image: its os and architecture match the config's."),
  meta(configMd('Properties'), 'config.schema', 'MUST', 'Every image configuration is valid against the image config schema (architecture, os, rootfs, ...).'),
  meta(configMd('Properties'), 'config.rootfs-type', 'MUST', 'rootfs.type MUST be set to layers.'),
  meta(configMd('Layer DiffID'), 'config.diff-ids', 'MUST', "rootfs.diff_ids lists the digests of the uncompressed layers, in order: each equals the layer's DiffID."),
  meta(configMd('Properties'), 'config.history-layers', 'SHOULD', 'history has one entry without empty_layer for each layer.'),
  meta(layerMd('+gzip Media Types'), 'layer.compression', 'MUST', 'A layer is compressed as its media type says (+gzip: gzip, +zstd: zstd, .tar: uncompressed).'),
  meta(layerMd('Distributable Format'), 'layer.tar', 'MUST', 'Layer changesets MUST be packaged in a tar archive (valid header checksums, no truncation, an end-of-archive marker).'),
  meta(layerMd('Distributable Format'), 'layer.no-duplicates', 'MUST', 'Layer changesets MUST NOT include duplicate entries for file paths.'),
  meta(layerMd('Distributable Format'), 'layer.relative-paths', 'MUST', 'Entries are paths relative to the root filesystem: none is absolute or climbs out with "..".'),
  meta(layerMd('Whiteouts'), 'layer.whiteout-files', 'MUST', 'A whiteout is an empty regular file named .wh.<name>; .wh..wh..opq is the only .wh..wh. name.'),
  meta(layerMd('Whiteouts'), 'layer.whiteout-oci-form', 'MUST', 'Removals are OCI whiteout files, not overlayfs whiteouts (0:0 character devices) or overlay opaque xattrs.'),
  meta(layerMd('Whiteouts'), 'layer.whiteout-lower-only', 'SHOULD', 'Whiteout files MUST only apply to lower layers: a layer does not white out a path it also adds.'),
  meta(layerMd('Opaque Whiteout'), 'layer.explicit-whiteouts', 'SHOULD', 'Implementations SHOULD generate layers using explicit whiteout files rather than opaque whiteouts.'),
  meta(layerMd('File Attributes'), 'layer.no-sparse', 'SHOULD', 'Sparse files SHOULD NOT be used.'),
  meta(layerMd('Hardlinks'), 'layer.hardlinks', 'SHOULD', 'A hardlink entry references a path present in the same layer or a lower one.'),
];

/** Accumulates per-check observations over the whole layout. */
class Findings {
  private readonly map = new Map<string, { n: number; problems: string[]; skips: string[] }>();
  private get(id: string) {
    let f = this.map.get(id);
    if (!f) {
      if (!IMAGE_CHECKS.some((c) => c.id === id)) throw new Error(`unknown image check ${id}`);
      f = { n: 0, problems: [], skips: [] };
      this.map.set(id, f);
    }
    return f;
  }
  ok(id: string): void {
    this.get(id).n++;
  }
  bad(id: string, problem: string): void {
    const f = this.get(id);
    f.n++;
    f.problems.push(problem);
  }
  /** Records a result: a problem when `problem` is a string, a pass otherwise. */
  check(id: string, problem: string | null | undefined | false): void {
    if (problem) this.bad(id, problem);
    else this.ok(id);
  }
  skip(id: string, why: string): void {
    this.get(id).skips.push(why);
  }
  results(): CheckResult[] {
    return IMAGE_CHECKS.map((c) => {
      const f = this.map.get(c.id);
      const required = c.level === 'MUST';
      if (!f || f.n === 0) return { ...c, required, status: 'skip' as const, message: f?.skips[0] ?? 'nothing in this layout to check', ms: 0 };
      if (f.problems.length === 0) return { ...c, required, status: 'pass' as const, ms: 0 };
      const shown = f.problems.slice(0, 5).join('\n');
      const more = f.problems.length > 5 ? `\n(and ${f.problems.length - 5} more)` : '';
      return { ...c, required, status: 'fail' as const, message: shown + more, ms: 0 };
    });
  }
}

const ALGORITHMS: Record<string, RegExp> = { sha256: /^[a-f0-9]{64}$/, sha512: /^[a-f0-9]{128}$/ };
const ALG_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*$/;
const ENCODED_GRAMMAR = /^[a-zA-Z0-9=_-]+$/;

function problemsText(errors: ValidationProblem[]): string {
  return errors.map((e) => `${e.path || '/'} ${e.message}`).join(', ');
}

interface BlobFacts {
  exists: boolean;
  size: number;
  /** `<alg>:<hex>` of the content, for a registered algorithm. */
  digest: string | null;
}

interface LayerScan {
  size: number;
  digest: string;
  diffId: string;
  actual: Compression | 'unknown';
  error?: string;
  /** The blob is not in the layout (the descriptor checks report that). */
  missing?: boolean;
  tarProblems: string[];
  paths: Set<string>;
  duplicates: string[];
  escaping: string[];
  badWhiteouts: string[];
  overlayWhiteouts: string[];
  whiteoutTargets: string[];
  opaque: string[];
  sparse: string[];
  /** Hardlink targets not found earlier in this layer. */
  externalLinks: { path: string; target: string }[];
}

// Compression detection, decompression and tar parsing here are the suite's own, not src/layers':
// the image part checks what keel's layer code writes, so it must not share that code's mistakes.
function detectCompression(head: Buffer): Compression | 'unknown' {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (head.length >= 263 && head.toString('latin1', 257, 262) === 'ustar') return 'none';
  if (head.length >= 512 && head.subarray(0, 512).every((b) => b === 0)) return 'none';
  return 'unknown';
}

async function decompressor(c: Compression): Promise<Transform | null> {
  if (c === 'gzip') return createGunzip();
  if (c === 'zstd') {
    const { DecompressStream } = await import('zstd-napi');
    return new DecompressStream() as unknown as Transform;
  }
  return null;
}

function hasher(alg: string, onData?: (b: Buffer) => void) {
  const h = createHash(alg);
  let size = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      size += chunk.length;
      onData?.(chunk);
      cb(null, chunk);
    },
  });
  return { t, result: () => ({ size, hex: h.digest('hex') }) };
}

class ImageChecker {
  readonly f = new Findings();
  private readonly blobFacts = new Map<string, Promise<BlobFacts>>();
  private readonly layerScans = new Map<string, Promise<LayerScan>>();
  private readonly visited = new Set<string>();

  constructor(readonly dir: string) {}

  private blobPath(digest: string): string | null {
    const i = digest.indexOf(':');
    if (i <= 0) return null;
    const alg = digest.slice(0, i);
    const enc = digest.slice(i + 1);
    if (!ALG_GRAMMAR.test(alg) || !ENCODED_GRAMMAR.test(enc)) return null;
    return join(this.dir, 'blobs', alg, enc);
  }

  /** Size and digest of a blob by streaming it once (cached). */
  blob(digest: string): Promise<BlobFacts> {
    let p = this.blobFacts.get(digest);
    if (!p) {
      p = (async () => {
        const path = this.blobPath(digest);
        const alg = digest.split(':')[0];
        if (!path) return { exists: false, size: 0, digest: null };
        let st;
        try {
          st = await stat(path);
        } catch {
          return { exists: false, size: 0, digest: null };
        }
        if (!st.isFile()) return { exists: false, size: 0, digest: null };
        if (!ALGORITHMS[alg]) return { exists: true, size: st.size, digest: null };
        const h = createHash(alg);
        for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
        return { exists: true, size: st.size, digest: `${alg}:${h.digest('hex')}` };
      })();
      this.blobFacts.set(digest, p);
    }
    return p;
  }

  /** Checks a descriptor and the blob it targets; returns the blob's bytes when `read` and the blob verified. */
  async descriptor(d: ContentDescriptor, where: string, read: boolean): Promise<Buffer | null> {
    const v = checkContentDescriptor(d);
    this.f.check('descriptor.schema', !v.ok && `${where}: ${problemsText(v.errors)}`);
    if (typeof d?.digest !== 'string') return null;
    const [alg, enc] = [d.digest.split(':')[0], d.digest.slice(d.digest.indexOf(':') + 1)];
    if (ALGORITHMS[alg]) this.f.check('descriptor.digest-algorithm', !ALGORITHMS[alg].test(enc) && `${where}: ${d.digest} is not a well-formed ${alg} digest`);
    else this.f.skip('descriptor.digest-algorithm', `${where}: unregistered algorithm ${alg}`);
    if (d.data !== undefined) {
      const data = typeof d.data === 'string' && /^[A-Za-z0-9+/]*={0,2}$/.test(d.data) ? Buffer.from(d.data, 'base64') : null;
      if (!data) this.f.bad('descriptor.embedded-data', `${where}: data is not base64`);
      else {
        const wrong: string[] = [];
        if (data.length !== d.size) wrong.push(`decodes to ${data.length} bytes, size says ${d.size}`);
        if (ALGORITHMS[alg] && createHash(alg).update(data).digest('hex') !== enc) wrong.push('does not match the digest');
        this.f.check('descriptor.embedded-data', wrong.length > 0 && `${where}: data ${wrong.join(' and ')}`);
      }
    }
    const b = await this.blob(d.digest);
    if (!b.exists) {
      if (d.urls?.length) this.f.skip('descriptor.blob-present', `${where}: ${d.digest} is not in the layout (it has urls)`);
      else this.f.bad('descriptor.blob-present', `${where}: blob ${d.digest} is not in the layout`);
      return null;
    }
    this.f.ok('descriptor.blob-present');
    this.f.check('descriptor.size', b.size !== d.size && `${where}: size ${d.size}, blob is ${b.size} bytes`);
    if (b.digest) this.f.check('descriptor.digest', b.digest !== d.digest && `${where}: ${d.digest} targets content whose digest is ${b.digest}`);
    if (!read) return null;
    return readFile(this.blobPath(d.digest)!);
  }

  private parse(bytes: Buffer, where: string, id: 'index.schema' | 'manifest.schema' | 'config.schema'): unknown {
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      this.f.bad(id, `${where}: not JSON (${(err as Error).message})`);
      return undefined;
    }
  }

  /** Follows one descriptor of an index. */
  async visit(d: ContentDescriptor, where: string): Promise<void> {
    const mt = d?.mediaType;
    if (mt !== MEDIA.index && mt !== MEDIA.manifest) {
      await this.descriptor(d, where, false);
      return;
    }
    const key = `${mt} ${d.digest}`;
    const first = !this.visited.has(key);
    this.visited.add(key);
    const bytes = await this.descriptor(d, where, first);
    if (!bytes) return;
    const doc = this.parse(bytes, where, mt === MEDIA.index ? 'index.schema' : 'manifest.schema');
    if (doc === undefined) return;
    if (mt === MEDIA.index) await this.index(doc, `${where} (index ${d.digest.slice(0, 19)})`, d.mediaType);
    else await this.manifest(doc, `${where} (manifest ${d.digest.slice(0, 19)})`, d);
  }

  /** Checks an image index (index.json or nested) and follows its manifests. */
  async index(doc: unknown, where: string, descriptorType?: string, tag?: string): Promise<void> {
    const v = checkImageIndex(doc);
    this.f.check('index.schema', !v.ok && `${where}: ${problemsText(v.errors)}`);
    const idx = doc as ImageIndex;
    if (!idx || typeof idx !== 'object') return;
    if (idx.mediaType === undefined) this.f.bad('index.media-type-present', `${where}: no mediaType`);
    else {
      this.f.ok('index.media-type-present');
      this.f.check('index.media-type', idx.mediaType !== MEDIA.index && `${where}: mediaType ${idx.mediaType}`);
    }
    if (descriptorType && idx.mediaType !== undefined) this.f.check('descriptor.media-type', idx.mediaType !== descriptorType && `${where}: descriptor says ${descriptorType}, content says ${idx.mediaType}`);
    const list = Array.isArray(idx.manifests) ? idx.manifests : [];
    const chosen = tag === undefined ? list : list.filter((m) => m?.annotations?.[REF_NAME] === tag);
    if (tag !== undefined && chosen.length === 0) throw new KeelError(`${this.dir}: no manifest tagged ${JSON.stringify(tag)} in index.json (tags: ${list.map((m) => m?.annotations?.[REF_NAME]).filter(Boolean).join(', ') || 'none'})`);
    await Promise.all(chosen.map((m) => this.visit(m, `${where} → ${m?.annotations?.[REF_NAME] ?? m?.digest?.slice(0, 19) ?? 'descriptor'}`)));
    this.platforms.push(...chosen.filter((m) => m?.platform && m.mediaType === MEDIA.manifest).map((m) => ({ digest: m.digest, platform: m.platform!, where })));
  }

  private readonly platforms: { digest: string; platform: { os: string; architecture: string }; where: string }[] = [];
  private readonly configsByManifest = new Map<string, ImageConfig>();

  async manifest(doc: unknown, where: string, d: ContentDescriptor): Promise<void> {
    const v = checkImageManifest(doc);
    this.f.check('manifest.schema', !v.ok && `${where}: ${problemsText(v.errors)}`);
    const m = doc as ImageManifest;
    if (!m || typeof m !== 'object') return;
    if (m.mediaType === undefined) this.f.bad('manifest.media-type-present', `${where}: no mediaType`);
    else {
      this.f.ok('manifest.media-type-present');
      this.f.check('manifest.media-type', m.mediaType !== MEDIA.manifest && `${where}: mediaType ${m.mediaType}`);
      this.f.check('descriptor.media-type', m.mediaType !== d.mediaType && `${where}: descriptor says ${d.mediaType}, content says ${m.mediaType}`);
    }
    const layers = Array.isArray(m.layers) ? m.layers : [];
    const isImage = m.config?.mediaType === MEDIA.config;
    const configBytes = m.config ? await this.descriptor(m.config, `${where} config`, isImage) : null;
    const scans = await Promise.all(
      layers.map(async (l, i) => {
        const lw = `${where} layer ${i} (${l?.digest?.slice(0, 19)})`;
        const compression = isImage ? LAYER_COMPRESSION[l?.mediaType] : undefined;
        if (isImage) this.f.check('manifest.layer-media-types', compression === undefined && `${lw}: media type ${l?.mediaType}`);
        // Scan first: it reads the blob once and leaves its size and digest for the descriptor check.
        const scan = compression !== undefined && typeof l?.digest === 'string' ? await this.layer(l) : null;
        await this.descriptor(l, lw, false);
        return scan && compression !== undefined ? { scan, where: lw, compression } : null;
      }),
    );
    if (!isImage) return;
    const layerScans = scans.filter((s): s is NonNullable<typeof s> => s !== null);
    this.layerChecks(layerScans);
    if (!configBytes) return;
    const config = this.parse(configBytes, `${where} config`, 'config.schema');
    if (config === undefined) return;
    const cv = checkImageConfig(config);
    this.f.check('config.schema', !cv.ok && `${where} config: ${problemsText(cv.errors)}`);
    const c = config as ImageConfig;
    this.configsByManifest.set(d.digest, c);
    this.f.check('config.rootfs-type', c?.rootfs?.type !== 'layers' && `${where} config: rootfs.type is ${JSON.stringify(c?.rootfs?.type)}`);
    const diffIds = Array.isArray(c?.rootfs?.diff_ids) ? c.rootfs.diff_ids : [];
    if (diffIds.length !== layers.length) this.f.bad('config.diff-ids', `${where}: ${diffIds.length} diff_ids for ${layers.length} layers`);
    else if (scans.some((s) => s === null)) this.f.skip('config.diff-ids', `${where}: a layer has a media type whose content cannot be read`);
    else {
      const wrong = scans.map((s, i) => (s && !s.scan.error && diffIds[i] !== s.scan.diffId ? `layer ${i}: diff_id ${diffIds[i]}, uncompressed digest ${s.scan.diffId}` : null)).filter(Boolean);
      const unreadable = scans.filter((s) => s?.scan.error);
      if (unreadable.length && !wrong.length) this.f.skip('config.diff-ids', `${where}: a layer could not be decompressed`);
      else this.f.check('config.diff-ids', wrong.length > 0 && `${where}: ${wrong.join('; ')}`);
    }
    if (Array.isArray(c?.history)) {
      const nonEmpty = c.history.filter((h) => !h?.empty_layer).length;
      this.f.check('config.history-layers', nonEmpty !== layers.length && `${where}: ${nonEmpty} history entries without empty_layer for ${layers.length} layers`);
    }
  }

  /** Checks done on the layers of one manifest, in order (whiteouts and hardlinks look at lower layers). */
  private layerChecks(layers: { scan: LayerScan; where: string; compression: Compression }[]): void {
    const lower = new Set<string>();
    for (const { scan: s, where, compression } of layers) {
      if (s.missing) continue;
      if (s.error && s.actual === 'unknown') {
        this.f.bad('layer.compression', `${where}: ${s.error}`);
        continue;
      }
      this.f.check('layer.compression', s.actual !== compression && `${where}: media type says ${compression}, content is ${s.actual}`);
      if (s.error) {
        this.f.bad('layer.tar', `${where}: ${s.error}`);
        continue;
      }
      this.f.check('layer.tar', s.tarProblems.length > 0 && `${where}: ${s.tarProblems.join('; ')}`);
      this.f.check('layer.no-duplicates', s.duplicates.length > 0 && `${where}: duplicate entries ${s.duplicates.slice(0, 5).join(', ')}`);
      this.f.check('layer.relative-paths', s.escaping.length > 0 && `${where}: ${s.escaping.slice(0, 5).join(', ')}`);
      this.f.check('layer.whiteout-files', s.badWhiteouts.length > 0 && `${where}: ${s.badWhiteouts.slice(0, 5).join(', ')}`);
      this.f.check('layer.whiteout-oci-form', s.overlayWhiteouts.length > 0 && `${where}: ${s.overlayWhiteouts.slice(0, 5).join(', ')}`);
      const sameLayer = s.whiteoutTargets.filter((t) => s.paths.has(t));
      this.f.check('layer.whiteout-lower-only', sameLayer.length > 0 && `${where}: whites out paths it also adds: ${sameLayer.slice(0, 5).join(', ')}`);
      this.f.check('layer.explicit-whiteouts', s.opaque.length > 0 && `${where}: opaque whiteouts in ${s.opaque.slice(0, 5).join(', ')}`);
      this.f.check('layer.no-sparse', s.sparse.length > 0 && `${where}: sparse entries ${s.sparse.slice(0, 5).join(', ')}`);
      const dangling = s.externalLinks.filter((l) => !lower.has(l.target));
      this.f.check('layer.hardlinks', dangling.length > 0 && `${where}: ${dangling.slice(0, 5).map((l) => `${l.path} → ${l.target}`).join(', ')}`);
      for (const p of s.paths) lower.add(p);
    }
  }

  /** Streams a layer once: digest of the blob, diffID of its tar, and what its entries look like. */
  layer(d: ContentDescriptor): Promise<LayerScan> {
    const key = d.digest;
    let p = this.layerScans.get(key);
    if (!p) {
      p = this.scanLayer(d);
      this.layerScans.set(key, p);
    }
    return p;
  }

  private async scanLayer(d: ContentDescriptor): Promise<LayerScan> {
    const scan: LayerScan = {
      size: 0, digest: '', diffId: '', actual: 'unknown', tarProblems: [], paths: new Set(), duplicates: [], escaping: [],
      badWhiteouts: [], overlayWhiteouts: [], whiteoutTargets: [], opaque: [], sparse: [], externalLinks: [],
    };
    const path = this.blobPath(d.digest);
    if (!path) return { ...scan, error: 'unusable digest' };
    const fh = await open(path, 'r').catch(() => null);
    if (!fh) return { ...scan, error: 'blob missing', missing: true };
    const head = Buffer.alloc(512);
    const { bytesRead } = await fh.read(head, 0, 512, 0);
    await fh.close();
    scan.actual = detectCompression(head.subarray(0, bytesRead));
    if (scan.actual === 'unknown') return { ...scan, error: 'content is neither gzip, zstd nor a tar archive' };
    const alg = ALGORITHMS[d.digest.split(':')[0]] ? d.digest.split(':')[0] : 'sha256';
    const outer = hasher(alg);
    const dec = await decompressor(scan.actual);
    // An uncompressed sha256 layer is its own diffID: hash it once.
    const inner = dec || alg !== 'sha256' ? hasher('sha256') : null;
    const reader = new TarReader((e) => this.entry(scan, e));
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        reader.push(chunk);
        cb();
      },
    });
    const stages: (Readable | Transform | Writable)[] = [createReadStream(path, { highWaterMark: 1 << 20 }), outer.t];
    if (dec) stages.push(dec);
    if (inner) stages.push(inner.t);
    stages.push(sink);
    try {
      await pipeline(stages as unknown as [Readable, ...Transform[], Writable]);
    } catch (err) {
      return { ...scan, error: `cannot decompress (${(err as Error).message})` };
    }
    reader.end();
    const o = outer.result();
    scan.size = o.size;
    scan.digest = `${alg}:${o.hex}`;
    scan.diffId = `sha256:${inner ? inner.result().hex : o.hex}`;
    scan.tarProblems = reader.problems;
    // The blob was read in full here: feed the layout-wide digest check without reading it again.
    if (!this.blobFacts.has(d.digest)) this.blobFacts.set(d.digest, Promise.resolve({ exists: true, size: o.size, digest: scan.digest }));
    return scan;
  }

  private entry(s: LayerScan, e: TarEntry): void {
    const raw = e.path;
    const p = cleanPath(raw);
    if (raw.startsWith('/') || p.split('/').includes('..')) s.escaping.push(raw);
    if (p === '') return;
    if (s.paths.has(p)) s.duplicates.push(p);
    s.paths.add(p);
    const slash = p.lastIndexOf('/');
    const dir = slash < 0 ? '' : p.slice(0, slash);
    const base = p.slice(slash + 1);
    if (base.startsWith('.wh.')) {
      if (base === '.wh..wh..opq') s.opaque.push(dir || '/');
      else if (base.startsWith('.wh..wh.')) s.badWhiteouts.push(`${p} (not an OCI whiteout name)`);
      else s.whiteoutTargets.push(dir ? `${dir}/${base.slice(4)}` : base.slice(4));
      if (e.type !== 'file' || e.size !== 0) s.badWhiteouts.push(`${p} (${e.type}, ${e.size} bytes: not an empty regular file)`);
    }
    if (e.type === 'char' && e.devmajor === 0 && e.devminor === 0) s.overlayWhiteouts.push(`${p} (0:0 character device)`);
    for (const k of Object.keys(e.pax)) {
      if (/^SCHILY\.xattr\.(trusted|user)\.overlay\.(opaque|whiteout)$/.test(k)) s.overlayWhiteouts.push(`${p} (${k.slice(13)} xattr)`);
      if (k.startsWith('GNU.sparse.')) s.sparse.push(p);
    }
    if (e.type === 'sparse') s.sparse.push(p);
    if (e.type === 'hardlink') {
      const target = cleanPath(e.linkname);
      if (!s.paths.has(target) || target === p) s.externalLinks.push({ path: p, target });
    }
  }

  /** The layout-wide checks: oci-layout, blobs directory, every blob's name and digest. */
  async layout(): Promise<void> {
    const f = this.f;
    let layout: unknown;
    try {
      layout = JSON.parse(await readFile(join(this.dir, 'oci-layout'), 'utf8'));
      const v = checkImageLayout(layout);
      f.check('layout.oci-layout', !v.ok && `oci-layout: ${problemsText(v.errors)}`);
    } catch (err) {
      f.bad('layout.oci-layout', `oci-layout: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `not JSON (${(err as Error).message})`}`);
    }
    const blobs = join(this.dir, 'blobs');
    const st = await lstat(blobs).catch(() => null);
    f.check('layout.blobs-dir', !st?.isDirectory() && 'blobs is missing or not a directory');
    if (!st?.isDirectory()) return;
    const files: { alg: string; enc: string }[] = [];
    for (const alg of await readdir(blobs)) {
      const algDir = join(blobs, alg);
      if (!(await lstat(algDir)).isDirectory()) {
        f.bad('layout.blob-names', `blobs/${alg} is not a directory`);
        continue;
      }
      f.check('layout.blob-names', !ALG_GRAMMAR.test(alg) && `blobs/${alg}: not an algorithm name`);
      for (const enc of await readdir(algDir)) {
        f.check('layout.blob-names', !ENCODED_GRAMMAR.test(enc) && `blobs/${alg}/${enc}: not an encoded digest`);
        if (ALG_GRAMMAR.test(alg) && ENCODED_GRAMMAR.test(enc)) files.push({ alg, enc });
      }
    }
    await pool(files, 4, async ({ alg, enc }) => {
      if (!ALGORITHMS[alg]) return f.skip('layout.blob-digests', `blobs/${alg}/${enc}: unregistered algorithm`);
      const b = await this.blob(`${alg}:${enc}`);
      if (!b.exists) return f.bad('layout.blob-digests', `blobs/${alg}/${enc} is not a regular file`);
      f.check('layout.blob-digests', b.digest !== `${alg}:${enc}` && `blobs/${alg}/${enc}: content digest is ${b.digest}`);
    });
  }

  /** index.json and everything reachable from it (or from the manifests tagged `tag`). */
  async images(tag?: string): Promise<void> {
    let doc: unknown;
    try {
      doc = JSON.parse(await readFile(join(this.dir, 'index.json'), 'utf8'));
    } catch (err) {
      this.f.bad('layout.index-json', `index.json: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `not JSON (${(err as Error).message})`}`);
      if (tag !== undefined) throw new KeelError(`${this.dir}: cannot read index.json to find the tag ${JSON.stringify(tag)}`);
      return;
    }
    const v = checkImageIndex(doc);
    this.f.check('layout.index-json', !v.ok && `index.json: ${problemsText(v.errors)}`);
    await this.index(doc, 'index.json', undefined, tag);
    for (const p of this.platforms) {
      const c = this.configsByManifest.get(p.digest);
      if (!c) continue;
      const mismatch = p.platform.os !== c.os || p.platform.architecture !== c.architecture;
      this.f.check('index.platform-matches-config', mismatch && `${p.where} → ${p.digest.slice(0, 19)}: platform ${p.platform.os}/${p.platform.architecture}, config ${c.os}/${c.architecture}`);
    }
  }
}

export interface ImageSuiteOptions {
  onResult?: (r: CheckResult) => void;
}

/** Checks an OCI image layout (DIR, or the images tagged TAG in it) against the image-spec. */
export async function runImageSuite(ref: LayoutRef, opts: ImageSuiteOptions = {}): Promise<Report> {
  const started = Date.now();
  const st = await stat(ref.dir).catch(() => null);
  if (!st?.isDirectory()) throw new KeelError(`not an image layout directory: ${ref.dir}`);
  const checker = new ImageChecker(ref.dir);
  // Images first: layers are streamed once there and their digests reused by the blob pass.
  await checker.images(ref.tag);
  await checker.layout();
  const results = checker.f.results();
  for (const r of results) opts.onResult?.(r);
  return makeReport('image', ref.tag === undefined ? ref.dir : `${ref.dir}:${ref.tag}`, IMAGE_SPEC_VERSION, started, results);
}
