// HTTP(S) downloads for ADD <url>: redirects followed, the body streamed to a file and hashed.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { KeelError } from '../util/errors.js';

export interface Download {
  file: string;
  digest: string;
  size: number;
  lastModified?: Date;
}

export function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? import('node:https') : import('node:http');
    lib.then((m) => {
      const req = m.request(u, { method, headers: { 'user-agent': 'keel-build', ...headers } }, resolve);
      req.on('error', (err) => reject(new KeelError(`${u.host}: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
      req.setTimeout(60_000, () => req.destroy(new Error('timed out')));
      req.end();
    }, reject);
  });
}

/** Downloads `url` into `file`; throws on an HTTP error status. */
export async function download(url: string, file: string): Promise<Download> {
  let current = url;
  for (let hops = 0; hops < 10; hops++) {
    const res = await get(current);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      current = new URL(res.headers.location, current).toString();
      continue;
    }
    if (status !== 200) {
      res.resume();
      throw new KeelError(`HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`);
    }
    const hash = createHash('sha256');
    let size = 0;
    const out = fs.createWriteStream(file, { mode: 0o600 });
    await new Promise<void>((resolve, reject) => {
      res.on('data', (c: Buffer) => { hash.update(c); size += c.length; });
      res.on('error', reject);
      out.on('error', reject);
      out.on('finish', () => resolve());
      res.pipe(out);
    });
    const lm = res.headers['last-modified'];
    const date = lm ? new Date(lm) : undefined;
    return { file, digest: `sha256:${hash.digest('hex')}`, size, lastModified: date && !Number.isNaN(date.getTime()) ? date : undefined };
  }
  throw new KeelError('too many redirects');
}
