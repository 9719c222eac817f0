/**
 * A streaming tar codec: POSIX ustar headers with PAX extended records where needed (long or
 * non-ASCII names, large numbers, xattrs as SCHILY.xattr.*), GNU long names on reading.
 *
 * node-tar is not used here because its PAX parser drops SCHILY.xattr records and cuts binary
 * values at the first NUL, so a file capability (security.capability) could not survive a layer.
 *
 * Writing is deterministic: the same headers and data give the same bytes (no atime/ctime, no
 * user/group names unless given, PAX records sorted, no padding beyond the two end blocks).
 */
import { readSync } from 'node:fs';
import { KeelError } from '../util/errors.js';

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'dir' | 'fifo';

export interface TarHeader {
  /** Relative path with '/' separators, without a leading './' or '/' and without a trailing '/'. */
  path: string;
  type: EntryType;
  /** Permission bits including set-uid, set-gid and sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  uname?: string;
  gname?: string;
  /** Size of the data (regular files only; 0 otherwise). */
  size: number;
  /** Modification time in seconds since the epoch (fractional when an archive says so). */
  mtime: number;
  /** Target of a symlink, or the archive path a hardlink points to. */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, name → raw value. */
  xattrs?: Record<string, Buffer>;
  /** POSIX ACLs in text form, as GNU tar and star archive them (SCHILY.acl.access, SCHILY.acl.default). */
  acls?: { access?: string; default?: string };
}

/** What a reader sees: the header as the archive wrote its name (before any normalisation). */
export interface TarEntry {
  header: TarHeader;
  /** The name exactly as in the archive (may start with '/' or './', may contain '..'). */
  rawPath: string;
  /** Raw hardlink/symlink target as in the archive. */
  rawLinkname: string;
  /**
   * The data, as chunks that stay valid after the next read; consumed at most once. For a sparse
   * file, the data of its segments one after the other.
   */
  body(): AsyncGenerator<Buffer>;
  /**
   * A sparse file (GNU old format, PAX 0.0, 0.1, 1.0): its segments as [offset, length], in
   * order; `header.size` is then the file's full size and the body holds only the segments.
   */
  sparse?: [number, number][];
}

const BLOCK = 512;
const TYPE_FLAGS: Record<EntryType, number> = {
  file: 0x30, hardlink: 0x31, symlink: 0x32, chardev: 0x33, blockdev: 0x34, dir: 0x35, fifo: 0x36,
};

// ───────────────────────────── writing ─────────────────────────────

const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7e || s.charCodeAt(i) < 0x20) return false;
  return true;
}

function writeOctal(buf: Buffer, off: number, len: number, value: number): void {
  // len-1 octal digits, then NUL.
  const s = Math.trunc(value).toString(8).padStart(len - 1, '0');
  buf.write(s, off, len - 1, 'latin1');
  buf[off + len - 1] = 0;
}

function writeString(buf: Buffer, off: number, len: number, value: string): void {
  buf.write(value, off, len, 'utf8');
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.byteLength(key) + value.length + 3; // ' ' '=' '\n'
  let digits = String(body).length;
  while (String(body + digits).length !== digits) digits++;
  const total = body + digits;
  const head = Buffer.from(`${total} ${key}=`, 'utf8');
  return Buffer.concat([head, value, Buffer.from('\n')], total);
}

/** Encodes one entry's header blocks (a PAX extended header first when needed). */
export function encodeHeader(h: TarHeader): Buffer {
  const pax: [string, Buffer][] = [];
  let name = h.type === 'dir' ? `${h.path}/` : h.path;
  if (h.path === '') name = './';
  if (Buffer.byteLength(name) > 100 || !isAscii(name)) {
    pax.push(['path', Buffer.from(name, 'utf8')]);
    name = asciiFallback(name, 100);
  }
  let linkname = h.linkname ?? '';
  if (Buffer.byteLength(linkname) > 100 || !isAscii(linkname)) {
    pax.push(['linkpath', Buffer.from(linkname, 'utf8')]);
    linkname = asciiFallback(linkname, 100);
  }
  const size = h.type === 'file' ? h.size : 0;
  if (size > MAX_OCTAL_11) pax.push(['size', Buffer.from(String(size))]);
  if (h.uid > MAX_OCTAL_7) pax.push(['uid', Buffer.from(String(h.uid))]);
  if (h.gid > MAX_OCTAL_7) pax.push(['gid', Buffer.from(String(h.gid))]);
  const mtime = Math.trunc(h.mtime);
  if (mtime < 0 || mtime > MAX_OCTAL_11) pax.push(['mtime', Buffer.from(String(mtime))]);
  let uname = h.uname ?? '';
  let gname = h.gname ?? '';
  if (Buffer.byteLength(uname) > 32 || !isAscii(uname)) { pax.push(['uname', Buffer.from(uname)]); uname = ''; }
  if (Buffer.byteLength(gname) > 32 || !isAscii(gname)) { pax.push(['gname', Buffer.from(gname)]); gname = ''; }
  if (h.xattrs) {
    for (const key of Object.keys(h.xattrs)) pax.push([`SCHILY.xattr.${key}`, h.xattrs[key]!]);
  }

  const main = Buffer.alloc(BLOCK);
  writeString(main, 0, 100, name);
  writeOctal(main, 100, 8, h.mode & 0o7777);
  writeOctal(main, 108, 8, h.uid > MAX_OCTAL_7 ? 0 : h.uid);
  writeOctal(main, 116, 8, h.gid > MAX_OCTAL_7 ? 0 : h.gid);
  writeOctal(main, 124, 12, size > MAX_OCTAL_11 ? 0 : size);
  writeOctal(main, 136, 12, mtime < 0 || mtime > MAX_OCTAL_11 ? 0 : mtime);
  main[156] = TYPE_FLAGS[h.type];
  writeString(main, 157, 100, linkname);
  main.write('ustar\x0000', 257, 8, 'latin1');
  writeString(main, 265, 32, uname);
  writeString(main, 297, 32, gname);
  writeOctal(main, 329, 8, h.devmajor ?? 0);
  writeOctal(main, 337, 8, h.devminor ?? 0);
  setChecksum(main);
  if (pax.length === 0) return main;

  pax.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const records = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const base = h.path.slice(h.path.lastIndexOf('/') + 1) || '.';
  const ph = Buffer.alloc(BLOCK);
  writeString(ph, 0, 100, asciiFallback(`PaxHeaders.0/${base}`, 100));
  writeOctal(ph, 100, 8, 0o644);
  writeOctal(ph, 108, 8, 0);
  writeOctal(ph, 116, 8, 0);
  writeOctal(ph, 124, 12, records.length);
  writeOctal(ph, 136, 12, 0);
  ph[156] = 0x78; // 'x'
  ph.write('ustar\x0000', 257, 8, 'latin1');
  writeOctal(ph, 329, 8, 0);
  writeOctal(ph, 337, 8, 0);
  setChecksum(ph);
  const padded = Math.ceil(records.length / BLOCK) * BLOCK;
  const out = Buffer.alloc(BLOCK + padded + BLOCK);
  ph.copy(out, 0);
  records.copy(out, BLOCK);
  main.copy(out, BLOCK + padded);
  return out;
}

function asciiFallback(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const ascii = s.replace(/[^\x20-\x7e]/g, '_');
  return ascii.length > max ? ascii.slice(0, max) : ascii;
}

function setChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  block.write(sum.toString(8).padStart(6, '0'), 148, 6, 'latin1');
  block[154] = 0;
  block[155] = 0x20;
}

/** Where a writer's output goes: a write may return a promise to push back. */
export interface ChunkSink {
  write(chunk: Buffer): void | Promise<void>;
}

/**
 * Writes a tar stream in large chunks: headers, small files and padding are gathered in a batch
 * buffer and handed to the sink when it is full; file data is read straight into that buffer.
 */
export class TarWriter {
  private buf: Buffer;
  private off = 0;
  private readonly batch: number;
  /** Bytes handed to the sink so far. */
  written = 0;

  constructor(private readonly sink: ChunkSink, opts: { batchSize?: number } = {}) {
    this.batch = opts.batchSize ?? 1 << 20;
    this.buf = Buffer.allocUnsafe(this.batch);
  }

  private async flush(): Promise<void> {
    if (this.off === 0) return;
    const chunk = this.buf.subarray(0, this.off);
    this.buf = Buffer.allocUnsafe(this.batch);
    this.off = 0;
    this.written += chunk.length;
    const r = this.sink.write(chunk);
    if (r) await r;
  }

  private async put(data: Uint8Array): Promise<void> {
    let pos = 0;
    while (pos < data.length) {
      const n = Math.min(data.length - pos, this.buf.length - this.off);
      this.buf.set(data.subarray(pos, pos + n), this.off);
      this.off += n;
      pos += n;
      if (this.off === this.buf.length) await this.flush();
    }
  }

  private async pad(size: number): Promise<void> {
    let rest = (BLOCK - (size % BLOCK)) % BLOCK;
    while (rest > 0) {
      const n = Math.min(rest, this.buf.length - this.off);
      this.buf.fill(0, this.off, this.off + n);
      this.off += n;
      rest -= n;
      if (this.off === this.buf.length) await this.flush();
    }
  }

  /** Adds an entry whose data (if any) is in memory; `data.length` must equal `header.size`. */
  async add(header: TarHeader, data?: Uint8Array): Promise<void> {
    const size = header.type === 'file' ? header.size : 0;
    if ((data?.length ?? 0) !== size) throw new KeelError(`tar: ${header.path}: data length ${data?.length ?? 0} differs from size ${size}`);
    await this.put(encodeHeader(header));
    if (data && size) {
      await this.put(data);
      await this.pad(size);
    }
  }

  /**
   * Adds a regular file whose data is read from an open descriptor (from offset 0, `header.size`
   * bytes). Fails if the file is shorter than the header says (it changed while being archived).
   */
  async addFromFd(header: TarHeader, fd: number, what: string): Promise<void> {
    await this.put(encodeHeader(header));
    let pos = 0;
    const size = header.size;
    while (pos < size) {
      const want = Math.min(size - pos, this.buf.length - this.off);
      const n = readSync(fd, this.buf, this.off, want, pos);
      if (n === 0) throw new KeelError(`${what}: file shrank while being archived (${pos} of ${size} bytes)`);
      this.off += n;
      pos += n;
      if (this.off === this.buf.length) await this.flush();
    }
    await this.pad(size);
  }

  /** Adds a regular file whose data comes from a stream; it must yield exactly `header.size` bytes. */
  async addStream(header: TarHeader, source: AsyncIterable<Uint8Array>): Promise<void> {
    await this.put(encodeHeader(header));
    let total = 0;
    for await (const chunk of source) {
      total += chunk.length;
      if (total > header.size) throw new KeelError(`tar: ${header.path}: more data than its size ${header.size}`);
      if (chunk.length >= this.batch / 2) {
        await this.flush();
        this.written += chunk.length;
        const r = this.sink.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
        if (r) await r;
      } else {
        await this.put(chunk);
      }
    }
    if (total !== header.size) throw new KeelError(`tar: ${header.path}: ${total} bytes of data, header says ${header.size}`);
    await this.pad(header.size);
  }

  /** Writes the two zero blocks that end an archive and flushes. */
  async finish(): Promise<void> {
    await this.pad(0);
    const end = Buffer.alloc(2 * BLOCK);
    await this.put(end);
    await this.flush();
  }
}

// ───────────────────────────── reading ─────────────────────────────

/** Pulls exact byte counts out of an async sequence of chunks, without copying when it can. */
class ByteSource {
  private chunk: Buffer = Buffer.alloc(0);
  private off = 0;
  private done = false;
  /** Bytes consumed so far. */
  position = 0;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  private async fill(): Promise<boolean> {
    while (this.off >= this.chunk.length) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) { this.done = true; return false; }
      const v = r.value;
      this.chunk = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.off = 0;
    }
    return true;
  }

  /** Exactly n bytes, or fewer only at the end of the input. */
  async read(n: number): Promise<Buffer> {
    if (!(await this.fill())) return Buffer.alloc(0);
    if (this.chunk.length - this.off >= n) {
      const out = this.chunk.subarray(this.off, this.off + n);
      this.off += n;
      this.position += n;
      return out;
    }
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n && (await this.fill())) {
      const take = Math.min(n - got, this.chunk.length - this.off);
      parts.push(this.chunk.subarray(this.off, this.off + take));
      this.off += take;
      got += take;
    }
    this.position += got;
    return Buffer.concat(parts, got);
  }

  /** Up to `max` bytes that are already available (at least one unless at the end). */
  async readSome(max: number): Promise<Buffer> {
    if (!(await this.fill())) return Buffer.alloc(0);
    const take = Math.min(max, this.chunk.length - this.off);
    const out = this.chunk.subarray(this.off, this.off + take);
    this.off += take;
    this.position += take;
    return out;
  }

  async skip(n: number): Promise<number> {
    let left = n;
    while (left > 0 && (await this.fill())) {
      const take = Math.min(left, this.chunk.length - this.off);
      this.off += take;
      left -= take;
    }
    this.position += n - left;
    return n - left;
  }

  /** Stops the underlying iterator (closing what it holds open) when reading ends early. */
  async close(): Promise<void> {
    if (!this.done) {
      this.done = true;
      await this.it.return?.();
    }
  }

  /** Reads and discards everything left (so the producer's digest covers the whole stream). */
  async drain(): Promise<void> {
    while (await this.fill()) { this.position += this.chunk.length - this.off; this.off = this.chunk.length; }
  }
}

function parseNumeric(block: Buffer, off: number, len: number, field: string, where: string): number {
  const first = block[off]!;
  if (first & 0x80) {
    // base-256: big-endian two's complement, first byte 0x80 (positive) or 0xff (negative).
    let v = 0n;
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(block[off + i]!);
    if (first === 0xff) v -= 1n << BigInt(8 * (len - 1));
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new KeelError(`tar: ${where}: ${field} out of range`);
    return n;
  }
  let end = off;
  const stop = off + len;
  while (end < stop && (block[end] === 0x20 || block[end] === 0)) end++;
  let v = 0;
  let any = false;
  for (; end < stop; end++) {
    const c = block[end]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) throw new KeelError(`tar: ${where}: invalid ${field} field`);
    v = v * 8 + (c - 0x30);
    any = true;
  }
  return any ? v : 0;
}

function cString(block: Buffer, off: number, len: number): string {
  let end = off;
  while (end < off + len && block[end] !== 0) end++;
  return block.toString('utf8', off, end);
}

function checksumOk(block: Buffer, where: string): boolean {
  const stored = parseNumeric(block, 148, 8, 'checksum', where);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

interface PaxValues {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  uname?: string;
  gname?: string;
  xattrs?: Record<string, Buffer>;
  acls?: { access?: string; default?: string };
  /** GNU sparse records: format major (1 for 1.0), real size, name, and the map (0.0 pairs or 0.1 list). */
  sparseMajor?: number;
  sparseRealSize?: number;
  sparseName?: string;
  sparseMap?: number[];
}

/** Parses PAX records ("LEN KEY=VALUE\n"), byte-exact so binary xattr values survive. */
export function parsePax(data: Buffer, where: string, into: PaxValues = {}): PaxValues {
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) throw new KeelError(`tar: ${where}: malformed PAX record`);
    const len = Number(data.toString('latin1', pos, sp));
    if (!Number.isInteger(len) || len <= sp - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new KeelError(`tar: ${where}: malformed PAX record`);
    }
    const eq = data.indexOf(0x3d, sp + 1);
    if (eq < 0 || eq >= pos + len - 1) throw new KeelError(`tar: ${where}: malformed PAX record`);
    const key = data.toString('utf8', sp + 1, eq);
    const value = data.subarray(eq + 1, pos + len - 1);
    applyPax(into, key, value, where);
    pos += len;
  }
  return into;
}

function paxNumber(value: Buffer, key: string, where: string): number {
  const s = value.toString('latin1');
  if (!/^-?\d+(\.\d+)?$/.test(s)) throw new KeelError(`tar: ${where}: invalid PAX ${key} ${JSON.stringify(s)}`);
  const n = Number(s);
  if (!Number.isFinite(n)) throw new KeelError(`tar: ${where}: invalid PAX ${key}`);
  return n;
}

function applyPax(p: PaxValues, key: string, value: Buffer, where: string): void {
  switch (key) {
    case 'path': p.path = value.toString('utf8'); return;
    case 'linkpath': p.linkpath = value.toString('utf8'); return;
    case 'size': {
      const n = paxNumber(value, key, where);
      if (!Number.isSafeInteger(n) || n < 0) throw new KeelError(`tar: ${where}: invalid PAX size`);
      p.size = n;
      return;
    }
    case 'uid': case 'gid': {
      const n = paxNumber(value, key, where);
      if (!Number.isSafeInteger(n) || n < 0) throw new KeelError(`tar: ${where}: invalid PAX ${key}`);
      p[key] = n;
      return;
    }
    case 'mtime': p.mtime = paxNumber(value, key, where); return;
    case 'uname': p.uname = value.toString('utf8'); return;
    case 'gname': p.gname = value.toString('utf8'); return;
  }
  if (key === 'SCHILY.acl.access' || key === 'SCHILY.acl.default') {
    p.acls = { ...p.acls, [key === 'SCHILY.acl.access' ? 'access' : 'default']: value.toString('utf8') };
  } else if (key.startsWith('SCHILY.xattr.')) {
    (p.xattrs ??= {})[key.slice('SCHILY.xattr.'.length)] = Buffer.from(value);
  } else if (key.startsWith('LIBARCHIVE.xattr.')) {
    const name = decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length));
    (p.xattrs ??= {})[name] = Buffer.from(value.toString('latin1'), 'base64');
  } else if (key.startsWith('GNU.sparse.')) {
    const k = key.slice('GNU.sparse.'.length);
    const num = () => {
      const n = paxNumber(value, key, where);
      if (!Number.isSafeInteger(n) || n < 0) throw new KeelError(`tar: ${where}: invalid PAX ${key}`);
      return n;
    };
    if (k === 'major') p.sparseMajor = num();
    else if (k === 'size' || k === 'realsize') p.sparseRealSize = num();
    else if (k === 'name') p.sparseName = value.toString('utf8');
    else if (k === 'offset' || k === 'numbytes') {
      // 0.0: offset/numbytes records alternate, in order.
      const map = (p.sparseMap ??= []);
      if ((k === 'offset') !== (map.length % 2 === 0)) throw new KeelError(`tar: ${where}: GNU.sparse.${k} out of order`);
      if (map.length >= 2 * MAX_SPARSE) throw new KeelError(`tar: ${where}: more than ${MAX_SPARSE} sparse segments`);
      map.push(num());
    } else if (k === 'map') {
      const parts = value.toString('latin1').split(',');
      if (parts.length > 2 * MAX_SPARSE) throw new KeelError(`tar: ${where}: more than ${MAX_SPARSE} sparse segments`);
      p.sparseMap = parts.map((x) => {
        if (!/^\d+$/.test(x)) throw new KeelError(`tar: ${where}: invalid GNU.sparse.map`);
        return Number(x);
      });
    }
  }
}

const TYPES_BY_FLAG: Record<number, EntryType> = {
  0x00: 'file', 0x30: 'file', 0x37: 'file', 0x53: 'file', 0x31: 'hardlink', 0x32: 'symlink', 0x33: 'chardev',
  0x34: 'blockdev', 0x35: 'dir', 0x36: 'fifo',
};

/** Limits on metadata a reader accepts, so a hostile archive cannot make it allocate without bound. */
const MAX_META = 16 << 20;
const MAX_SPARSE = 1 << 20;

/** Checks a sparse map (flat offset/length list) against the file's size and the data stored. */
function sparseSegments(flat: number[], realSize: number, stored: number, where: string): [number, number][] {
  if (flat.length % 2 !== 0) throw new KeelError(`tar: ${where}: sparse map has an odd number of values`);
  const segs: [number, number][] = [];
  let end = 0;
  let total = 0;
  for (let i = 0; i < flat.length; i += 2) {
    const off = flat[i]!;
    const len = flat[i + 1]!;
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < end || off + len > realSize) {
      throw new KeelError(`tar: ${where}: invalid sparse map (segments must be in order, inside the file's ${realSize} bytes)`);
    }
    end = off + len;
    total += len;
    if (len > 0) segs.push([off, len]);
  }
  if (total !== stored) throw new KeelError(`tar: ${where}: sparse map describes ${total} bytes but ${stored} are stored`);
  return segs;
}

/** Reads a PAX 1.0 sparse map from the start of an entry's data: the values and the bytes it took. */
async function readSparseMap(src: ByteSource, stored: number, where: string): Promise<{ map: number[]; bytes: number }> {
  const values: number[] = [];
  let want = -1;
  let digits = '';
  let bytes = 0;
  while (want < 0 || values.length < want) {
    if (bytes + BLOCK > stored) throw new KeelError(`tar: ${where}: sparse map runs past the data`);
    const b = await src.read(BLOCK);
    if (b.length < BLOCK) throw new KeelError(`tar: truncated archive at ${where}`);
    bytes += BLOCK;
    for (let i = 0; i < BLOCK && (want < 0 || values.length < want); i++) {
      const c = b[i]!;
      if (c === 0x0a) {
        if (digits === '') throw new KeelError(`tar: ${where}: malformed sparse map`);
        const n = Number(digits);
        digits = '';
        if (want < 0) {
          if (n > MAX_SPARSE) throw new KeelError(`tar: ${where}: more than ${MAX_SPARSE} sparse segments`);
          want = 2 * n;
        } else {
          values.push(n);
        }
      } else if (c >= 0x30 && c <= 0x39 && digits.length < 20) {
        digits += String.fromCharCode(c);
      } else {
        throw new KeelError(`tar: ${where}: malformed sparse map`);
      }
    }
  }
  return { map: values, bytes };
}

/**
 * Reads a tar stream entry by entry. Each entry's body must be read (or left alone: it is skipped)
 * before asking for the next entry. Refuses what it cannot represent faithfully (unknown entry
 * types) rather than guess. With `drain`, reads the input to its end after the
 * end-of-archive blocks so that whoever hashes the input sees all of it.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>, opts: { drain?: boolean } = {}): AsyncGenerator<TarEntry> {
  const src = new ByteSource(source[Symbol.asyncIterator]());
  let globalPax: PaxValues = {};
  let pendingPax: PaxValues | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  let index = 0;
  try {
    yield* entries();
  } finally {
    await src.close();
  }
  async function* entries(): AsyncGenerator<TarEntry> {
  for (;;) {
    const where = `entry ${index + 1} (offset ${src.position})`;
    const block = await src.read(BLOCK);
    if (block.length === 0) break; // end of input without end blocks: accepted
    if (block.length < BLOCK) throw new KeelError(`tar: truncated archive at ${where}`);
    if (isZero(block)) {
      if (opts.drain) await src.drain();
      break;
    }
    if (!checksumOk(block, where)) throw new KeelError(`tar: bad header checksum at ${where}`);
    const flag = block[156]!;
    const rawSize = parseNumeric(block, 124, 12, 'size', where);
    // Metadata entries: PAX local/global, GNU long name/link.
    if (flag === 0x78 || flag === 0x67 || flag === 0x4c || flag === 0x4b) {
      if (rawSize > MAX_META) throw new KeelError(`tar: ${where}: metadata entry of ${rawSize} bytes is too large`);
      const data = await src.read(rawSize);
      if (data.length < rawSize) throw new KeelError(`tar: truncated archive at ${where}`);
      await src.skip((BLOCK - (rawSize % BLOCK)) % BLOCK);
      if (flag === 0x78) pendingPax = parsePax(data, where, pendingPax ?? {});
      else if (flag === 0x67) globalPax = parsePax(data, where, { ...globalPax });
      else if (flag === 0x4c) longName = cString(data, 0, data.length);
      else longLink = cString(data, 0, data.length);
      continue;
    }
    index++;

    const ustar = block.toString('latin1', 257, 263) === 'ustar\0';
    let name = cString(block, 0, 100);
    if (ustar) {
      const prefix = cString(block, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    const pax: PaxValues = { ...globalPax, ...(pendingPax ?? {}) };
    if (globalPax.xattrs || pendingPax?.xattrs) pax.xattrs = { ...(globalPax.xattrs ?? {}), ...(pendingPax?.xattrs ?? {}) };
    const rawPath = pax.path ?? longName ?? name;
    const rawLinkname = pax.linkpath ?? longLink ?? cString(block, 157, 100);
    // Old (V7) archives mark directories with a NUL type flag and a trailing '/'.
    const type: EntryType | undefined = flag === 0 && rawPath.endsWith('/') ? 'dir' : TYPES_BY_FLAG[flag];
    pendingPax = undefined;
    longName = undefined;
    longLink = undefined;
    if (type === undefined) {
      throw new KeelError(`tar: ${rawPath}: unsupported entry type ${JSON.stringify(String.fromCharCode(flag))}`);
    }
    const dataSize = pax.size ?? rawSize;
    // Bytes of data stored after the header (only regular files have any: other types' size
    // fields are ignored, as Go's reader does), then what of it is the file's content.
    const stored = type === 'file' ? dataSize : 0;
    let left = stored;
    let size = stored;
    let sparse: [number, number][] | undefined;
    let path = rawPath;
    if (flag === 0x53) {
      // GNU old sparse: four map entries in the header, more in extension blocks.
      const flat: number[] = [];
      const take = (b: Buffer, off: number, n: number) => {
        for (let i = 0; i < n; i++) {
          const o = off + i * 24;
          if (b[o] === 0) return;
          if (flat.length >= 2 * MAX_SPARSE) throw new KeelError(`tar: ${where}: more than ${MAX_SPARSE} sparse segments`);
          flat.push(parseNumeric(b, o, 12, 'sparse offset', where), parseNumeric(b, o + 12, 12, 'sparse length', where));
        }
      };
      take(block, 386, 4);
      let more = block[482] !== 0;
      while (more) {
        const ext = await src.read(BLOCK);
        if (ext.length < BLOCK) throw new KeelError(`tar: truncated archive at ${where}`);
        take(ext, 0, 21);
        more = ext[504] !== 0;
      }
      size = parseNumeric(block, 483, 12, 'sparse real size', where);
      sparse = sparseSegments(flat, size, stored, where);
    } else if (type === 'file' && (pax.sparseMajor !== undefined || pax.sparseMap !== undefined)) {
      if (pax.sparseName !== undefined) path = pax.sparseName;
      if (pax.sparseRealSize === undefined) throw new KeelError(`tar: ${where}: sparse file without its real size`);
      size = pax.sparseRealSize;
      let flat = pax.sparseMap;
      if (pax.sparseMajor === 1) {
        // PAX 1.0: the map is at the start of the data, decimal numbers one a line, block-padded.
        const read = await readSparseMap(src, stored, where);
        flat = read.map;
        left -= read.bytes;
      } else if (pax.sparseMajor !== undefined && pax.sparseMajor !== 0) {
        throw new KeelError(`tar: ${where}: unknown GNU sparse format ${pax.sparseMajor}`);
      }
      sparse = sparseSegments(flat ?? [], size, left, where);
    }
    const header: TarHeader = {
      path: path.length > 1 ? path.replace(/\/+$/, '') : path,
      type,
      mode: parseNumeric(block, 100, 8, 'mode', where) & 0o7777,
      uid: pax.uid ?? parseNumeric(block, 108, 8, 'uid', where),
      gid: pax.gid ?? parseNumeric(block, 116, 8, 'gid', where),
      size,
      mtime: pax.mtime ?? parseNumeric(block, 136, 12, 'mtime', where),
    };
    const uname = pax.uname ?? cString(block, 265, 32);
    const gname = pax.gname ?? cString(block, 297, 32);
    if (uname) header.uname = uname;
    if (gname) header.gname = gname;
    if (type === 'hardlink' || type === 'symlink') header.linkname = rawLinkname;
    if (type === 'chardev' || type === 'blockdev') {
      header.devmajor = parseNumeric(block, 329, 8, 'devmajor', where);
      header.devminor = parseNumeric(block, 337, 8, 'devminor', where);
    }
    if (pax.xattrs && Object.keys(pax.xattrs).length) header.xattrs = pax.xattrs;
    if (pax.acls) header.acls = pax.acls;

    let taken = false;
    async function* body(): AsyncGenerator<Buffer> {
      if (taken) throw new Error(`tar: body of ${rawPath} read twice`);
      taken = true;
      while (left > 0) {
        const chunk = await src.readSome(left);
        if (chunk.length === 0) throw new KeelError(`tar: truncated archive in ${rawPath}`);
        left -= chunk.length;
        yield chunk;
      }
    }
    yield sparse ? { header, rawPath: path, rawLinkname, body, sparse } : { header, rawPath: path, rawLinkname, body };
    if (left > 0) {
      const skipped = await src.skip(left);
      if (skipped < left) throw new KeelError(`tar: truncated archive in ${rawPath}`);
      left = 0;
    }
    const padding = (BLOCK - (stored % BLOCK)) % BLOCK;
    if (padding && (await src.skip(padding)) < padding) throw new KeelError(`tar: truncated archive after ${rawPath}`);
  }
  if (pendingPax || longName !== undefined || longLink !== undefined) {
    throw new KeelError('tar: archive ends after an extended header without its entry');
  }
  }
}
