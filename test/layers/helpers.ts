// Shared by the layer tests: temporary directories, a busybox rootfs, full-metadata tree snapshots,
// raw tar building (so tests can write archives no well-behaved tool would), peer-tool lookup.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { spawnSync, execFileSync } from 'node:child_process';
import { loadFsSys } from '../../src/runtime/sys/fs.js';
import { makeBusyboxRootfs } from '../fixtures/busybox-bundle.js';
import { tempDir as removedAtExit } from '../fixtures/cleanup.js';

export const repoRoot = new URL('../../', import.meta.url).pathname;

/** A temporary directory removed when the test process ends. */
export function tempDir(prefix: string): string {
  return removedAtExit(`keel-${prefix}-`);
}

export function which(cmd: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

export function sh(cmd: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  return execFileSync('sh', ['-c', cmd], { cwd: opts.cwd, env: opts.env ?? process.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A small root filesystem: static busybox with its applet symlinks, /etc/passwd and /etc/group. */
export function busyboxRootfs(dir: string, extra: { passwd?: string; group?: string } = {}): string {
  return makeBusyboxRootfs(join(dir, 'bb-bundle', 'rootfs'), extra);
}

export interface NodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime?: number;
  size?: number;
  sha?: string;
  link?: string;
  rdev?: number;
  xattrs?: Record<string, string>;
  /** Paths (in the tree) sharing this inode, for regular files with more than one link. */
  inodeGroup?: string;
}

/**
 * Everything about a tree that a layer must carry: type, permission bits, owners, mtime (seconds,
 * directories included unless `dirMtimes` is false), content hash, symlink target, device number,
 * xattrs (hex values), and which files are hardlinked together.
 */
export async function snapshot(root: string, opts: { dirMtimes?: boolean; mtimes?: boolean; skipXattr?: (n: string) => boolean } = {}): Promise<Map<string, NodeInfo>> {
  const sys = await loadFsSys();
  const out = new Map<string, NodeInfo>();
  const inodes = new Map<string, string>();
  const walk = (rel: string) => {
    const abs = rel ? join(root, rel) : root;
    for (const name of fs.readdirSync(abs).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const a = join(abs, name);
      const st = fs.lstatSync(a);
      const info: NodeInfo = {
        type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'chardev' : st.isBlockDevice() ? 'blockdev' : st.isFIFO() ? 'fifo' : 'other',
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
      };
      if (opts.mtimes !== false && (info.type !== 'dir' || opts.dirMtimes !== false)) info.mtime = Math.floor(st.mtimeMs / 1000);
      if (info.type === 'file') {
        info.size = st.size;
        info.sha = createHash('sha256').update(fs.readFileSync(a)).digest('hex');
        if (st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          if (!inodes.has(key)) inodes.set(key, r);
          info.inodeGroup = inodes.get(key);
        }
      }
      if (info.type === 'symlink') info.link = fs.readlinkSync(a);
      if (info.type === 'chardev' || info.type === 'blockdev') info.rdev = st.rdev;
      const names = sys.llistxattr(a).filter((n) => !(opts.skipXattr?.(n) ?? false)).sort();
      if (names.length) {
        info.xattrs = {};
        for (const n of names) info.xattrs[n] = sys.lgetxattr(a, n)?.toString('hex') ?? '';
      }
      out.set(r, info);
      if (info.type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

/** Lists the differences between two snapshots, one line each (empty when equal). */
export function diffSnapshots(a: Map<string, NodeInfo>, b: Map<string, NodeInfo>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) {
    const w = b.get(k);
    if (!w) { out.push(`only in first: ${k}`); continue; }
    const sa = JSON.stringify(v);
    const sb = JSON.stringify(w);
    if (sa !== sb) out.push(`${k}: ${sa} != ${sb}`);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`only in second: ${k}`);
  return out;
}

// ─────────────── raw tar building, independent of src/layers/tar.ts ───────────────

export interface RawEntry {
  name: string;
  /** Typeflag character: '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo, 'x' PAX, 'L' GNU long name... */
  type?: string;
  data?: Buffer | string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  /** Overrides the size field (to lie about the data length). */
  size?: number;
  /** Writes the checksum wrong. */
  badChecksum?: boolean;
}

function octal(n: number, len: number): string {
  return `${n.toString(8).padStart(len - 1, '0')}\0`;
}

/** One 512-byte header (plus data and padding) written byte by byte, whatever it says. */
export function rawEntry(e: RawEntry): Buffer {
  const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
  const h = Buffer.alloc(512);
  h.write(e.name, 0, 100, 'utf8');
  h.write(octal(e.mode ?? 0o644, 8), 100, 'latin1');
  h.write(octal(e.uid ?? 0, 8), 108, 'latin1');
  h.write(octal(e.gid ?? 0, 8), 116, 'latin1');
  h.write(octal(e.size ?? data.length, 12), 124, 'latin1');
  h.write(octal(e.mtime ?? 1700000000, 12), 136, 'latin1');
  h.write(e.type ?? '0', 156, 'latin1');
  h.write(e.linkname ?? '', 157, 100, 'utf8');
  h.write('ustar\x0000', 257, 'latin1');
  h.write(octal(e.devmajor ?? 0, 8), 329, 'latin1');
  h.write(octal(e.devminor ?? 0, 8), 337, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  if (e.badChecksum) sum += 1;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const pad = (512 - (data.length % 512)) % 512;
  return Buffer.concat([h, data, Buffer.alloc(pad)]);
}

/** A PAX extended header entry carrying the given records (for the entry that follows). */
export function rawPax(records: Record<string, string | Buffer>): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(records)) {
    const val = Buffer.from(v);
    const body = Buffer.byteLength(k) + val.length + 3;
    let len = body + String(body).length;
    if (String(len).length !== String(body).length) len = body + String(len).length;
    parts.push(Buffer.concat([Buffer.from(`${len} ${k}=`), val, Buffer.from('\n')]));
  }
  return rawEntry({ name: 'PaxHeaders/x', type: 'x', data: Buffer.concat(parts) });
}

/** A complete archive: entries then two zero blocks. */
export function rawTar(entries: (RawEntry | Buffer)[]): Buffer {
  return Buffer.concat([...entries.map((e) => (Buffer.isBuffer(e) ? e : rawEntry(e))), Buffer.alloc(1024)]);
}

/** Chunks of a buffer as an async iterable (small chunks exercise the reader's boundaries). */
export async function* chunks(buf: Buffer, size = 4096): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

export async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}
