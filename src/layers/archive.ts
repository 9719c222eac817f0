/**
 * Image archives: a layout as one OCI archive tar stream (oci-layout, index.json, blobs/...),
 * written from a store; OCI archives and docker-archives read back into one, streaming and verified.
 */
import type { Writable } from 'node:stream';
import { KeelError } from '../util/errors.js';
import { posix } from 'node:path';
import { validateImageIndex, validateImageLayout, validateImageConfig, parseJson } from '../spec/index.js';
import type { ImageIndex, ContentDescriptor } from '../spec/index.js';
import { TarWriter, readTar, type TarHeader } from './tar.js';
import { parseDigest, type Digest } from './digest.js';
import { REF_NAME, checkTag, type OciLayout, type IndexEntry } from './store.js';
import { MediaType, detectCompression, type Compression } from './compression.js';
import { sourceDateEpochFromEnv } from './diff.js';

function pushTo(out: Writable, chunk: Buffer): void | Promise<void> {
  if (out.write(chunk)) return;
  return new Promise<void>((resolve, reject) => {
    const onErr = (e: Error) => { out.off('drain', onDrain); reject(e); };
    const onDrain = () => { out.off('error', onErr); resolve(); };
    out.once('drain', onDrain);
    out.once('error', onErr);
  });
}

export interface ExportOptions {
  /** Only these tags (default: every entry of index.json). */
  tags?: string[];
}

/**
 * Writes the layout (or the images with the given tags) as an OCI archive to `out`. Entries are
 * in a fixed order with fixed metadata (mtime SOURCE_DATE_EPOCH or 0), so the same images make
 * the same archive.
 */
export async function exportArchive(layout: OciLayout, out: Writable, opts: ExportOptions = {}): Promise<{ blobs: number; bytes: number }> {
  const index = await layout.readIndex();
  let manifests: IndexEntry[] = index.manifests;
  if (opts.tags) {
    manifests = [];
    for (const t of opts.tags) {
      const m = index.manifests.filter((e) => e.annotations?.[REF_NAME] === t);
      if (!m.length) throw new KeelError(`${layout.root}: no image tagged ${JSON.stringify(t)}`);
      manifests.push(...m);
    }
  }
  const subset: ImageIndex = { ...index, manifests };
  // Reachable blobs of the chosen entries: reuse the store's walk on a temporary view.
  const blobs = [...(await reachableFrom(layout, manifests))].sort();
  const mtime = sourceDateEpochFromEnv() ?? 0;
  const tw = new TarWriter({ write: (c) => pushTo(out, c) });
  const meta = (path: string, type: 'file' | 'dir', size = 0): TarHeader => ({ path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size, mtime });
  const layoutDoc = Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const indexDoc = Buffer.from(JSON.stringify(subset));
  await tw.add(meta('blobs', 'dir'));
  const algs = [...new Set(blobs.map((d) => d.slice(0, d.indexOf(':'))))].sort();
  for (const alg of algs) {
    await tw.add(meta(`blobs/${alg}`, 'dir'));
    for (const d of blobs.filter((b) => b.startsWith(`${alg}:`))) {
      const size = await layout.size(d);
      if (size === undefined) continue; // not stored locally (e.g. foreign layer): nothing to copy
      await tw.addStream(meta(`blobs/${alg}/${d.slice(alg.length + 1)}`, 'file', size), layout.readBlob(d, size));
    }
  }
  await tw.add(meta('index.json', 'file', indexDoc.length), indexDoc);
  await tw.add(meta('oci-layout', 'file', layoutDoc.length), layoutDoc);
  await tw.finish();
  return { blobs: blobs.length, bytes: tw.written };
}

async function reachableFrom(layout: OciLayout, manifests: IndexEntry[]): Promise<Set<Digest>> {
  const seen = new Set<Digest>();
  const walk = async (desc: { digest: string; mediaType?: string; size?: number }): Promise<void> => {
    const digest = parseDigest(desc.digest, 'descriptor digest');
    if (seen.has(digest)) return;
    seen.add(digest);
    const t = desc.mediaType;
    if (t !== MediaType.index && t !== MediaType.manifest && t !== MediaType.dockerManifest && t !== MediaType.dockerManifestList) return;
    if (!(await layout.has(digest))) return;
    const doc = (await layout.readJson(desc, `blob ${digest}`)) as Record<string, unknown>;
    const refs: ContentDescriptor[] = [];
    if (Array.isArray(doc.manifests)) refs.push(...(doc.manifests as ContentDescriptor[]));
    if (doc.config && typeof doc.config === 'object') refs.push(doc.config as ContentDescriptor);
    if (Array.isArray(doc.layers)) refs.push(...(doc.layers as ContentDescriptor[]));
    if (doc.subject && typeof doc.subject === 'object') refs.push(doc.subject as ContentDescriptor);
    for (const r of refs) await walk(r);
  };
  for (const m of manifests) await walk(m);
  return seen;
}

export interface ImportOptions {
  /**
   * The tag a docker-archive's RepoTags name becomes in the layout (e.g. the familiar name);
   * default the name as written.
   */
  tag?: (repoTag: string) => string;
}

/** A docker-archive's manifest.json: one entry per image. */
interface DockerArchiveEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
  LayerSources?: Record<string, { mediaType?: string; size?: number; digest?: string; urls?: string[] }>;
}

type Member = { digest: Digest; size: number; compression: Compression } | { link: string };

const SMALL_DOC = 32 << 20;

async function readSmall(e: { header: TarHeader; body(): AsyncGenerator<Buffer> }, what: string): Promise<string> {
  if (e.header.size > SMALL_DOC) throw new KeelError(`archive: ${what} is too large`);
  const parts: Buffer[] = [];
  for await (const c of e.body()) parts.push(c);
  return Buffer.concat(parts).toString('utf8');
}

/** Passes a stream through, noting its compression from the first bytes. */
async function* sniffing(source: AsyncIterable<Buffer>, seen: { compression: Compression }): AsyncGenerator<Buffer> {
  let head: Buffer | undefined = Buffer.alloc(0);
  for await (const c of source) {
    if (head) {
      head = Buffer.concat([head, c]);
      if (head.length >= 4) { seen.compression = detectCompression(head); head = undefined; }
    }
    yield c;
  }
  if (head) seen.compression = detectCompression(head);
}

/**
 * Reads an image archive into a layout, streaming, every blob verified as it is written, and
 * returns the index entries added (same tags replaced):
 * - an OCI archive (oci-layout, index.json, blobs/...: what exportArchive, `podman save --format
 *   oci-archive`, skopeo and BuildKit write);
 * - a docker-archive (manifest.json naming each image's config and layer tars: `docker save`,
 *   `podman save --format docker-archive`): each image gets a Docker schema 2 manifest over the
 *   same bytes, so its config digest is the image ID docker shows, and is tagged with its
 *   RepoTags. Layers the archive leaves out (foreign ones) are refused by name.
 */
export async function importArchive(source: AsyncIterable<Uint8Array>, layout: OciLayout, opts: ImportOptions = {}): Promise<IndexEntry[]> {
  let index: ImageIndex | undefined;
  let sawLayout = false;
  let docker: DockerArchiveEntry[] | undefined;
  const members = new Map<string, Member>();
  const release = await layout.hold();
  try {
    for await (const e of readTar(source)) {
      const path = e.rawPath.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
      if (e.header.type === 'dir') continue;
      if (e.header.type === 'symlink' || e.header.type === 'hardlink') {
        // docker save links a layer it already wrote: <id>/layer.tar -> ../<other>/layer.tar.
        const target = e.header.type === 'symlink' ? posix.join(posix.dirname(path), e.header.linkname ?? '') : (e.header.linkname ?? '').replace(/^(\.\/)+/, '');
        members.set(path, { link: target });
        continue;
      }
      if (e.header.type !== 'file') continue;
      const m = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(path);
      if (m) {
        const digest = parseDigest(`${m[1]}:${m[2]}`, `archive member ${path}`);
        const seen = { compression: 'none' as Compression };
        await layout.putStream(sniffing(e.body(), seen), { digest, size: e.header.size }, `archive member ${path}`);
        members.set(path, { digest, size: e.header.size, compression: seen.compression });
      } else if (path === 'index.json') {
        index = validateImageIndex(parseJson(await readSmall(e, 'index.json'), 'archive index.json'), 'archive index.json');
      } else if (path === 'oci-layout') {
        validateImageLayout(parseJson(await readSmall(e, 'oci-layout'), 'archive oci-layout'), 'archive oci-layout');
        sawLayout = true;
      } else if (path === 'manifest.json') {
        docker = checkDockerManifest(parseJson(await readSmall(e, 'manifest.json'), 'archive manifest.json'));
      } else if (path !== 'repositories' && !/(^|\/)(json|VERSION)$/.test(path) && e.header.size > 0) {
        // A docker-archive's configs and layer tars (any other file is stored too: gc drops
        // what no image references).
        const seen = { compression: 'none' as Compression };
        const info = await layout.putStream(sniffing(e.body(), seen), { size: e.header.size }, `archive member ${path}`);
        members.set(path, { ...info, compression: seen.compression });
      }
    }
    let entries: IndexEntry[];
    if (sawLayout && index) {
      entries = index.manifests;
      for (const m of entries) {
        if (!(await layout.has(parseDigest(m.digest, 'archive index.json entry')))) {
          throw new KeelError(`archive: index.json names ${m.digest}, which the archive does not contain`);
        }
      }
    } else if (docker) {
      entries = [];
      for (const image of docker) entries.push(...(await dockerImage(layout, image, members, opts)));
    } else {
      throw new KeelError('archive: neither an OCI archive (oci-layout, index.json) nor a docker-archive (manifest.json)');
    }
    await layout.updateIndex((cur) => {
      const tags = new Set(entries.map((m) => m.annotations?.[REF_NAME]).filter(Boolean));
      const kept = cur.manifests.filter((m) => !tags.has(m.annotations?.[REF_NAME]) && !entries.some((n) => n.digest === m.digest && !n.annotations?.[REF_NAME] && !m.annotations?.[REF_NAME]));
      return { ...cur, manifests: [...kept, ...entries] };
    });
    return entries;
  } finally {
    await release();
  }
}

function checkDockerManifest(doc: unknown): DockerArchiveEntry[] {
  const bad = (why: string): never => { throw new KeelError(`archive manifest.json: ${why}`); };
  if (!Array.isArray(doc) || doc.length === 0) bad('expected a list of images');
  for (const [i, e] of (doc as unknown[]).entries()) {
    const o = e as Partial<DockerArchiveEntry> | null;
    if (!o || typeof o.Config !== 'string') bad(`image ${i + 1}: no Config`);
    if (!Array.isArray(o!.Layers) || o!.Layers.some((l) => typeof l !== 'string')) bad(`image ${i + 1}: Layers must be a list of paths`);
    if (o!.RepoTags != null && (!Array.isArray(o!.RepoTags) || o!.RepoTags.some((t) => typeof t !== 'string'))) bad(`image ${i + 1}: RepoTags must be a list of names`);
  }
  return doc as DockerArchiveEntry[];
}

/** A stored member by path, following docker save's links between layer files. */
function member(members: Map<string, Member>, path: string): { digest: Digest; size: number; compression: Compression } | undefined {
  let p = path.replace(/^(\.\/)+/, '');
  for (let hops = 0; hops < 16; hops++) {
    const m = members.get(p);
    if (!m) return undefined;
    if (!('link' in m)) return m;
    p = m.link;
  }
  return undefined;
}

const DOCKER_LAYER: Record<Compression, string> = {
  none: MediaType.dockerLayer, gzip: MediaType.dockerLayerGzip, zstd: MediaType.layerZstd,
};

/** Writes the Docker schema 2 manifest of one docker-archive image and returns its index entries. */
async function dockerImage(layout: OciLayout, image: DockerArchiveEntry, members: Map<string, Member>, opts: ImportOptions): Promise<IndexEntry[]> {
  const name = image.RepoTags?.[0] ?? image.Config;
  const cfg = member(members, image.Config);
  if (!cfg) throw new KeelError(`archive: ${name}: config ${image.Config} is not in the archive`);
  const config = validateImageConfig(parseJson((await layout.readBytes(cfg.digest, cfg.size, `config of ${name}`)).toString('utf8'), `config of ${name}`), `config of ${name}`);
  if (config.rootfs.diff_ids.length !== image.Layers.length) {
    throw new KeelError(`archive: ${name}: ${image.Layers.length} layers but its config lists ${config.rootfs.diff_ids.length} diff_ids`);
  }
  const layers: ContentDescriptor[] = image.Layers.map((path, i) => {
    const l = member(members, path);
    const diffID = config.rootfs.diff_ids[i]!;
    if (!l) {
      const foreign = image.LayerSources?.[diffID];
      if (foreign) throw new KeelError(`archive: ${name}: layer ${i + 1} (${diffID}) is a non-distributable (foreign) layer: the archive has only its URLs (${(foreign.urls ?? []).join(', ') || 'none'}), keel does not download them`);
      throw new KeelError(`archive: ${name}: layer ${path} is not in the archive`);
    }
    if (l.compression === 'none' && l.digest !== diffID) throw new KeelError(`archive: ${name}: layer ${path} has content ${l.digest}, its config says ${diffID}`);
    return { mediaType: DOCKER_LAYER[l.compression], digest: l.digest, size: l.size };
  });
  const manifest = { schemaVersion: 2, mediaType: MediaType.dockerManifest, config: { mediaType: MediaType.dockerConfig, digest: cfg.digest, size: cfg.size }, layers };
  const desc = await layout.putJson(manifest, MediaType.dockerManifest);
  const platform: NonNullable<IndexEntry['platform']> = { architecture: config.architecture, os: config.os };
  if (config.variant) platform.variant = config.variant;
  const entry: IndexEntry = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size, platform };
  const tags = image.RepoTags ?? [];
  if (tags.length === 0) return [entry];
  return tags.map((t) => {
    const tag = opts.tag ? opts.tag(t) : t;
    checkTag(tag);
    return { ...entry, annotations: { [REF_NAME]: tag } };
  });
}
