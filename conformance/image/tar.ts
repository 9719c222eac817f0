// A strict, streaming reader of tar headers for checking layers: it validates every header's
// checksum, follows PAX ('x', 'g') and GNU long-name ('L', 'K') records, skips file data, and
// reports what is malformed (bad checksums, truncation, a missing end-of-archive marker, bytes
// after it) instead of guessing.

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo' | 'sparse' | 'other';

export interface TarEntry {
  /** The path as recorded (after PAX/GNU long names and the ustar prefix). */
  path: string;
  type: EntryType;
  /** The raw type flag, e.g. '0', '5', 'S'. */
  flag: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** PAX records that applied to this entry (global ones included). */
  pax: Record<string, string>;
  /** Byte offset of the header in the uncompressed stream. */
  offset: number;
}

const BLOCK = 512;

function cstring(buf: Buffer, start: number, len: number): string {
  const end = buf.indexOf(0, start);
  return buf.toString('utf8', start, end < 0 || end > start + len ? start + len : end);
}

/** Octal (NUL/space terminated) or GNU base-256 numeric field; NaN when malformed. */
function numeric(buf: Buffer, start: number, len: number): number {
  if (buf[start] & 0x80) {
    let v = 0;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + buf[i];
    return v;
  }
  const s = buf.toString('latin1', start, start + len).replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  return /^[0-7]+$/.test(s) ? parseInt(s, 8) : NaN;
}

function checksumOk(h: Buffer): boolean {
  const recorded = numeric(h, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return recorded === unsigned || recorded === signed;
}

function parsePax(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = parseInt(data.toString('latin1', pos, sp), 10);
    if (!Number.isFinite(len) || len <= 0) break;
    const rec = data.toString('utf8', sp + 1, pos + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    pos += len;
  }
  return out;
}

const TYPES: Record<string, EntryType> = { '0': 'file', '\0': 'file', '7': 'file', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo', S: 'sparse' };

/**
 * Feed uncompressed tar bytes with `push`, then call `end`. Entries come out through `onEntry`;
 * `problems` collects what is malformed. Parsing stops at the first unreadable header.
 */
export class TarReader {
  readonly problems: string[] = [];
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private offset = 0;
  /** Bytes of the current entry's data still to skip (or collect for meta records). */
  private remaining = 0;
  private padding = 0;
  private collect: { kind: string; parts: Buffer[] } | null = null;
  private pax: Record<string, string> = {};
  private globalPax: Record<string, string> = {};
  private longName: string | null = null;
  private longLink: string | null = null;
  private zeroBlocks = 0;
  private ended = false;
  private broken = false;
  private trailingGarbage = false;

  constructor(private readonly onEntry: (e: TarEntry) => void) {}

  push(chunk: Buffer): void {
    if (this.broken) return;
    this.pending.push(chunk);
    this.pendingLen += chunk.length;
    this.drain();
  }

  private take(n: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0] : Buffer.concat(this.pending, this.pendingLen);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.pending = rest.length ? [rest] : [];
    this.pendingLen = rest.length;
    this.offset += n;
    return out;
  }

  private drain(): void {
    while (!this.broken) {
      if (this.remaining > 0 || this.padding > 0) {
        if (this.pendingLen === 0) return;
        if (this.remaining > 0) {
          const n = Math.min(this.remaining, this.pendingLen);
          const data = this.take(n);
          this.remaining -= n;
          if (this.collect) this.collect.parts.push(Buffer.from(data));
          if (this.remaining === 0 && this.collect) this.finishMeta();
        } else {
          const n = Math.min(this.padding, this.pendingLen);
          this.take(n);
          this.padding -= n;
        }
        continue;
      }
      if (this.pendingLen < BLOCK) return;
      const offset = this.offset;
      const h = this.take(BLOCK);
      if (this.ended) {
        if (h.some((b) => b !== 0)) this.trailingGarbage = true;
        continue;
      }
      if (h.every((b) => b === 0)) {
        this.zeroBlocks++;
        if (this.zeroBlocks >= 2) this.ended = true;
        continue;
      }
      if (this.zeroBlocks > 0) {
        this.problems.push(`a lone zero block at offset ${offset - BLOCK} is followed by more headers`);
        this.zeroBlocks = 0;
      }
      if (!checksumOk(h)) {
        this.problems.push(`header at offset ${offset} has a bad checksum (not a tar header)`);
        this.broken = true;
        return;
      }
      this.header(h, offset);
    }
  }

  private header(h: Buffer, offset: number): void {
    const flag = String.fromCharCode(h[156]);
    const size = numeric(h, 124, 12);
    if (!Number.isFinite(size)) {
      this.problems.push(`header at offset ${offset} has an unreadable size field`);
      this.broken = true;
      return;
    }
    const dataBlocks = Math.ceil(size / BLOCK) * BLOCK;
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      this.remaining = size;
      this.padding = dataBlocks - size;
      this.collect = { kind: flag, parts: [] };
      if (size === 0) this.finishMeta();
      return;
    }
    const magic = h.toString('latin1', 257, 263);
    const ustar = magic === 'ustar\0' || magic === 'ustar ';
    let name = cstring(h, 0, 100);
    const prefix = magic === 'ustar\0' ? cstring(h, 345, 155) : '';
    if (prefix) name = `${prefix}/${name}`;
    const pax = { ...this.globalPax, ...this.pax };
    const path = pax.path ?? this.longName ?? name;
    const linkname = pax.linkpath ?? this.longLink ?? cstring(h, 157, 100);
    const entry: TarEntry = {
      path,
      type: TYPES[flag] ?? 'other',
      flag: flag === '\0' ? '0' : flag,
      size: pax.size !== undefined ? Number(pax.size) : size,
      mode: numeric(h, 100, 8),
      uid: pax.uid !== undefined ? Number(pax.uid) : numeric(h, 108, 8),
      gid: pax.gid !== undefined ? Number(pax.gid) : numeric(h, 116, 8),
      mtime: pax.mtime !== undefined ? Number(pax.mtime) : numeric(h, 136, 12),
      linkname,
      devmajor: ustar ? numeric(h, 329, 8) : 0,
      devminor: ustar ? numeric(h, 337, 8) : 0,
      pax,
      offset,
    };
    this.pax = {};
    this.longName = null;
    this.longLink = null;
    this.onEntry(entry);
    // Links, devices, directories and fifos are header-only: whatever their size field says, no data follows.
    const headerOnly = ['hardlink', 'symlink', 'char', 'block', 'dir', 'fifo'].includes(entry.type);
    const dataLen = headerOnly ? 0 : entry.size;
    this.remaining = dataLen;
    this.padding = Math.ceil(dataLen / BLOCK) * BLOCK - dataLen;
    this.collect = null;
  }

  private finishMeta(): void {
    const c = this.collect!;
    this.collect = null;
    const data = Buffer.concat(c.parts);
    if (c.kind === 'x') this.pax = { ...this.pax, ...parsePax(data) };
    else if (c.kind === 'g') this.globalPax = { ...this.globalPax, ...parsePax(data) };
    else if (c.kind === 'L') this.longName = data.toString('utf8').replace(/\0+$/, '');
    else if (c.kind === 'K') this.longLink = data.toString('utf8').replace(/\0+$/, '');
  }

  /** Call once the stream is done; records truncation and a missing end-of-archive marker. */
  end(): void {
    if (this.broken) return;
    if (this.remaining > 0 || this.collect) this.problems.push(`the archive is truncated inside an entry (${this.remaining} bytes of data missing)`);
    else if (this.pendingLen > 0 && !this.ended) this.problems.push(`the archive ends with a partial block of ${this.pendingLen} bytes`);
    else if (this.zeroBlocks === 0) this.problems.push('the archive has no end-of-archive marker (zero blocks)');
    if (this.trailingGarbage) this.problems.push('non-zero bytes follow the end-of-archive marker');
  }
}

/** A tar path made comparable: no leading './' or '/', no trailing '/', no empty or '.' components. */
export function cleanPath(p: string): string {
  return p
    .split('/')
    .filter((c) => c !== '' && c !== '.')
    .join('/');
}
