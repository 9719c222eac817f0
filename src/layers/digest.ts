// Content digests (OCI `algorithm:hex`), checked strictly because they become file names.
import { createHash, type Hash } from 'node:crypto';
import { KeelError } from '../util/errors.js';

export type Digest = `${'sha256' | 'sha512'}:${string}`;

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

/** Checks a digest string (algorithm and hex length) and returns it typed; `what` names it in the error. */
export function parseDigest(value: unknown, what = 'digest'): Digest {
  if (!isDigest(value)) {
    throw new KeelError(`${what}: ${JSON.stringify(value)} is not a supported digest (sha256:<64 hex> or sha512:<128 hex>)`);
  }
  return value;
}

export function digestAlgorithm(d: Digest): 'sha256' | 'sha512' {
  return d.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

/** sha256 of a byte string, as a digest. */
export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A running hash that also counts bytes. */
export class Hasher {
  private readonly hash: Hash;
  size = 0;
  constructor(readonly algorithm: 'sha256' | 'sha512' = 'sha256') {
    this.hash = createHash(algorithm);
  }
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
    this.size += chunk.length;
  }
  digest(): Digest {
    return `${this.algorithm}:${this.hash.digest('hex')}`;
  }
}
