// The runtime half of keel-conformance: checks any runc-compatible OCI runtime CLI against the
// runtime-spec by running the probe in bundles made in a temporary directory, with the runtime's
// state under its own `--root`. Everything made is removed at the end, even after failures.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, copyFileSync, chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KeelError } from '../../src/util/errors.js';
import { runCheck } from '../check.js';
import { makeReport, pool, type CheckResult, type Report } from '../report.js';
import { SuiteContext } from './context.js';
import { RuntimeDriver, hideUnifiedWrapper } from './driver.js';
import { hostInfo, parseMountinfo } from './host.js';
import { buildProbe } from './probe.js';
import { RUNTIME_SPEC_VERSION, type RuntimeCheck } from './spec.js';
import { lifecycleChecks } from './checks/lifecycle.js';
import { operationChecks } from './checks/operations.js';
import { hookChecks } from './checks/hooks.js';
import { processChecks } from './checks/process.js';
import { linuxChecks } from './checks/linux.js';
import { mountChecks } from './checks/mounts.js';

export type { ProbeReport, ProbeEvent } from './probe.js';
export { buildProbe } from './probe.js';
export { hideUnifiedWrapper } from './driver.js';

export interface RuntimeSuiteOptions {
  /** The runtime binary to test (absolute, relative, or a name on PATH). */
  runtime: string;
  /** Run the runtime in a private mount namespace with /sys/fs/cgroup/unified unmounted (crun on hybrid hosts). */
  hideUnifiedCgroup?: boolean;
  /** A prebuilt probe binary instead of compiling conformance/probe/probe.c. */
  probe?: string;
  /** Only checks whose id matches. */
  filter?: RegExp;
  /** Checks run at once (default 4). */
  jobs?: number;
  /** Time limit per check in ms (default 60 s). */
  checkTimeoutMs?: number;
  /** Keep the temporary directory (bundles, logs) for inspection. */
  keepTemp?: boolean;
  /** Called with each result as it completes. */
  onResult?: (r: CheckResult) => void;
}

/** Every runtime check, in report order. */
export function runtimeChecks(): RuntimeCheck[] {
  return [...lifecycleChecks, ...operationChecks, ...hookChecks, ...processChecks, ...linuxChecks, ...mountChecks];
}

/**
 * Removes the temporary directory, but never through a mount point: a runtime that left a mount
 * under it (on the host) gets it lazily unmounted first; if one stays, the directory is kept.
 */
export function safeRemove(dir: string): string | null {
  const under = () =>
    parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))
      .map((m) => m.mountpoint)
      .filter((p) => p === dir || p.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
  for (const p of under()) spawnSync('umount', ['-l', p], { stdio: 'ignore' });
  const left = under();
  if (left.length) return `kept ${dir}: still mounted there: ${left.join(', ')}`;
  rmSync(dir, { recursive: true, force: true });
  return null;
}

export function resolveRuntime(name: string): string {
  const candidates = name.includes('/') ? [resolve(name)] : (process.env.PATH ?? '').split(':').filter(Boolean).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  throw new KeelError(`runtime not found or not executable: ${name}`);
}

export async function runRuntimeSuite(opts: RuntimeSuiteOptions): Promise<Report> {
  const started = Date.now();
  const runtime = resolveRuntime(opts.runtime);
  if (process.getuid?.() !== 0) throw new KeelError('the runtime conformance suite needs root (it creates namespaces, mounts and cgroups)');
  const probeBuilt = opts.probe ? resolve(opts.probe) : await buildProbe();
  const tmp = mkdtempSync(join(tmpdir(), 'keel-conformance-'));
  // Searchable by every uid: a container in a user namespace reaches its rootfs and /out through it.
  chmodSync(tmp, 0o755);
  const root = join(tmp, 'state');
  const logs = join(tmp, 'logs');
  mkdirSync(root);
  mkdirSync(logs);
  mkdirSync(join(tmp, 'bundles'));
  // One copy of the probe on the temporary filesystem, hard-linked into every bundle.
  const probe = join(tmp, 'probe');
  copyFileSync(probeBuilt, probe);
  chmodSync(probe, 0o755);
  let driverPath = runtime;
  if (opts.hideUnifiedCgroup) {
    driverPath = join(tmp, 'runtime-wrapper');
    writeFileSync(driverPath, hideUnifiedWrapper(runtime), { mode: 0o755 });
  }
  const ctx = new SuiteContext({ driver: new RuntimeDriver(driverPath, root, logs), host: hostInfo(), probe, tmp, runtimeName: runtime });
  const checks = runtimeChecks().filter((c) => !opts.filter || opts.filter.test(c.id));
  const onSignal = () => {
    void ctx.cleanup().finally(() => {
      if (!opts.keepTemp) safeRemove(tmp);
      process.exit(130);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let results: CheckResult[];
  try {
    results = await pool(checks, opts.jobs ?? 4, async (c) => {
      const r = await runCheck(c, ctx, opts.checkTimeoutMs ?? 60_000);
      opts.onResult?.(r);
      return r;
    });
  } finally {
    await ctx.cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (!opts.keepTemp) {
      const kept = safeRemove(tmp);
      if (kept) process.stderr.write(`keel-conformance: ${kept}\n`);
    }
  }
  const target = opts.hideUnifiedCgroup ? `${runtime} (cgroup2 /sys/fs/cgroup/unified hidden)` : runtime;
  return makeReport('runtime', target, RUNTIME_SPEC_VERSION, started, results);
}
