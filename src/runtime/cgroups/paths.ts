// Which directories a container's cgroup is, following runc's rules for linux.cgroupsPath:
//  - absolute ("/a/b"): that path from the root of every hierarchy;
//  - relative ("a/b"): under the runtime process's own cgroup of each v1 hierarchy (on pure cgroup v2,
//    under the parent of the runtime's own cgroup, since that one usually holds processes);
//  - empty: the container ID, as a relative path;
//  - with --systemd-cgroup, "slice:prefix:name" names a systemd scope <prefix>-<name>.scope in <slice>.
// Paths are cleaned so ".." cannot climb above the hierarchy root (or, relative, above the base).
import { existsSync } from 'node:fs';
import { posix } from 'node:path';
import { KeelError } from '../../util/errors.js';
import type { CgroupLayout } from './layout.js';

export interface CgroupPathOptions {
  cgroupsPath?: string;
  containerId: string;
  systemd?: boolean;
}

export interface CgroupPaths {
  /** v1 controller (or "name=systemd") → absolute directory. */
  v1: Record<string, string>;
  /** Directory in the unified hierarchy (pure v2 and hybrid). */
  unified?: string;
  /** The cgroup path as cgroupsPath resolved it, e.g. "/keel/abc" or "abc" (relative). */
  inner: string;
}

/** runc's CleanPath: lexically clean, never escaping upwards; keeps a path relative if it was. */
export function cleanCgroupPath(p: string): string {
  if (p === '') return '';
  let abs = posix.normalize(posix.join('/', p));
  if (abs.length > 1 && abs.endsWith('/')) abs = abs.slice(0, -1);
  if (p.startsWith('/')) return abs;
  return abs === '/' ? '' : abs.slice(1);
}

/** "a-b-c.slice" → "/a.slice/a-b.slice/a-b-c.slice" (systemd's slice nesting). */
export function expandSlice(slice: string, field: string): string {
  if (!slice.endsWith('.slice') || slice.includes('/')) {
    throw new KeelError(`invalid systemd slice ${JSON.stringify(slice)} in ${field}: expected a name like "machine.slice"`);
  }
  if (slice === '-.slice') return '/';
  const name = slice.slice(0, -'.slice'.length);
  if (name === '' || name.startsWith('-') || name.endsWith('-') || name.includes('--')) {
    throw new KeelError(`invalid systemd slice ${JSON.stringify(slice)} in ${field}`);
  }
  let path = '';
  let prefix = '';
  for (const part of name.split('-')) {
    prefix = prefix ? `${prefix}-${part}` : part;
    path += `/${prefix}.slice`;
  }
  return path;
}

/** Throws the KeelError `--systemd-cgroup` gets where systemd is not the init system. */
export function requireSystemd(): void {
  if (!existsSync('/run/systemd/system')) {
    throw new KeelError(
      'the systemd cgroup driver (--systemd-cgroup) needs systemd, which is not running on this host (no /run/systemd/system); run without --systemd-cgroup',
    );
  }
}

/**
 * The cgroup path (inside each hierarchy) that --systemd-cgroup's "slice:prefix:name" names:
 * /<expanded slice>/<prefix>-<name>.scope. Empty → system.slice, prefix "keel", the container ID.
 */
export function systemdCgroupPath(cgroupsPath: string | undefined, containerId: string): string {
  const field = 'linux.cgroupsPath';
  let slice = 'system.slice';
  let prefix = 'keel';
  let name = containerId;
  if (cgroupsPath) {
    const parts = cgroupsPath.split(':');
    if (parts.length !== 3) {
      throw new KeelError(
        `${field} ${JSON.stringify(cgroupsPath)} must have the form "slice:prefix:name" with --systemd-cgroup`,
      );
    }
    [slice, prefix, name] = parts as [string, string, string];
    if (slice === '') slice = 'system.slice';
  }
  if (name === '' || name.includes('/')) throw new KeelError(`invalid systemd unit name ${JSON.stringify(name)} in ${field}`);
  const unit = name.endsWith('.slice') ? name : prefix ? `${prefix}-${name}.scope` : `${name}.scope`;
  return posix.join(expandSlice(slice, field), unit);
}

function underMount(mount: { mountpoint: string; root: string }, cgroupPath: string): string {
  // A mount of a sub-tree (cgroup namespaces, bind mounts) shows `root` at its mountpoint.
  let rel = cgroupPath;
  if (mount.root !== '/' && (cgroupPath === mount.root || cgroupPath.startsWith(`${mount.root}/`))) {
    rel = cgroupPath.slice(mount.root.length) || '/';
  }
  return posix.join(mount.mountpoint, rel);
}

/**
 * Resolves a container's cgroup directories. `own` is the runtime process's /proc/self/cgroup
 * (controller → path, "" for v2), used for relative paths.
 */
export function resolveCgroupPaths(layout: CgroupLayout, opts: CgroupPathOptions, own: Record<string, string>): CgroupPaths {
  let inner: string;
  if (opts.systemd) {
    requireSystemd();
    inner = systemdCgroupPath(opts.cgroupsPath, opts.containerId);
  } else {
    inner = cleanCgroupPath(opts.cgroupsPath ?? '');
    if (inner === '' || inner === '/') inner = cleanCgroupPath(opts.containerId);
    if (inner === '' || inner === '/') throw new KeelError(`cannot place a cgroup at ${JSON.stringify(opts.cgroupsPath)}`);
  }
  const absolute = inner.startsWith('/');
  const v1: Record<string, string> = {};
  for (const [controller, h] of Object.entries(layout.v1)) {
    const base = absolute ? '/' : (own[controller] ?? '/');
    v1[controller] = underMount(h, posix.join(base, inner));
  }
  let unified: string | undefined;
  if (layout.unified) {
    let base = '/';
    if (!absolute) {
      const mine = own[''] ?? '/';
      // Pure v2: the runtime's own cgroup holds processes, so controllers cannot be enabled below
      // it; runc uses its parent. Hybrid mode follows the v1 rule.
      base = layout.mode === 'v2' ? posix.dirname(mine) : mine;
    }
    unified = underMount(layout.unified, posix.join(base, inner));
  }
  return { v1, ...(unified ? { unified } : {}), inner };
}
