// Resolving container paths inside a root directory without ever leaving it.
import { lstatSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';
import { KeelError } from '../util/errors.js';

const MAX_LINKS = 255;

/**
 * Joins `unsafePath` (a path as the container sees it) onto `root` the way the kernel would resolve
 * it if `root` were `/`: `..` cannot climb above root and symlinks (absolute or relative) are
 * resolved inside root. Components that do not exist are kept as they are. The result is an
 * absolute host path under root.
 */
export function secureJoin(root: string, unsafePath: string): string {
  const rootClean = posix.resolve(root);
  let pending = unsafePath.split('/').filter((p) => p !== '' && p !== '.');
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') { resolved.pop(); continue; }
    const candidate = posix.join(rootClean, ...resolved, part);
    let isLink = false;
    try { isLink = lstatSync(candidate).isSymbolicLink(); } catch { /* missing: keep the name */ }
    if (!isLink) { resolved.push(part); continue; }
    if (++links > MAX_LINKS) throw new KeelError(`too many levels of symbolic links resolving ${unsafePath} in ${root}`);
    const target = readlinkSync(candidate);
    if (target.startsWith('/')) resolved.length = 0;
    pending = [...target.split('/').filter((p) => p !== '' && p !== '.'), ...pending];
  }
  return posix.join(rootClean, ...resolved);
}

/** The directories from root (exclusive) to `path` (inclusive), to create one by one. */
export function pathPrefixes(root: string, path: string): string[] {
  const rel = posix.relative(root, path);
  if (rel === '' ) return [];
  const parts = rel.split('/');
  return parts.map((_, i) => posix.join(root, ...parts.slice(0, i + 1)));
}
