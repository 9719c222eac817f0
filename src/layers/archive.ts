/**
 * OCI archives: a layout as one tar stream (oci-layout, index.json, blobs/...), written from a
 * store and read back into one, streaming and verified.
 */
import type { Writable } from 'node:stream';
import { KeelError } from '../util/errors.js';
import { validateImageIndex, validateImageLayout, parseJson } from '../spec/index.js';
import type { ImageIndex, ContentDescriptor } from '../spec/index.js';
import { TarWriter, readTar, type TarHeader } from './tar.js';
import { parseDigest, type Digest } from './digest.js';
import { REF_NAME, type OciLayout, type IndexEntry } from './store.js';
import { MediaType } from './compression.js';
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

/**
 * Reads an OCI archive into a layout: every blob is stored under its digest (verified as it is
 * written), then the archive's index.json entries are added (same tags replaced). Returns the
 * entries added.
 */
export async function importArchive(source: AsyncIterable<Uint8Array>, layout: OciLayout): Promise<IndexEntry[]> {
  let index: ImageIndex | undefined;
  let sawLayout = false;
  const release = await layout.hold();
  try {
    for await (const e of readTar(source)) {
      const path = e.rawPath.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
      if (e.header.type === 'dir') continue;
      const m = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(path);
      if (m && e.header.type === 'file') {
        const digest = parseDigest(`${m[1]}:${m[2]}`, `archive member ${path}`);
        await layout.putStream(e.body(), { digest, size: e.header.size }, `archive member ${path}`);
      } else if (path === 'index.json' && e.header.type === 'file') {
        if (e.header.size > 32 << 20) throw new KeelError('archive: index.json is too large');
        const parts: Buffer[] = [];
        for await (const c of e.body()) parts.push(c);
        index = validateImageIndex(parseJson(Buffer.concat(parts).toString('utf8'), 'archive index.json'), 'archive index.json');
      } else if (path === 'oci-layout' && e.header.type === 'file') {
        const parts: Buffer[] = [];
        for await (const c of e.body()) parts.push(c);
        validateImageLayout(parseJson(Buffer.concat(parts).toString('utf8'), 'archive oci-layout'), 'archive oci-layout');
        sawLayout = true;
      }
      // Anything else (e.g. a manifest.json for docker) is not part of the OCI layout: ignored.
    }
    if (!sawLayout || !index) throw new KeelError('archive: not an OCI archive (no oci-layout or index.json)');
    const entries = index.manifests;
    for (const m of entries) {
      if (!(await layout.has(parseDigest(m.digest, 'archive index.json entry')))) {
        throw new KeelError(`archive: index.json names ${m.digest}, which the archive does not contain`);
      }
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
