// Layer snapshots: each layer of a build (or of a base image) as a directory in overlayfs form,
// stacked as lower directories under the overlay a step works on. A built layer's snapshot is the
// upper directory of the step that made it; a base image's layer is applied (src/layers, symlinks
// followed inside the root as Docker does) onto an overlay of the layers below it, so its upper
// directory records its deletions as whiteouts. Snapshots are keyed by chain ID and made once.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { KeelError } from '../util/errors.js';
import type { BuildStore, CompressionName } from './store.js';
import { mountOverlay, unmount, prepareMounts } from './mount.js';

export interface LayerRef {
  /** Snapshot id (directory s/ID of the store). */
  id: string;
  /** The layer's diff ID; a promise while a step's layer is still being written. */
  diffID: string | Promise<string>;
}

/** chainID(L0) = diffID(L0); chainID(L0..n) = sha256(chainID(L0..n-1) + " " + diffID(Ln)). */
export function chainOf(parent: string | undefined, diffID: string): string {
  if (!parent) return diffID;
  return `sha256:${createHash('sha256').update(`${parent} ${diffID}`).digest('hex')}`;
}

/** Layer references of an image's layers (snapshots named after their chain IDs). */
export function chainLayers(diffIDs: string[]): LayerRef[] {
  const out: LayerRef[] = [];
  let chain: string | undefined;
  for (const d of diffIDs) {
    chain = chainOf(chain, d);
    out.push({ diffID: d, id: chain.slice(chain.indexOf(':') + 1, chain.indexOf(':') + 13) });
  }
  return out;
}

let seq = 0;

export class Snapshots {
  private readonly inflight = new Map<string, Promise<string>>();
  /** Snapshots placed by this build whose layer is still being written (usable as lowers already). */
  readonly pending = new Set<string>();

  constructor(private readonly store: BuildStore, private readonly workDir: string, private readonly maxUnpackedSize?: number) {}

  /** A fresh directory under the build's work directory. */
  tempDir(prefix: string): string {
    const d = join(this.workDir, `${prefix}-${++seq}`);
    fs.mkdirSync(d, { mode: 0o700 });
    return d;
  }

  /** Snapshot directories of `layers`, top first (ready to be an overlay's lowerdir list). */
  async lowers(layers: LayerRef[]): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < layers.length; i++) out.push(await this.snapshot(layers, i));
    return out.reverse();
  }

  /** Whether a layer's snapshot is there (complete, or placed by this build). */
  has(ref: LayerRef): boolean {
    return this.pending.has(ref.id) || this.store.snapshotComplete(ref.id);
  }

  /** The snapshot of layers[i] (on layers[0..i-1]), made from its blob when missing. */
  snapshot(layers: LayerRef[], i: number): Promise<string> {
    const ref = layers[i]!;
    if (this.has(ref)) return Promise.resolve(this.store.snapshotPath(ref.id));
    let p = this.inflight.get(ref.id);
    if (!p) {
      p = this.materialize(layers, i).finally(() => this.inflight.delete(ref.id));
      this.inflight.set(ref.id, p);
    }
    return p;
  }

  private async materialize(layers: LayerRef[], i: number): Promise<string> {
    const ref = layers[i]!;
    const diffID = await ref.diffID;
    await this.store.ensureLayer(diffID);
    const rec = this.store.layerRecord(diffID);
    const order: CompressionName[] = ['none', 'zstd', 'gzip'];
    const blob = order.map((c) => rec?.blobs[c]).find(Boolean);
    if (!blob) throw new KeelError(`layer ${diffID}: no blob in the store to unpack it from (run \`keel-build prune\` if the store was damaged)`);
    const below = await this.lowers(layers.slice(0, i));
    const dir = this.tempDir('unpack');
    const upper = join(dir, 'upper');
    const work = join(dir, 'work');
    const merged = join(dir, 'merged');
    for (const d of [upper, work, merged]) fs.mkdirSync(d);
    await prepareMounts();
    const { applyLayerBlob, parseDigest } = await import('../layers/index.js');
    const layout = await this.store.layout();
    mountOverlay(below.length ? below : [this.store.emptyDir], merged, { upper, work }, `unpack layer ${diffID.slice(0, 19)}`);
    try {
      await applyLayerBlob(layout, { digest: parseDigest(blob.digest), size: blob.size }, merged, {
        expectedDiffID: diffID, parentSymlinks: 'in-root', what: `layer ${diffID.slice(0, 19)}`,
        ...(this.maxUnpackedSize === undefined ? {} : { maxSize: this.maxUnpackedSize }),
      });
    } finally {
      unmount(merged);
    }
    const path = await this.store.placeSnapshot(ref.id, upper);
    if (!this.store.snapshotComplete(ref.id)) this.store.recordSnapshot(ref.id, diffID);
    fs.rmSync(dir, { recursive: true, force: true });
    return path;
  }

  /**
   * A read-only view of an image's file system (an overlay of its snapshots) mounted under the
   * work directory; returns its path and the function that unmounts it.
   */
  async view(layers: LayerRef[]): Promise<{ root: string; release: () => void }> {
    const lowers = await this.lowers(layers);
    if (lowers.length === 0) return { root: this.store.emptyDir, release: () => {} };
    await prepareMounts();
    const root = this.tempDir('view');
    mountOverlay([...lowers, this.store.emptyDir], root, undefined, 'read-only view');
    return { root, release: () => { unmount(root); fs.rmSync(root, { recursive: true, force: true }); } };
  }
}
