// Helpers of the runtime-ops tests: the runtime tests' helpers, plus removal of the bundles made here.
import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { makeBundle as make, tempDir as temp } from '../runtime/helpers.js';

export { canRunContainers, skipReason, keelWithRoot, sleepMs, waitFor, which, sh, keelBin, repo } from '../runtime/helpers.js';

const made: string[] = [];

/** A busybox bundle running `args` (set in config.json, so any shell text works), removed by removeTemps(). */
export function makeBundle(args: string[], edit?: (config: any) => void): string {
  const dir = make(['true'], (c) => { c.process.args = args; edit?.(c); });
  made.push(dirname(dir));
  return dir;
}

export function tempDir(prefix = 'keel-ops-'): string {
  const d = temp(prefix);
  made.push(d);
  return d;
}

export function removeTemps(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}
