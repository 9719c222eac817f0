// The local archives ADD extracts, recognised as Docker and BuildKit do: by their first bytes, a
// tar stream plain or compressed with gzip, bzip2, xz or zstd (whatever the file is called), whose
// decompressed start is a tar header. gzip and zstd are node:zlib and zstd-napi (as for layers),
// xz is liblzma (node-liblzma, its prebuilt addon), bzip2 unbzip2-stream.
import * as fs from 'node:fs';
import { PassThrough, type Readable, type Transform } from 'node:stream';
import { KeelError } from '../util/errors.js';

export type ArchiveCompression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

/** The compression a file's first bytes announce. */
export function archiveCompression(head: Uint8Array): ArchiveCompression {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'gzip';
  if (b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (b.length >= 6 && b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (b.length >= 4 && b.toString('latin1', 0, 3) === 'BZh' && b[3]! >= 0x31 && b[3]! <= 0x39) return 'bzip2';
  return 'none';
}

async function decompressor(c: Exclude<ArchiveCompression, 'none'>): Promise<Transform> {
  switch (c) {
    case 'gzip':
      return (await import('node:zlib')).createGunzip();
    case 'zstd': {
      const { createDecompressor } = await import('../layers/index.js');
      return createDecompressor('zstd');
    }
    case 'xz': {
      const lzma = await import('node-liblzma');
      return lzma.createUnxz() as unknown as Transform;
    }
    case 'bzip2': {
      const m = await import('unbzip2-stream');
      const unbzip2 = (m as unknown as { default?: () => Transform }).default ?? (m as unknown as () => Transform);
      return unbzip2();
    }
  }
}

function readHead(path: string, n: number): Buffer {
  const fd = fs.openSync(path, 'r');
  try {
    const head = Buffer.alloc(n);
    return head.subarray(0, fs.readSync(fd, head, 0, n, 0));
  } finally {
    fs.closeSync(fd);
  }
}

/** The file's content decompressed (as a stream of the tar archive it holds). */
export async function openArchive(path: string): Promise<Readable> {
  const c = archiveCompression(readHead(path, 8));
  const file = fs.createReadStream(path);
  if (c === 'none') return file;
  const d = await decompressor(c);
  // (unbzip2-stream is an old-style stream: a PassThrough makes every decompressor async-iterable.)
  const out = new PassThrough();
  file.on('error', (err) => out.destroy(err));
  d.on('error', (err: Error) => out.destroy(err));
  return file.pipe(d).pipe(out);
}

/** Whether a file is a tar archive, plain or compressed: its (decompressed) first block is a tar header. */
export async function isTarArchive(path: string): Promise<boolean> {
  let start: Buffer;
  try {
    const stream = await openArchive(path);
    start = await new Promise<Buffer>((resolve) => {
      const parts: Buffer[] = [];
      let size = 0;
      const done = () => {
        stream.removeAllListeners('data');
        stream.destroy();
        resolve(Buffer.concat(parts));
      };
      stream.on('data', (c: Buffer) => {
        parts.push(c);
        size += c.length;
        if (size >= 512) done();
      });
      stream.on('end', done);
      stream.on('error', () => { parts.length = 0; done(); });
    });
  } catch (err) {
    if (err instanceof KeelError) throw err;
    return false;
  }
  return start.length >= 263 && start.toString('latin1', 257, 262) === 'ustar';
}
