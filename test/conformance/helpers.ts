// Shared by the conformance tests: temporary directories, tool lookup, why the runtime suite
// cannot run here, and reading reports.
import { after } from 'node:test';
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CheckResult, Report } from '../../conformance/report.js';
import { buildProbe } from '../../conformance/runtime/index.js';
import { KeelError } from '../../src/util/errors.js';
import { atExit, removeTree, tempDir as removedAtExit } from '../fixtures/cleanup.js';

export const root = new URL('../..', import.meta.url).pathname;

/** A temporary directory removed when the test file ends. */
export function tempDir(name: string): string {
  const dir = removedAtExit(`kc-test-${name}-`);
  after(() => removeTree(dir));
  return dir;
}

/** A temporary directory whose path is all lower case (buildah derives image names from `oci:` paths). */
export function lowerCaseTempDir(name: string): string {
  const dir = join(tmpdir(), `kc-test-${name}-${process.pid}-${Date.now().toString(36)}`);
  mkdirSync(dir, { recursive: true });
  atExit(() => removeTree(dir));
  after(() => removeTree(dir));
  return dir;
}

export function which(cmd: string): string | null {
  for (const d of (process.env.PATH ?? '').split(':')) {
    if (!d) continue;
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return join(d, cmd);
    } catch {
      /* next */
    }
  }
  return null;
}

/**
 * Why the runtime suite cannot run on this machine, or null when it can. The probe is built (or
 * found in its cache) to know: a gcc without a static libc cannot build it.
 */
export async function runtimeSuiteSkipReason(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'the runtime suite needs root (namespaces, mounts, cgroups)';
  try {
    await buildProbe();
  } catch (err) {
    if (err instanceof KeelError) return err.message;
    throw err;
  }
  return null;
}

export function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

export function byId(report: Report): Map<string, CheckResult> {
  return new Map(report.results.map((r) => [r.id, r]));
}

export function failedRequired(report: Report): string[] {
  return report.results.filter((r) => r.required && r.status === 'fail').map((r) => r.id).sort();
}

/** One line per failed check: id and message, for assertion messages. */
export function describeFailures(report: Report, ids?: string[]): string {
  return report.results
    .filter((r) => r.status === 'fail' && (!ids || ids.includes(r.id)))
    .map((r) => `${r.id}: ${r.message ?? ''}`.replace(/\n/g, '; '))
    .join('\n');
}

/**
 * Asserts the exact set of required checks a peer runtime fails: each one is a documented
 * deviation of that runtime from runtime-spec v1.3.0. A deviation that starts passing, or a new
 * failure, both make the test fail, so the list stays true. `racy` deviations are races inside
 * the runtime: observed sometimes, so they may pass or fail.
 */
export function requiredFailuresProblem(report: Report, known: Record<string, string>, racy: Record<string, string> = {}): string | null {
  const failed = failedRequired(report);
  const unexpected = failed.filter((id) => !(id in known) && !(id in racy));
  const fixed = Object.keys(known).filter((id) => !failed.includes(id));
  if (!unexpected.length && !fixed.length) return null;
  const lines: string[] = [];
  if (unexpected.length) lines.push(`unexpected required failures:\n${describeFailures(report, unexpected)}`);
  if (fixed.length) lines.push(`listed as known deviations but passing now (remove them from the list): ${fixed.join(', ')}`);
  return lines.join('\n');
}
