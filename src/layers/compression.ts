// Layer compression: gzip (node:zlib on libuv's thread pool, blocks compressed in parallel the way
// pigz does) and zstd (zstd-napi with worker threads), media types, and detection by magic bytes.
// Compression runs off the main thread, overlapping the tar writer's reads and hashing.
import { createGunzip, deflateRaw, crc32, constants as zlibConstants } from 'node:zlib';
import { availableParallelism } from 'node:os';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream';
import { KeelError } from '../util/errors.js';

export type Compression = 'gzip' | 'zstd' | 'none';

export const MediaType = {
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  layerNondist: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  layerNondistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  layerNondistZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  config: 'application/vnd.oci.image.config.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  index: 'application/vnd.oci.image.index.v1+json',
  layout: 'application/vnd.oci.image.layout.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayerForeignGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

/** The OCI layer media type for a compression. */
export function layerMediaType(c: Compression): string {
  return c === 'gzip' ? MediaType.layerGzip : c === 'zstd' ? MediaType.layerZstd : MediaType.layer;
}

const LAYER_TYPES = new Map<string, Compression>([
  [MediaType.layer, 'none'], [MediaType.layerGzip, 'gzip'], [MediaType.layerZstd, 'zstd'],
  [MediaType.layerNondist, 'none'], [MediaType.layerNondistGzip, 'gzip'], [MediaType.layerNondistZstd, 'zstd'],
  [MediaType.dockerLayer, 'none'], [MediaType.dockerLayerGzip, 'gzip'], [MediaType.dockerLayerForeignGzip, 'gzip'],
]);

/** The compression a layer media type declares, or undefined when it is not a layer type keel knows. */
export function compressionOfMediaType(mediaType: string): Compression | undefined {
  return LAYER_TYPES.get(mediaType);
}

export const DEFAULT_LEVEL: Record<Exclude<Compression, 'none'>, number> = { gzip: 6, zstd: 3 };

/** The compression of a stream from its first bytes. */
export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  return 'none';
}

type ZstdModule = typeof import('zstd-napi');
let zstdModule: Promise<ZstdModule> | undefined;
function loadZstd(): Promise<ZstdModule> {
  zstdModule ??= import('zstd-napi').then((m) => ((m as unknown as { default?: ZstdModule }).default ?? m) as ZstdModule);
  return zstdModule;
}

const GZIP_BLOCK = 1 << 20;
const GZIP_WINDOW = 32 << 10;

function workers(): number {
  return Math.max(1, Math.min(availableParallelism(), 8));
}

/**
 * gzip in parallel, as pigz does: the input is cut into fixed 1 MiB blocks, each compressed as raw
 * deflate on the thread pool with the previous block's last 32 KiB as dictionary and ended with a
 * sync flush (the last one with a final block), then written in order between one gzip header and
 * a trailer holding the CRC-32 and length of the whole input. The result is one ordinary gzip
 * member; it depends only on the input and the level, never on the number of threads or on how
 * the input was chunked.
 */
export class ParallelGzip extends Transform {
  private block: Buffer = Buffer.allocUnsafe(GZIP_BLOCK);
  private fill = 0;
  private prevTail: Buffer | undefined;
  private crc = 0;
  private total = 0;
  private readonly inflight: Promise<Buffer>[] = [];
  private readonly maxInflight = workers() + 1;
  private headerDone = false;

  constructor(private readonly level: number) {
    super({ highWaterMark: 4 << 20 });
  }

  private header(): void {
    if (this.headerDone) return;
    this.headerDone = true;
    const xfl = this.level === 9 ? 2 : this.level === 1 ? 4 : 0;
    this.push(Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3]));
  }

  private dispatch(data: Buffer, last: boolean): void {
    const opts: { level: number; memLevel: number; finishFlush: number; dictionary?: Buffer } = {
      level: this.level, memLevel: 9, finishFlush: last ? zlibConstants.Z_FINISH : zlibConstants.Z_SYNC_FLUSH,
    };
    if (this.prevTail) opts.dictionary = this.prevTail;
    this.crc = crc32(data, this.crc);
    this.total += data.length;
    this.prevTail = data.length >= GZIP_WINDOW ? Buffer.from(data.subarray(data.length - GZIP_WINDOW)) : Buffer.concat([this.prevTail ?? Buffer.alloc(0), data]).subarray(-GZIP_WINDOW);
    this.inflight.push(new Promise<Buffer>((resolve, reject) => deflateRaw(data, opts, (err, out) => (err ? reject(err) : resolve(out)))));
  }

  /** Pushes finished blocks in order; waits for the oldest while too many are in flight. */
  private async drainInflight(limit: number): Promise<void> {
    while (this.inflight.length > limit) this.push(await this.inflight.shift()!);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.header();
    let pos = 0;
    const step = async (): Promise<void> => {
      while (pos < chunk.length) {
        const n = Math.min(chunk.length - pos, GZIP_BLOCK - this.fill);
        chunk.copy(this.block, this.fill, pos, pos + n);
        this.fill += n;
        pos += n;
        if (this.fill === GZIP_BLOCK) {
          this.dispatch(this.block, false);
          this.block = Buffer.allocUnsafe(GZIP_BLOCK);
          this.fill = 0;
          await this.drainInflight(this.maxInflight - 1);
        }
      }
    };
    step().then(() => cb(), cb);
  }

  override _flush(cb: TransformCallback): void {
    this.header();
    this.dispatch(this.block.subarray(0, this.fill), true);
    this.drainInflight(0).then(() => {
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.total % 0x100000000, 4);
      this.push(trailer);
      cb();
    }, cb);
  }
}

/**
 * A compressing transform. Output depends only on the input and the level: gzip as ParallelGzip
 * makes it, zstd with worker threads (zstd's output is the same for any number of workers ≥ 1).
 */
export async function createCompressor(c: Exclude<Compression, 'none'>, level?: number): Promise<Transform> {
  if (c === 'gzip') {
    const lvl = level ?? DEFAULT_LEVEL.gzip;
    if (!Number.isInteger(lvl) || lvl < 0 || lvl > 9) throw new KeelError(`gzip level must be 0..9, not ${lvl}`);
    return new ParallelGzip(lvl);
  }
  const lvl = level ?? DEFAULT_LEVEL.zstd;
  if (!Number.isInteger(lvl) || lvl < 1 || lvl > 19) throw new KeelError(`zstd level must be 1..19, not ${lvl}`);
  const zstd = await loadZstd();
  return new zstd.CompressStream({ compressionLevel: lvl, nbWorkers: workers(), checksumFlag: true });
}

export async function createDecompressor(c: Exclude<Compression, 'none'>): Promise<Transform> {
  if (c === 'gzip') return createGunzip({ chunkSize: 256 << 10, finishFlush: zlibConstants.Z_SYNC_FLUSH });
  const zstd = await loadZstd();
  return new zstd.DecompressStream();
}

/**
 * Decompresses a stream whose compression is found from its magic bytes (media types lie
 * sometimes; the bytes do not). `expect` names what the caller believed, for the error message.
 */
export async function* decompress(source: AsyncIterable<Uint8Array>, what = 'layer'): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  let first = await it.next();
  while (!first.done && first.value.length < 4) {
    // Gather at least 4 bytes to see the magic.
    const next = await it.next();
    if (next.done) break;
    first = { done: false, value: Buffer.concat([first.value, next.value]) };
  }
  if (first.done) return;
  const head = Buffer.isBuffer(first.value) ? first.value : Buffer.from(first.value);
  const c = detectCompression(head);
  if (c === 'none') {
    let finished = false;
    try {
      yield head;
      for (;;) {
        const r = await it.next();
        if (r.done) { finished = true; return; }
        yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      }
    } finally {
      if (!finished) await it.return?.();
    }
  }
  const dec = await createDecompressor(c);
  let sourceError: unknown;
  async function* input(): AsyncGenerator<Uint8Array> {
    yield head;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    } catch (err) {
      sourceError = err;
      throw err;
    }
  }
  let failure: Error | undefined;
  const src = Readable.from(input(), { objectMode: false });
  pipeline(src, dec, (err) => { if (err) failure = err; });
  try {
    for await (const chunk of dec) yield chunk as Buffer;
  } catch (err) {
    if (sourceError !== undefined) throw sourceError;
    throw new KeelError(`${what}: ${c} data is corrupt: ${(failure ?? (err as Error)).message}`, { cause: err });
  } finally {
    // Stopped early (the consumer failed or had enough): release the source (an open blob).
    if (!src.destroyed) src.destroy();
    await it.return?.();
  }
  if (sourceError !== undefined) throw sourceError;
  if (failure) throw new KeelError(`${what}: ${c} data is corrupt: ${failure.message}`, { cause: failure });
}
