// The builder's store: one directory holding everything builds share.
//
//   oci/            an OCI image layout: every blob (layers, configs, manifests) and, in index.json,
//                   the images built with -t (keel's local image store; `FROM name` finds them)
//   s/ID            snapshots: one directory per layer in overlayfs form (whiteouts are 0/0
//                   character devices, opaque directories carry trusted.overlay.opaque), stacked as
//                   lower directories; ID is 12 hex digits (of the chain ID for a base image's
//                   layer, of the step's key and a random part for a built one), short so that
//                   many layers fit in one mount(2) option string
//   s/ID.json       the snapshot is complete: its diff ID (and chain ID)
//   layers/HEX.json the blobs known for an uncompressed layer (diff ID HEX): uncompressed, gzip, zstd
//   cache/HEX.json  the result of a build step whose cache key is HEX
//   ctx/HEX.json    content digests of build-context files, keyed by their stat (so unchanged
//                   files are not read again; the cache keys use the digests only)
//   mounts/ID       RUN --mount=type=cache directories
//   tmp/            work directories of running builds (upper, work, merged dirs, bundles)
//   run/            state of the builder's containers (the runtime's --root)
//   locks/          readers-writer lock: builds register there, `prune` waits for them
//
// Every record is written atomically (temporary file + rename) after what it points to exists, so
// a build that fails or is killed leaves the store consistent: at worst unreferenced files that
// the next `prune` removes. Snapshots are made in tmp/ and renamed into s/ when complete.
import * as fs from 'node:fs';
import { join, resolve } from 'node:path';
import { homedir } from 'node:os';
import { randomBytes, createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeelError } from '../util/errors.js';
import type { OciLayout } from '../layers/index.js';

export type CompressionName = 'none' | 'gzip' | 'zstd';

export interface BlobRef {
  mediaType: string;
  digest: string;
  size: number;
}

/** A step's cached result. */
export interface CacheRecord {
  v: 2;
  /** The layer the step made (and its snapshot's id); absent when it changed nothing. */
  layer?: { diffID: string; snapshot: string };
  /** When the step first ran (its history entry's `created`). */
  created: string;
}

/** The blobs of one uncompressed layer (by diff ID), in each compression made so far. */
export interface LayerRecord {
  diffID: string;
  blobs: Partial<Record<CompressionName, BlobRef>>;
  /**
   * A built layer's snapshot, from which its blob is made when first needed (with the same
   * SOURCE_DATE_EPOCH, null for none): layers of stages that never reach an image get no blob.
   */
  source?: { snapshot: string; epoch: number | null };
}

export interface SnapshotRecord {
  id: string;
  diffID: string;
  /** For base image layers: the chain ID the snapshot was made for. */
  chainID?: string;
}

/** Default store: /var/lib/keel for root, $XDG_DATA_HOME/keel (or ~/.local/share/keel) otherwise. */
export function defaultStoreRoot(): string {
  // (A rootless build is root in its user namespace, and keeps the user's store.)
  if (process.getuid?.() === 0 && process.env.KEEL_BUILD_ROOTLESS !== '1') return '/var/lib/keel';
  const xdg = process.env.XDG_DATA_HOME;
  return join(xdg && xdg.startsWith('/') ? xdg : join(homedir(), '.local', 'share'), 'keel');
}

function hexOf(digest: string): string {
  const i = digest.indexOf(':');
  return i < 0 ? digest : digest.slice(i + 1);
}

function readJsonFile<T>(path: string): T | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined; // a torn or foreign file: as good as absent
  }
}

function writeFileAtomic(path: string, data: string | Buffer): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, data, { mode: 0o644 });
  try {
    fs.renameSync(tmp, path);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

function pidAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class BuildStore {
  private layoutPromise: Promise<OciLayout> | undefined;
  readonly emptyDir: string;

  private constructor(readonly root: string) {
    this.emptyDir = join(root, 'empty');
  }

  /** Opens (creating when missing) the store at `root`. */
  static open(rootArg: string = defaultStoreRoot()): BuildStore {
    // Absolute: RUN bundles name their root filesystems under it.
    const root = resolve(rootArg);
    try {
      fs.mkdirSync(root, { recursive: true, mode: 0o700 });
      for (const d of ['s', 'layers', 'cache', 'ctx', 'tmp', 'locks', 'empty']) {
        const p = join(root, d);
        if (!fs.existsSync(p)) fs.mkdirSync(p, { recursive: true, mode: 0o700 });
      }
    } catch (err) {
      throw new KeelError(`store ${root}: cannot create it: ${(err as Error).message}`);
    }
    return new BuildStore(root);
  }

  /** The OCI layout holding every blob and the tagged images. */
  layout(): Promise<OciLayout> {
    this.layoutPromise ??= (async () => {
      const { OciLayout } = await import('../layers/index.js');
      const dir = join(this.root, 'oci');
      return fs.existsSync(join(dir, 'index.json')) ? OciLayout.open(dir) : OciLayout.create(dir);
    })();
    return this.layoutPromise;
  }

  // ---- locks ----

  /**
   * Registers a build: `prune` waits until it ends. Returns the release function. A build waits
   * while a prune runs.
   */
  async lockShared(): Promise<() => void> {
    const locks = join(this.root, 'locks');
    const mine = join(locks, `build-${process.pid}-${randomBytes(4).toString('hex')}`);
    for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
      fs.writeFileSync(mine, String(process.pid));
      const pruner = Number(readText(join(locks, 'prune')) ?? 0);
      if (!pruner || !pidAlive(pruner)) break;
      fs.rmSync(mine, { force: true });
      await sleep(delay);
    }
    return () => fs.rmSync(mine, { force: true });
  }

  /** Exclusive use of the store (prune): waits for running builds to end. */
  async lockExclusive(): Promise<() => void> {
    const locks = join(this.root, 'locks');
    const file = join(locks, 'prune');
    for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
      try {
        fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = Number(readText(file) ?? 0);
        if (owner && !pidAlive(owner)) { fs.rmSync(file, { force: true }); continue; }
        await sleep(delay);
      }
    }
    for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
      const live = fs.readdirSync(locks).filter((n) => n.startsWith('build-')).filter((n) => {
        const pid = Number(n.split('-')[1]);
        if (pidAlive(pid)) return true;
        fs.rmSync(join(locks, n), { force: true });
        return false;
      });
      if (live.length === 0) break;
      await sleep(delay);
    }
    return () => fs.rmSync(file, { force: true });
  }

  // ---- records ----

  cacheRecord(key: string): CacheRecord | undefined {
    const rec = readJsonFile<CacheRecord>(join(this.root, 'cache', `${hexOf(key)}.json`));
    return rec && rec.v === 2 ? rec : undefined;
  }

  putCacheRecord(key: string, rec: CacheRecord): void {
    writeFileAtomic(join(this.root, 'cache', `${hexOf(key)}.json`), JSON.stringify(rec));
  }

  layerRecord(diffID: string): LayerRecord | undefined {
    return readJsonFile<LayerRecord>(join(this.root, 'layers', `${hexOf(diffID)}.json`));
  }

  /** Adds blobs to a layer's record (read-modify-write; concurrent writers may each add theirs). */
  addLayerBlobs(diffID: string, blobs: LayerRecord['blobs'], source?: LayerRecord['source']): LayerRecord {
    const cur = this.layerRecord(diffID) ?? { diffID, blobs: {} };
    const next: LayerRecord = { diffID, blobs: { ...cur.blobs, ...blobs } };
    const src = cur.source && this.snapshotComplete(cur.source.snapshot) ? cur.source : source ?? cur.source;
    if (src) next.source = src;
    writeFileAtomic(join(this.root, 'layers', `${hexOf(diffID)}.json`), JSON.stringify(next));
    return next;
  }

  // ---- layers fetched on demand ----

  private readonly fetchers = new Map<string, () => Promise<void>>();
  private readonly fetching = new Map<string, Promise<void>>();

  /** A way to bring a layer's blobs into the store when a build needs them (a layer of an imported cache). */
  addFetcher(diffID: string, fetch: () => Promise<void>): void {
    if (!this.fetchers.has(diffID)) this.fetchers.set(diffID, fetch);
  }

  /** Brings a layer's blobs into the store when it has none yet and a fetcher knows where they are. */
  async ensureLayer(diffID: string): Promise<void> {
    const rec = this.layerRecord(diffID);
    if (rec && Object.keys(rec.blobs).length > 0) return;
    const fetch = this.fetchers.get(diffID);
    if (!fetch) return;
    let p = this.fetching.get(diffID);
    if (!p) {
      p = fetch();
      this.fetching.set(diffID, p);
      p.catch(() => this.fetching.delete(diffID));
    }
    await p;
  }

  // ---- snapshots ----

  /** The id of a base image layer's snapshot: 12 hex digits of its chain ID. */
  chainSnapshotId(chainID: string): string {
    return hexOf(chainID).slice(0, 12);
  }

  /** A fresh id for the snapshot a step makes (unique, so a re-run never replaces one in use). */
  newSnapshotId(key: string): string {
    return `${hexOf(key).slice(0, 8)}${randomBytes(2).toString('hex')}`;
  }

  snapshotPath(id: string): string {
    return join(this.root, 's', id);
  }

  /** Whether snapshot `id` is complete (its record exists). */
  snapshotComplete(id: string): boolean {
    const rec = readJsonFile<SnapshotRecord>(`${this.snapshotPath(id)}.json`);
    return !!rec && rec.id === id;
  }

  /**
   * Moves a layer directory into place as snapshot `id` (a leftover without a record is replaced).
   * When a complete snapshot of that id exists already (the same base layer made by another
   * build), `dir` is removed and the existing one is used.
   */
  async placeSnapshot(id: string, dir: string): Promise<string> {
    const dest = this.snapshotPath(id);
    for (let waited = 0; ; waited += 50) {
      if (this.snapshotComplete(id)) {
        fs.rmSync(dir, { recursive: true, force: true });
        return dest;
      }
      let st: fs.Stats | undefined;
      try { st = fs.lstatSync(dest); } catch { /* absent */ }
      if (!st) break;
      // Another build may be placing the same base layer right now: give it time to record it;
      // an old directory without a record is the leftover of an interrupted build.
      if (Date.now() - st.mtimeMs > 600_000 || waited >= 30_000) {
        fs.rmSync(dest, { recursive: true, force: true });
        break;
      }
      await sleep(50);
    }
    try {
      fs.renameSync(dir, dest);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && this.snapshotComplete(id)) {
        fs.rmSync(dir, { recursive: true, force: true });
        return dest;
      }
      throw err;
    }
    return dest;
  }

  /** Marks snapshot `id` complete: the layer it holds has this diff ID. */
  recordSnapshot(id: string, diffID: string, chainID?: string): void {
    writeFileAtomic(`${this.snapshotPath(id)}.json`, JSON.stringify({ id, diffID, ...(chainID ? { chainID } : {}) } satisfies SnapshotRecord));
  }

  // ---- context digests ----

  contextMemoPath(contextDir: string): string {
    return join(this.root, 'ctx', `${createHash('sha256').update(contextDir).digest('hex').slice(0, 32)}.json`);
  }

  readContextMemo(contextDir: string): Record<string, [string, string]> {
    return readJsonFile<Record<string, [string, string]>>(this.contextMemoPath(contextDir)) ?? {};
  }

  writeContextMemo(contextDir: string, memo: Record<string, [string, string]>): void {
    writeFileAtomic(this.contextMemoPath(contextDir), JSON.stringify(memo));
  }

  // ---- work directories ----

  /**
   * A new work directory for one build under tmp/. Work directories of builds whose process is
   * gone are removed first (after unmounting what they left mounted).
   */
  async newWorkDir(): Promise<string> {
    const tmp = join(this.root, 'tmp');
    await this.cleanStaleWork();
    const dir = join(tmp, `${process.pid}-${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(dir, { mode: 0o700 });
    return dir;
  }

  async cleanStaleWork(all = false): Promise<void> {
    const tmp = join(this.root, 'tmp');
    let names: string[];
    try { names = fs.readdirSync(tmp); } catch { return; }
    const stale = names.filter((n) => all || !pidAlive(Number(n.split('-')[0])));
    if (stale.length === 0) return;
    const { mountsUnder, unmount, prepareMounts } = await import('./mount.js');
    await prepareMounts();
    const info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    for (const n of stale) {
      const dir = join(tmp, n);
      for (const m of mountsUnder(dir, info)) {
        try { unmount(m, true); } catch { /* gone */ }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  /** The runtime's state directory for the builder's containers. */
  runtimeRoot(): string {
    return join(this.root, 'run');
  }

  /** A directory for RUN --mount=type=cache,id=ID. */
  cacheMountDir(id: string): string {
    const dir = join(this.root, 'mounts', createHash('sha256').update(id).digest('hex').slice(0, 24));
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    return dir;
  }

  /**
   * Empties the build cache: step records, snapshots, layer records, context digests, cache
   * mounts, stale work directories, and the blobs no tagged image uses (with `all`, the tagged
   * images too). Waits for running builds.
   */
  async prune(opts: { all?: boolean } = {}): Promise<{ freedBytes: number; removedImages: number }> {
    const release = await this.lockExclusive();
    try {
      let freed = 0;
      await this.cleanStaleWork(true);
      for (const d of ['cache', 'layers', 'ctx', 's', 'mounts', 'run', 'run-ext', 'origins']) {
        const p = join(this.root, d);
        freed += duSafe(p);
        fs.rmSync(p, { recursive: true, force: true });
        if (['cache', 'layers', 'ctx', 's'].includes(d)) fs.mkdirSync(p, { mode: 0o700 });
      }
      let removedImages = 0;
      if (fs.existsSync(join(this.root, 'oci', 'index.json'))) {
        const layout = await this.layout();
        if (opts.all) {
          const tags = await layout.tags();
          for (const t of tags) await layout.untag(t);
          removedImages = tags.length;
          const index = await layout.readIndex();
          if (index.manifests.length) {
            removedImages += index.manifests.length;
            await layout.updateIndex((i) => ({ ...i, manifests: [] }));
          }
        }
        const r = await layout.gc({ tmpMaxAgeMs: 0 });
        freed += r.freedBytes;
      }
      // Let the file system finish releasing what was removed (journal commit, discards) now,
      // rather than in the middle of the next build.
      const { spawnSync } = await import('node:child_process');
      spawnSync('sync', ['-f', this.root], { stdio: 'ignore' });
      return { freedBytes: freed, removedImages };
    } finally {
      release();
    }
  }
}

function readText(path: string): string | undefined {
  try { return fs.readFileSync(path, 'utf8'); } catch { return undefined; }
}

/** Bytes under a directory (regular files; a link counted once per name is close enough). */
function duSafe(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    let ents: fs.Dirent[];
    try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of ents) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) { try { total += fs.lstatSync(p).size; } catch { /* gone */ } }
    }
  };
  walk(dir);
  return total;
}
