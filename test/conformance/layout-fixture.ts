// Hand-made OCI image layouts for the image suite's tests: a tiny ustar writer and a layout
// writer whose every document can be bent before it is written, to make one thing wrong at a time.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export interface TarSpec {
  name: string;
  /** '0' file (default), '1' hardlink, '2' symlink, '3' char device, '5' directory. */
  type?: string;
  content?: string;
  linkname?: string;
  mode?: number;
  devmajor?: number;
  devminor?: number;
  /** Corrupt the header checksum. */
  badChecksum?: boolean;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function header(e: TarSpec, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(e.name, 0, 100, 'utf8');
  h.write(octal(e.mode ?? (e.type === '5' ? 0o755 : 0o644), 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(size, 12), 124, 'latin1');
  h.write(octal(1700000000, 12), 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write(e.type ?? '0', 156, 'latin1');
  if (e.linkname) h.write(e.linkname, 157, 100, 'utf8');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.write(octal(e.devmajor ?? 0, 8), 329, 'latin1');
  h.write(octal(e.devminor ?? 0, 8), 337, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(e.badChecksum ? sum + 1 : sum, 7) + ' ', 148, 'latin1');
  return h;
}

/** A ustar archive of the entries, with the end-of-archive marker. */
export function tar(entries: TarSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.content ?? '');
    parts.push(header(e, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface LayoutSpec {
  /** Uncompressed layer tars, lowest first. */
  layers: Buffer[];
  /** How layer blobs are stored (default gzip). */
  compression?: 'gzip' | 'none';
  /** The media type written in the manifest for every layer (default: the one matching compression). */
  layerMediaType?: string;
  config?: (c: Record<string, unknown>) => void;
  manifest?: (m: Record<string, unknown>) => void;
  index?: (i: Record<string, unknown>) => void;
  /** Changes a blob's bytes after its digest was taken (to corrupt content). */
  corrupt?: (kind: 'config' | 'manifest' | 'layer', bytes: Buffer) => Buffer;
}

/** Writes an OCI image layout with one image tagged `v1` and returns its directory. */
export function writeLayout(dir: string, spec: LayoutSpec): string {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (kind: 'config' | 'manifest' | 'layer', bytes: Buffer) => {
    const digest = sha256(bytes);
    writeFileSync(join(dir, 'blobs', 'sha256', digest.slice(7)), spec.corrupt ? spec.corrupt(kind, bytes) : bytes);
    return { digest, size: bytes.length };
  };
  const gzip = (spec.compression ?? 'gzip') === 'gzip';
  const layers = spec.layers.map((t) => ({
    mediaType: spec.layerMediaType ?? (gzip ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar'),
    ...put('layer', gzip ? gzipSync(t) : t),
  }));
  const config: Record<string, unknown> = {
    created: '2024-01-02T03:04:05Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Cmd: ['/bin/true'] },
    rootfs: { type: 'layers', diff_ids: spec.layers.map((t) => sha256(t)) },
    history: spec.layers.map((_, i) => ({ created: '2024-01-02T03:04:05Z', created_by: `layer ${i}` })),
  };
  spec.config?.(config);
  const configDesc = { mediaType: 'application/vnd.oci.image.config.v1+json', ...put('config', Buffer.from(JSON.stringify(config))) };
  const manifest: Record<string, unknown> = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: configDesc, layers };
  spec.manifest?.(manifest);
  const manifestDesc = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    ...put('manifest', Buffer.from(JSON.stringify(manifest))),
    platform: { architecture: 'amd64', os: 'linux' },
    annotations: { 'org.opencontainers.image.ref.name': 'v1' },
  };
  const index: Record<string, unknown> = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [manifestDesc] };
  spec.index?.(index);
  writeFileSync(join(dir, 'index.json'), JSON.stringify(index));
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return dir;
}

/** A base layer and a second layer that removes and adds files (OCI whiteouts, a hardlink). */
export function twoLayers(): Buffer[] {
  return [
    tar([
      { name: 'etc/', type: '5' },
      { name: 'etc/hello', content: 'hello\n' },
      { name: 'etc/old', content: 'old\n' },
      { name: 'var/', type: '5' },
      { name: 'var/cache/', type: '5' },
      { name: 'var/cache/x', content: 'x\n' },
    ]),
    tar([
      { name: 'etc/', type: '5' },
      { name: 'etc/.wh.old' },
      { name: 'etc/new', content: 'new\n' },
      { name: 'etc/new-link', type: '1', linkname: 'etc/hello' },
      { name: 'var/', type: '5' },
      { name: 'var/.wh.cache' },
    ]),
  ];
}
