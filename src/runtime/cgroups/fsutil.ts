// Reading and writing cgroup files, with errors that name the resource and the file.
import { closeSync, existsSync, openSync, readFileSync, writeSync, constants } from 'node:fs';
import { join } from 'node:path';
import { KeelError } from '../../util/errors.js';

/** "EINVAL: invalid argument" from a Node fs error. */
export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.message === 'string') {
    const m = /^([A-Z0-9]+): ([^,]+)/.exec(e.message);
    if (m) return `${m[1]}: ${m[2]}`;
    return e.message;
  }
  return String(err);
}

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException)?.code;
}

/** Writes `value` to a cgroup file (one write(2), as the kernel expects). Throws the raw error. */
export function writeRaw(path: string, value: string): void {
  const fd = openSync(path, constants.O_WRONLY); // Node opens files close-on-exec
  try {
    writeSync(fd, value);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes a cgroup file for a resource; failures become
 * `cannot set <what> to <value>: writing <path>: EINVAL: invalid argument`.
 */
export function writeCgroup(dir: string, file: string, value: string | number, what: string): void {
  const path = join(dir, file);
  try {
    writeRaw(path, String(value));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' && !existsSync(path)) {
      throw new KeelError(`cannot set ${what}: this host has no ${path} (the kernel does not support it)`, { cause: err });
    }
    throw new KeelError(`cannot set ${what} to ${JSON.stringify(String(value))}: writing ${path}: ${describeFsError(err)}`, { cause: err });
  }
}

/** The trimmed content of a cgroup file, or undefined when it does not exist. */
export function readOptional(dir: string, file: string): string | undefined {
  try {
    return readFileSync(join(dir, file), 'utf8').trim();
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENODEV' || code === 'EOPNOTSUPP') return undefined;
    throw err;
  }
}

/** A cgroup file as an unsigned number ("max" → Infinity), or undefined. */
export function readNumber(dir: string, file: string): number | undefined {
  const text = readOptional(dir, file);
  if (text === undefined || text === '') return undefined;
  if (text === 'max') return Infinity;
  const n = Number(text.split(/\s+/)[0]);
  return Number.isFinite(n) ? n : undefined;
}

/** "key value" lines (memory.stat, cpu.stat, memory.events ...) as a map. */
export function readKeyValues(dir: string, file: string): Record<string, number> {
  const out: Record<string, number> = {};
  const text = readOptional(dir, file);
  if (!text) return out;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) {
      const n = Number(v);
      if (Number.isFinite(n)) out[k] = n;
    }
  }
  return out;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
