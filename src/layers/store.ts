/**
 * The blob store: an OCI image layout directory (oci-layout, index.json, blobs/<alg>/<hex>).
 *
 * - put is atomic and idempotent: data goes to a temporary file in blobs/sha256, hashed as it is
 *   written, then renamed to its digest; an existing blob is kept (and its mtime refreshed).
 * - reads verify: every blob read is hashed and compared with its digest (and size, when known).
 * - index.json is rewritten atomically (temporary file + rename) under an exclusive flock on the
 *   blobs/ directory, so concurrent taggers never lose each other's entries.
 * - gc removes blobs unreachable from index.json under an exclusive flock on the layout directory;
 *   writers hold a shared flock on it while they put blobs (and, with `hold()`, until they have
 *   tagged them), so gc never removes a blob that a writer is about to reference.
 * Locks are flock(2) on the layout's own directories, so no extra files appear in the layout.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeelError } from '../util/errors.js';
import { validateImageIndex, validateImageLayout, parseJson } from '../spec/index.js';
import type { ImageIndex, ContentDescriptor } from '../spec/index.js';
import { Hasher, parseDigest, digestAlgorithm, digestHex, type Digest } from './digest.js';
import { MediaType } from './compression.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';

/** An entry of an index's `manifests`: a descriptor that may carry a platform. */
export type IndexEntry = ImageIndex['manifests'][number];

export interface BlobInfo {
  digest: Digest;
  size: number;
}

const TMP_PREFIX = '.tmp-';
const DEFAULT_JSON_LIMIT = 32 << 20;

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Writes a small file atomically: temporary file in the same directory, then rename. */
async function writeFileAtomic(path: string, data: string | Buffer, opts: { noReplace?: boolean } = {}): Promise<void> {
  const tmp = `${path}${TMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`;
  await fsp.writeFile(tmp, data, { mode: 0o644 });
  try {
    if (opts.noReplace) {
      try {
        await fsp.link(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      await fsp.unlink(tmp);
    } else {
      await fsp.rename(tmp, path);
    }
  } catch (err) {
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

type Unlock = () => Promise<void>;

function writeAll(fd: number, buf: Buffer, cb: (err?: Error | null) => void): void {
  fs.write(fd, buf, 0, buf.length, null, (err, n) => {
    if (err) return cb(err);
    if (n < buf.length) return writeAll(fd, buf.subarray(n), cb);
    cb();
  });
}

async function flockPath(path: string, mode: 'shared' | 'exclusive'): Promise<Unlock> {
  const { loadFsSys } = await import('../runtime/sys/fs.js');
  const sys = await loadFsSys();
  const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    let delay = 1;
    while (!sys.tryFlock(fd, mode)) {
      await sleep(delay);
      delay = Math.min(delay * 2, 40);
    }
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    fs.closeSync(fd); // closing the last descriptor releases the lock
  };
}

/**
 * A stream that writes one blob: hashes what it is given and stores it in a temporary file;
 * `commit()` moves it to its content address. Obtain one from `OciLayout.blobWriter()`.
 */
export class BlobWriter extends Writable {
  private readonly hasher = new Hasher('sha256');
  private fdClosed = false;
  private constructor(private readonly layout: OciLayout, private readonly tmp: string, private readonly fd: number, private readonly unlock: Unlock) {
    super({ highWaterMark: 4 << 20 });
  }

  static async create(layout: OciLayout): Promise<BlobWriter> {
    const unlock = await layout.hold();
    const tmp = join(layout.root, 'blobs', 'sha256', `${TMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}`);
    try {
      const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o644);
      return new BlobWriter(layout, tmp, fd, unlock);
    } catch (err) {
      await unlock();
      throw err;
    }
  }

  /** Bytes written so far. */
  get size(): number {
    return this.hasher.size;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.hasher.update(chunk);
    writeAll(this.fd, chunk, cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    const bufs = chunks.map((c) => c.chunk);
    for (const b of bufs) this.hasher.update(b);
    const total = bufs.reduce((n, b) => n + b.length, 0);
    fs.writev(this.fd, bufs, null, (err, written) => {
      if (err || written === total) return cb(err);
      // A short write (rare on regular files): finish the rest one buffer at a time.
      writeAll(this.fd, Buffer.concat(bufs).subarray(written), cb);
    });
  }

  private async finished(): Promise<void> {
    if (this.writableFinished) return;
    await new Promise<void>((resolve, reject) => {
      this.once('error', reject);
      this.once('finish', () => resolve());
      if (!this.writableEnded) this.end();
    });
  }

  /**
   * Finishes the blob and stores it under its digest; with `expected`, refuses (and discards the
   * data) when the content is not what the caller said it would be.
   */
  async commit(expected?: Partial<BlobInfo>, what = 'blob'): Promise<BlobInfo> {
    try {
      await this.finished();
      this.closeFd();
      const digest = this.hasher.digest();
      const size = this.hasher.size;
      if (expected?.size !== undefined && expected.size !== size) {
        throw new KeelError(`${what}: expected ${expected.size} bytes, got ${size}`);
      }
      if (expected?.digest !== undefined && expected.digest !== digest) {
        throw new KeelError(`${what}: content digest ${digest} does not match expected ${expected.digest}`);
      }
      const final = this.layout.blobPath(digest);
      if (await exists(final)) {
        // Already stored: keep the existing file, mark it recently used for gc.
        const now = new Date();
        await fsp.utimes(final, now, now).catch(() => undefined);
        await fsp.unlink(this.tmp);
      } else {
        await fsp.rename(this.tmp, final);
      }
      return { digest, size };
    } catch (err) {
      await fsp.rm(this.tmp, { force: true });
      throw err;
    } finally {
      this.closeFd();
      await this.unlock();
    }
  }

  /** Discards the data written so far. */
  async abort(): Promise<void> {
    this.destroy();
    this.closeFd();
    await fsp.rm(this.tmp, { force: true });
    await this.unlock();
  }

  private closeFd(): void {
    if (!this.fdClosed) {
      this.fdClosed = true;
      fs.closeSync(this.fd);
    }
  }
}

export interface ResolveOptions {
  /** Platform to pick from a multi-platform index (default: this machine's, linux). */
  platform?: { os: string; architecture: string; variant?: string };
}

export interface ResolvedManifest {
  /** The descriptor of the image manifest (platform-specific when the tag named an index). */
  descriptor: IndexEntry;
  /** The entry of index.json that matched. */
  indexEntry: IndexEntry;
}

export function hostPlatform(): { os: string; architecture: string; variant?: string } {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };
  const architecture = map[process.arch] ?? process.arch;
  return architecture === 'arm64' ? { os: 'linux', architecture, variant: 'v8' } : { os: 'linux', architecture };
}

const INDEX_TYPES = new Set<string>([MediaType.index, MediaType.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MediaType.manifest, MediaType.dockerManifest]);

export function isIndexMediaType(t: string | undefined): boolean {
  return t !== undefined && INDEX_TYPES.has(t);
}
export function isManifestMediaType(t: string | undefined): boolean {
  return t !== undefined && MANIFEST_TYPES.has(t);
}

/** An OCI image layout directory used as a content-addressed store. */
export class OciLayout {
  private constructor(readonly root: string) {}

  /** Opens a layout, creating it (and its parent directories) when missing. */
  static async create(root: string): Promise<OciLayout> {
    await fsp.mkdir(join(root, 'blobs', 'sha256'), { recursive: true, mode: 0o755 });
    await writeFileAtomic(join(root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }), { noReplace: true });
    const empty: ImageIndex = { schemaVersion: 2, mediaType: MediaType.index, manifests: [] };
    await writeFileAtomic(join(root, 'index.json'), JSON.stringify(empty), { noReplace: true });
    return OciLayout.open(root);
  }

  /** Opens an existing layout; fails with one line when `root` is not one. */
  static async open(root: string): Promise<OciLayout> {
    let text: string;
    try {
      text = await fsp.readFile(join(root, 'oci-layout'), 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new KeelError(`${root}: not an OCI image layout (no oci-layout file)`);
      throw new KeelError(`${root}/oci-layout: ${(err as Error).message}`);
    }
    const layout = validateImageLayout(parseJson(text, `${root}/oci-layout`), `${root}/oci-layout`);
    if (!/^1\.\d+\.\d+$/.test(layout.imageLayoutVersion)) {
      throw new KeelError(`${root}/oci-layout: unsupported imageLayoutVersion ${JSON.stringify(layout.imageLayoutVersion)}`);
    }
    return new OciLayout(root);
  }

  blobPath(digest: Digest): string {
    parseDigest(digest);
    return join(this.root, 'blobs', digestAlgorithm(digest), digestHex(digest));
  }

  async has(digest: Digest): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  /** Size of a stored blob, or undefined when absent. */
  async size(digest: Digest): Promise<number | undefined> {
    try {
      return (await fsp.stat(this.blobPath(digest))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Holds off garbage collection (a shared lock) until the returned function is called. A builder
   * holds it from its first put until the image is tagged.
   */
  async hold(): Promise<Unlock> {
    return flockPath(this.root, 'shared');
  }

  /** A writable stream for one blob; call `commit()` (or `abort()`) when done. */
  blobWriter(): Promise<BlobWriter> {
    return BlobWriter.create(this);
  }

  /** Stores a stream as a blob (verified against `expected` when given). */
  async putStream(source: AsyncIterable<Uint8Array>, expected?: Partial<BlobInfo>, what = 'blob'): Promise<BlobInfo> {
    if (expected?.digest && (await this.has(expected.digest))) {
      // Still drain nothing: the content is known by its digest. Verify size cheaply.
      const size = await this.size(expected.digest);
      if (expected.size === undefined || expected.size === size) {
        const now = new Date();
        await fsp.utimes(this.blobPath(expected.digest), now, now).catch(() => undefined);
        return { digest: expected.digest, size: size! };
      }
    }
    const w = await this.blobWriter();
    let total = 0;
    try {
      for await (const chunk of source) {
        total += chunk.length;
        // A source longer than its descriptor says (a hostile registry, a corrupt archive) is
        // cut off here rather than stored whole and refused at the end.
        if (expected?.size !== undefined && total > expected.size) {
          throw new KeelError(`${what}: more than the ${expected.size} bytes its descriptor says`);
        }
        if (!w.write(chunk)) await new Promise<void>((resolve, reject) => {
          const onErr = (e: Error) => { w.off('drain', onDrain); reject(e); };
          const onDrain = () => { w.off('error', onErr); resolve(); };
          w.once('drain', onDrain);
          w.once('error', onErr);
        });
      }
    } catch (err) {
      await w.abort();
      throw err;
    }
    return w.commit(expected, what);
  }

  /** Stores bytes as a blob. */
  async putBytes(data: Uint8Array | string, expected?: Partial<BlobInfo>, what = 'blob'): Promise<BlobInfo> {
    const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    return this.putStream((async function* () { yield buf; })(), expected, what);
  }

  /** Stores a JSON document (compact, keys in the given order) and returns its descriptor. */
  async putJson(doc: unknown, mediaType: string): Promise<ContentDescriptor> {
    const info = await this.putBytes(JSON.stringify(doc));
    return { mediaType, digest: info.digest, size: info.size };
  }

  /**
   * Reads a blob as a stream of chunks, hashing as it goes; the last step throws if the content
   * does not match its digest (or `expectedSize`). Consumers must treat data as unverified until
   * the iteration ends without error.
   */
  async *readBlob(digest: Digest, expectedSize?: number, what?: string): AsyncGenerator<Buffer> {
    const path = this.blobPath(digest);
    const label = what ?? `blob ${digest}`;
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new KeelError(`${label}: missing from ${this.root}`);
      throw err;
    }
    const hasher = new Hasher(digestAlgorithm(digest));
    try {
      const size = (await fh.stat()).size;
      if (expectedSize !== undefined && size !== expectedSize) {
        throw new KeelError(`${label}: size ${size} does not match descriptor size ${expectedSize}`);
      }
      for (;;) {
        const buf = Buffer.allocUnsafe(1 << 20);
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        const chunk = buf.subarray(0, bytesRead);
        hasher.update(chunk);
        yield chunk;
      }
    } finally {
      await fh.close();
    }
    const got = hasher.digest();
    if (got !== digest) throw new KeelError(`${label}: corrupt blob (content hashes to ${got})`);
  }

  /** Reads a whole (small) blob, verified. */
  async readBytes(digest: Digest, expectedSize?: number, what?: string, limit = DEFAULT_JSON_LIMIT): Promise<Buffer> {
    const size = await this.size(digest);
    if (size !== undefined && size > limit) throw new KeelError(`${what ?? `blob ${digest}`}: ${size} bytes is larger than the ${limit}-byte limit for documents`);
    const parts: Buffer[] = [];
    for await (const c of this.readBlob(digest, expectedSize, what)) parts.push(c);
    return Buffer.concat(parts);
  }

  /** Reads and parses a JSON blob, verified. */
  async readJson(desc: { digest: string; size?: number }, what: string): Promise<unknown> {
    const digest = parseDigest(desc.digest, `${what} digest`);
    const data = await this.readBytes(digest, desc.size, what);
    return parseJson(data.toString('utf8'), what);
  }

  async readIndex(): Promise<ImageIndex> {
    const path = join(this.root, 'index.json');
    let text: string;
    try {
      text = await fsp.readFile(path, 'utf8');
    } catch (err) {
      throw new KeelError(`${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`);
    }
    return validateImageIndex(parseJson(text, path), path);
  }

  /**
   * Read-modify-write of index.json under the index lock. `change` gets a copy and returns the
   * new index (validated before it replaces the old one).
   */
  async updateIndex(change: (index: ImageIndex) => ImageIndex | Promise<ImageIndex>): Promise<ImageIndex> {
    const unlock = await flockPath(join(this.root, 'blobs'), 'exclusive');
    try {
      const next = await change(structuredClone(await this.readIndex()));
      validateImageIndex(next, 'index.json');
      await writeFileAtomic(join(this.root, 'index.json'), JSON.stringify(next));
      return next;
    } finally {
      await unlock();
    }
  }

  /** Points `tag` at a manifest (or index): replaces any entry already carrying that tag. */
  async tag(tag: string, desc: IndexEntry): Promise<void> {
    checkTag(tag);
    await this.updateIndex((index) => {
      const manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
      manifests.push({ ...desc, annotations: { ...(desc.annotations ?? {}), [REF_NAME]: tag } });
      return { ...index, manifests };
    });
  }

  /** Removes a tag's entry from index.json (its blobs go at the next gc unless referenced). */
  async untag(tag: string): Promise<boolean> {
    let found = false;
    await this.updateIndex((index) => {
      const manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
      found = manifests.length !== index.manifests.length;
      return { ...index, manifests };
    });
    return found;
  }

  /** Tags in index.json, in order. */
  async tags(): Promise<string[]> {
    const index = await this.readIndex();
    return index.manifests.map((m) => m.annotations?.[REF_NAME]).filter((t): t is string => typeof t === 'string');
  }

  /**
   * Finds the image manifest a reference names: a tag, a digest (`sha256:...`), or nothing when
   * the layout holds exactly one entry. Multi-platform indexes are resolved to one platform.
   */
  async resolve(ref?: string, opts: ResolveOptions = {}): Promise<ResolvedManifest> {
    const index = await this.readIndex();
    let entry: IndexEntry | undefined;
    if (ref === undefined || ref === '') {
      if (index.manifests.length !== 1) {
        const tags = index.manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
        throw new KeelError(`${this.root}: ${index.manifests.length} images in the layout; name one (tags: ${tags.join(', ') || 'none'})`);
      }
      entry = index.manifests[0];
    } else if (/^sha(256|512):/.test(ref)) {
      const digest = parseDigest(ref, 'reference');
      entry = index.manifests.find((m) => m.digest === digest);
      if (!entry) {
        const size = await this.size(digest);
        if (size === undefined) throw new KeelError(`${this.root}: no manifest ${digest}`);
        entry = { mediaType: MediaType.manifest, digest, size };
        const doc = (await this.readJson(entry, `manifest ${digest}`)) as { mediaType?: string };
        if (doc.mediaType) entry.mediaType = doc.mediaType;
      }
    } else {
      const matches = index.manifests.filter((m) => m.annotations?.[REF_NAME] === ref);
      if (matches.length === 0) {
        const tags = index.manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
        throw new KeelError(`${this.root}: no image tagged ${JSON.stringify(ref)} (tags: ${tags.join(', ') || 'none'})`);
      }
      entry = matches[matches.length - 1];
    }
    const indexEntry = entry!;
    let desc = indexEntry;
    const platform = opts.platform ?? hostPlatform();
    for (let depth = 0; ; depth++) {
      if (depth > 8) throw new KeelError(`${this.root}: index nesting too deep at ${desc.digest}`);
      if (isManifestMediaType(desc.mediaType)) return { descriptor: desc, indexEntry };
      if (!isIndexMediaType(desc.mediaType)) {
        throw new KeelError(`${this.root}: ${desc.digest} has media type ${desc.mediaType}, not an image manifest or index`);
      }
      const nested = validateImageIndex(await this.readJson(desc, `index ${desc.digest}`), `index ${desc.digest}`);
      const candidates = nested.manifests.filter((m) => isManifestMediaType(m.mediaType) || isIndexMediaType(m.mediaType));
      const pick = candidates.find((m) => m.platform && m.platform.os === platform.os && m.platform.architecture === platform.architecture &&
        (platform.variant === undefined || m.platform.variant === undefined || m.platform.variant === platform.variant))
        ?? (candidates.length === 1 && !candidates[0]!.platform ? candidates[0] : undefined);
      if (!pick) {
        const have = candidates.map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}` : '?'));
        throw new KeelError(`${this.root}: ${ref ?? desc.digest} has no image for ${platform.os}/${platform.architecture} (has ${have.join(', ') || 'none'})`);
      }
      desc = pick;
    }
  }

  /** Digests reachable from index.json: indexes, manifests, configs, layers, subjects. */
  async reachable(): Promise<Set<Digest>> {
    const seen = new Set<Digest>();
    const walk = async (desc: { digest: string; mediaType?: string; size?: number }, what: string): Promise<void> => {
      const digest = parseDigest(desc.digest, what);
      if (seen.has(digest)) return;
      seen.add(digest);
      if (!(await this.has(digest))) return; // a missing blob (e.g. foreign layer) cannot hold references
      let mediaType = desc.mediaType;
      if (!isIndexMediaType(mediaType) && !isManifestMediaType(mediaType)) return;
      const doc = (await this.readJson(desc, what)) as Record<string, unknown>;
      if (typeof doc.mediaType === 'string') mediaType = doc.mediaType;
      const refs: { digest: string; mediaType?: string; size?: number }[] = [];
      if (Array.isArray(doc.manifests)) refs.push(...(doc.manifests as ContentDescriptor[]));
      if (doc.config && typeof doc.config === 'object') refs.push(doc.config as ContentDescriptor);
      if (Array.isArray(doc.layers)) refs.push(...(doc.layers as ContentDescriptor[]));
      if (Array.isArray(doc.blobs)) refs.push(...(doc.blobs as ContentDescriptor[]));
      if (doc.subject && typeof doc.subject === 'object') refs.push(doc.subject as ContentDescriptor);
      for (const r of refs) await walk(r, `${what} → ${r.digest}`);
    };
    const index = await this.readIndex();
    for (const m of index.manifests) await walk(m, `index.json entry ${m.digest}`);
    return seen;
  }

  /**
   * Removes every blob not reachable from index.json, and temporary files older than
   * `tmpMaxAgeMs` (left by writers that crashed). Waits for writers holding the store.
   */
  async gc(opts: { tmpMaxAgeMs?: number } = {}): Promise<{ removed: Digest[]; freedBytes: number }> {
    const unlock = await flockPath(this.root, 'exclusive');
    try {
      const keep = await this.reachable();
      const removed: Digest[] = [];
      let freedBytes = 0;
      const tmpMaxAge = opts.tmpMaxAgeMs ?? 3600_000;
      for (const alg of ['sha256', 'sha512'] as const) {
        const dir = join(this.root, 'blobs', alg);
        let names: string[];
        try {
          names = await fsp.readdir(dir);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        for (const name of names) {
          const p = join(dir, name);
          if (name.startsWith(TMP_PREFIX)) {
            const st = await fsp.lstat(p).catch(() => undefined);
            if (st && Date.now() - st.mtimeMs > tmpMaxAge) await fsp.rm(p, { force: true });
            continue;
          }
          const digest = `${alg}:${name}`;
          if (!/^[a-f0-9]+$/.test(name) || keep.has(digest as Digest)) continue;
          const st = await fsp.lstat(p).catch(() => undefined);
          if (!st || !st.isFile()) continue;
          await fsp.unlink(p);
          removed.push(digest as Digest);
          freedBytes += st.size;
        }
      }
      return { removed, freedBytes };
    } finally {
      await unlock();
    }
  }
}

const COMPONENT = '[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*';
const REF_RE = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);

/** Checks a tag against the image-layout `ref.name` grammar (components of alphanumerics joined by -._:@+). */
export function checkTag(tag: string): void {
  if (tag.length > 255 || !REF_RE.test(tag)) {
    throw new KeelError(`invalid tag ${JSON.stringify(tag)}: letters and digits, joined by one of - . _ : @ + (or --), components separated by /`);
  }
}
