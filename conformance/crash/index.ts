// The crash sweep: does a runtime killed at any instant leave anything `delete --force` cannot
// remove? For any runc-compatible runtime. Each kill: a fresh container id and bundle; the setup
// the command needs (nothing for create, a created container for start, a running one for exec and
// delete); the command, SIGKILLed after a delay; then `RUNTIME delete --force ID`, and a search
// for what is left: processes, cgroup directories in every hierarchy, mounts of the bundle, state
// entries, stray files beside the pid file.
//
// Delays come from measurements on this machine, never from constants: each command (per bundle
// variant) is timed first, and the kills are spread over 0..1.25 times the longest run, stratified
// and shuffled; for the commands that make a container process, a share of the kills is aimed at
// the first milliseconds after that process appears (a child of the runtime), where a runtime has
// the most unrecorded state.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { KeelError } from '../../src/util/errors.js';
import { SuiteContext, type Bundle } from '../runtime/context.js';
import { RuntimeDriver } from '../runtime/driver.js';
import { hostInfo, parseMountinfo } from '../runtime/host.js';
import { buildProbe } from '../runtime/probe.js';
import { resolveRuntime, safeRemove } from '../runtime/index.js';
import { LEFTOVER_KINDS, OrphanReaper, becomeSubreaper, cgroupDir, cgroupHierarchies, descendants, findLeftovers, hasChild, procState, removeCgroup, removeLeftovers, sleepMs, type Leftover, type LeftoverKind, type Scope } from './leftovers.js';

export { LEFTOVER_KINDS, type Leftover, type LeftoverKind } from './leftovers.js';

export const CRASH_COMMANDS = ['create', 'start', 'exec', 'run', 'delete'] as const;
export type CrashCommand = (typeof CRASH_COMMANDS)[number];
/** plain: namespaces and cgroup limits; userns: plus a user namespace with id maps; hooks: plus every hook kind. */
export const CRASH_VARIANTS = ['plain', 'userns', 'hooks'] as const;
export type CrashVariant = (typeof CRASH_VARIANTS)[number];

export interface CrashOptions {
  runtime: string;
  /** Run the runtime in a private mount namespace without /sys/fs/cgroup/unified (crun on hybrid hosts). */
  hideUnifiedCgroup?: boolean;
  probe?: string;
  /** How many kills in all, spread evenly over commands × variants. */
  kills: number;
  commands?: CrashCommand[];
  variants?: CrashVariant[];
  /** Share of the kills of create, exec and run aimed just after the container process appears (default 0.3). */
  aimedShare?: number;
  /** Timed runs per command and variant before the sweep (default 2). */
  calibrationRuns?: number;
  seed?: number;
  keepTemp?: boolean;
  /** Called after each kill. */
  onKill?: (k: KillResult, done: number, total: number) => void;
}

export interface KillResult {
  n: number;
  id: string;
  command: CrashCommand;
  variant: CrashVariant;
  mode: 'sweep' | 'aimed';
  /** sweep: ms after the command started; aimed: ms after the container process appeared. */
  delayMs: number;
  /** The runtime died of the SIGKILL (it had not finished). */
  landed: boolean;
  /** The container's own process existed when the runtime was killed. */
  childSeen: boolean;
  deleteCode: number;
  deleteError?: string;
  leftovers: Leftover[];
}

export interface Figures {
  kills: number;
  landed: number;
  aimed: number;
  /** Kills after which something was left. */
  withLeftovers: number;
  /** Kills after which something of this kind was left. */
  byKind: Record<LeftoverKind, number>;
  /** How many things of each kind were left, in all. */
  items: Record<LeftoverKind, number>;
  /** `delete --force` exited non-zero (or timed out). */
  deleteFailures: number;
}

export interface Calibration {
  command: CrashCommand;
  variant: CrashVariant;
  /** Longest of the timed runs. */
  spanMs: number;
  /** When the container process appeared (create, exec, run): the latest of the timed runs. */
  childMs?: number;
}

export interface CrashReport {
  target: string;
  seed: number;
  startedAt: string;
  ms: number;
  calibration: Calibration[];
  perCommand: Partial<Record<CrashCommand, Figures>>;
  total: Figures;
  /** Kills that left something (all of them). */
  failures: KillResult[];
  /** Containers the runtime failed to set up (or, calibrating, to run) without being killed; each was tried again. */
  setupFailures: number;
  ok: boolean;
}

const LONG_ARGS = ['/probe', '--no-report', '--sleep', '100000'];
const SHORT_ARGS = ['/probe', '--no-report'];
/** Commands whose kill may land while the runtime's container process is being set up. */
const SPAWNS: ReadonlySet<CrashCommand> = new Set(['create', 'exec', 'run']);

/** A seeded PRNG (mulberry32), so a sweep can be repeated exactly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function emptyFigures(): Figures {
  const zero = () => Object.fromEntries(LEFTOVER_KINDS.map((k) => [k, 0])) as Record<LeftoverKind, number>;
  return { kills: 0, landed: 0, aimed: 0, withLeftovers: 0, byKind: zero(), items: zero(), deleteFailures: 0 };
}

function addTo(f: Figures, k: KillResult): void {
  f.kills++;
  if (k.landed) f.landed++;
  if (k.mode === 'aimed') f.aimed++;
  if (k.deleteCode !== 0) f.deleteFailures++;
  if (k.leftovers.length) f.withLeftovers++;
  for (const kind of new Set(k.leftovers.map((l) => l.kind))) f.byKind[kind]++;
  for (const l of k.leftovers) f.items[l.kind]++;
}

/**
 * A host-side hook: reads the state, starts a background child and kills it 20 ms later. A hook
 * whose runtime died while it ran keeps running (as a long hook would): it notices its parent
 * changed and sleeps on. Either its child (when the hook itself was killed) or the hook (when it
 * was orphaned) outlives a runtime that does not stop its hooks' processes.
 */
function hostHook(): { path: string; args: string[] } {
  const script = [
    'cat >/dev/null',
    'sleep 60 </dev/null >/dev/null 2>&1 & p=$!',
    'sleep 0.02',
    'kill -KILL $p',
    'read -r _ _ _ ppid _ </proc/$$/stat',
    '[ "$ppid" = "$PPID" ] || exec sleep 60 </dev/null >/dev/null 2>&1',
  ].join('; ');
  return { path: '/bin/sh', args: ['sh', '-c', script] };
}

function configure(b: Bundle, variant: CrashVariant, cgroupPath: string, args: string[]): void {
  const c = b.config;
  c.process.args = args;
  c.linux.cgroupsPath = cgroupPath;
  c.linux.resources = { memory: { limit: 256 * 1024 * 1024 }, pids: { limit: 256 }, cpu: { shares: 512 } };
  if (variant === 'userns') {
    c.linux.namespaces = [...(c.linux.namespaces ?? []), { type: 'user' }];
    c.linux.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
    c.linux.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
  }
  if (variant === 'hooks') {
    c.hooks = {
      prestart: [hostHook()],
      createRuntime: [hostHook()],
      // Run before pivot_root: the probe by its host path.
      createContainer: [{ path: join(b.rootfs, 'probe'), args: ['probe', '--stdin'] }],
      startContainer: [{ path: '/probe', args: ['probe', '--stdin'] }],
      poststart: [hostHook()],
      poststop: [hostHook()],
    };
  }
  b.write();
}

interface Launched {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface Plan {
  command: CrashCommand;
  variant: CrashVariant;
  mode: 'sweep' | 'aimed';
  delayMs: number;
}

interface Timed {
  ms: number;
  childMs?: number;
  landed: boolean;
  childSeen: boolean;
  code: number | null;
}

const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;

export async function runCrashSweep(opts: CrashOptions): Promise<CrashReport> {
  const started = Date.now();
  if (process.getuid?.() !== 0) throw new KeelError('the crash sweep needs root (it creates containers, cgroups and mounts)');
  if (!(Number.isInteger(opts.kills) && opts.kills > 0)) throw new KeelError(`invalid number of kills: ${opts.kills}`);
  const runtime = resolveRuntime(opts.runtime);
  const commands = opts.commands?.length ? opts.commands : [...CRASH_COMMANDS];
  const variants = opts.variants?.length ? opts.variants : [...CRASH_VARIANTS];
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = prng(seed);
  const probeBuilt = opts.probe ?? (await buildProbe());
  becomeSubreaper();
  // Whatever is below this process now is not the sweep's business (a test runner's helpers).
  const exclude = new Set(descendants(new Set()).alive.map((p) => p.pid));

  const tmp = mkdtempSync(join(tmpdir(), 'keel-crash-'));
  chmodSync(tmp, 0o755);
  const root = join(tmp, 'state');
  const logs = join(tmp, 'logs');
  for (const d of [root, logs, join(tmp, 'bundles'), join(tmp, 'pids')]) mkdirSync(d);
  const probe = join(tmp, 'probe');
  writeFileSync(probe, readFileSync(probeBuilt), { mode: 0o755 });

  // crun refuses hybrid hosts: it runs in a mount namespace of its own, held by a sleeping
  // process, where the cgroup2 mount is gone. nsenter (no fork) execs the runtime, so the
  // runtime's pid is the one the sweep started and kills.
  let holder: ChildProcess | undefined;
  let runtimePath = runtime;
  const mountNamespaces: number[] = [];
  if (opts.hideUnifiedCgroup) {
    holder = spawn('unshare', ['-m', '--propagation', 'private', '/bin/sh', '-c', 'umount /sys/fs/cgroup/unified 2>/dev/null; exec sleep 2147483647'], { stdio: 'ignore' });
    const hp = holder.pid!;
    const deadline = Date.now() + 10_000;
    while (!/^sleep/.test(readFileSync(`/proc/${hp}/cmdline`, 'utf8'))) {
      if (Date.now() > deadline || procState(hp) === undefined) throw new KeelError('could not make a mount namespace without /sys/fs/cgroup/unified (unshare -m)');
      sleepMs(5);
    }
    if (parseMountinfo(readFileSync(`/proc/${hp}/mountinfo`, 'utf8')).some((m) => m.mountpoint === '/sys/fs/cgroup/unified')) throw new KeelError('could not unmount the cgroup2 mount in a private mount namespace');
    exclude.add(hp);
    mountNamespaces.push(hp);
    runtimePath = join(tmp, 'runtime-wrapper');
    writeFileSync(runtimePath, `#!/bin/sh\nexec nsenter -F -t ${hp} -m -- '${runtime.replace(/'/g, `'\\''`)}' "$@"\n`, { mode: 0o755 });
  }

  // The bundles are made as the conformance suite makes them (its driver is not used here).
  const ctx = new SuiteContext({ driver: new RuntimeDriver(runtimePath, root, logs), host: hostInfo(), probe, tmp, runtimeName: runtime });
  const spawned = new Set<number>();
  const scope: Scope = { cgroupMounts: cgroupHierarchies(), exclude, mountNamespaces, spawned };
  const reaper = new OrphanReaper(spawned);
  reaper.start();
  const cgroupParent = `/keel-crash-${process.pid}`;
  let seq = 0;
  let logSeq = 0;

  function launch(args: string[]): Launched & { log: string } {
    const log = join(logs, String(++logSeq));
    const out = openSync(`${log}.out`, 'w');
    const err = openSync(`${log}.err`, 'w');
    const child = spawn(runtimePath, ['--root', root, ...args], { stdio: ['ignore', out, err], env });
    closeSync(out);
    closeSync(err);
    if (child.pid !== undefined) spawned.add(child.pid);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
      child.once('exit', (code, signal) => {
        spawned.delete(child.pid!);
        res({ code, signal });
      });
      child.once('error', () => res({ code: 127, signal: null }));
    });
    return { child, exited, log };
  }

  /** Runs a runtime command to its end (killed after `timeoutMs`): exit code and last line of stderr. */
  async function run(args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; error: string }> {
    const { child, exited, log } = launch(args);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const r = await exited;
    clearTimeout(timer);
    const error = readFileSync(`${log}.err`, 'utf8').trim().split('\n').at(-1)?.slice(0, 300) ?? '';
    return { code: r.code ?? -1, stdout: readFileSync(`${log}.out`, 'utf8'), error: r.signal ? `killed by ${r.signal} after ${timeoutMs} ms` : error };
  }

  /**
   * Runs the command; kills it `plan.delayMs` after its start (sweep) or after its first child
   * appeared (aimed), or (no plan) times it. The event loop is blocked meanwhile: the runtime
   * stays unreaped, so its pid cannot be reused before the kill.
   */
  async function timed(args: string[], plan?: Plan): Promise<Timed> {
    const t0 = performance.now();
    const { child, exited } = launch(args);
    const pid = child.pid;
    if (pid === undefined) {
      await exited;
      throw new KeelError(`cannot run ${runtime}`);
    }
    const gone = () => {
      const s = procState(pid);
      return s === undefined || s === 'Z' || s === 'X';
    };
    let childMs: number | undefined;
    const limit = t0 + 120_000;
    const until = (end: number) => {
      for (let now = performance.now(); now < end && !gone(); now = performance.now()) sleepMs(Math.min(end - now, 50));
    };
    const waitChild = () => {
      while (childMs === undefined && !gone() && performance.now() < limit) {
        if (hasChild(pid)) childMs = performance.now() - t0;
        else sleepMs(0.2);
      }
    };
    if (!plan) {
      while (!gone() && performance.now() < limit) {
        if (childMs === undefined && hasChild(pid)) childMs = performance.now() - t0;
        sleepMs(childMs === undefined ? 0.2 : 1);
      }
    } else if (plan.mode === 'sweep') {
      until(t0 + plan.delayMs);
    } else {
      waitChild();
      if (childMs !== undefined) until(t0 + childMs + plan.delayMs);
    }
    const childSeen = !gone() && hasChild(pid);
    if (plan || performance.now() >= limit) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* exited */
      }
    }
    const r = await exited;
    return { ms: performance.now() - t0, childMs, landed: !!plan && r.signal === 'SIGKILL', childSeen, code: r.code };
  }

  /** A fresh container: its bundle and pid-file directory, its command lines. */
  function container(command: CrashCommand, variant: CrashVariant) {
    const b = ctx.bundle(`crash-${++seq}`);
    const cgroupPath = `${cgroupParent}/${b.id}`;
    configure(b, variant, cgroupPath, command === 'run' ? SHORT_ARGS : LONG_ARGS);
    const pidDir = join(tmp, 'pids', b.id);
    mkdirSync(pidDir);
    const pidFiles = ['init.pid', 'exec.pid'];
    const create = ['create', '--bundle', b.dir, '--pid-file', join(pidDir, 'init.pid'), b.id];
    const args: Record<CrashCommand, string[]> = {
      create,
      start: ['start', b.id],
      exec: ['exec', '-d', '--pid-file', join(pidDir, 'exec.pid'), b.id, ...LONG_ARGS],
      run: ['run', '--bundle', b.dir, '--pid-file', join(pidDir, 'init.pid'), b.id],
      delete: ['delete', '--force', b.id],
    };
    // start needs a created container; exec and delete a running one.
    const setup: string[][] = command === 'start' ? [create] : command === 'exec' || command === 'delete' ? [['run', '--detach', '--bundle', b.dir, b.id]] : [];
    return { b, cgroupPath, pidDir, pidFiles, args: args[command], setup };
  }

  async function inspect(c: ReturnType<typeof container>, rootBaseline: Set<string>): Promise<{ leftovers: Leftover[]; deleteCode: number; deleteError?: string }> {
    const del = await run(['delete', '--force', c.b.id]);
    const list = await run(['list', '-q']);
    const found = findLeftovers(
      { id: c.b.id, cgroupPath: c.cgroupPath, bundle: c.b.dir, root, rootBaseline, pidDir: c.pidDir, pidFiles: c.pidFiles, listed: list.stdout.split('\n').map((l) => l.trim()) },
      scope,
      2000,
    );
    removeLeftovers(found.leftovers, scope);
    return { leftovers: found.leftovers, deleteCode: del.code, ...(del.code !== 0 ? { deleteError: del.error } : {}) };
  }

  let rootBaseline = new Set<string>();
  let setupFailures = 0;
  /**
   * A container for `command`, set up as it needs, and `check` passed on it; a failure (a runtime
   * may fail now and then) is cleaned up and tried again, three times in all.
   */
  async function prepared(command: CrashCommand, variant: CrashVariant, check?: (c: ReturnType<typeof container>) => Promise<string | undefined>) {
    for (let attempt = 1; ; attempt++) {
      const c = container(command, variant);
      let failed: string | undefined;
      for (const s of c.setup) {
        const r = await run(s);
        if (r.code !== 0) {
          failed = `${s[0]} failed: ${r.error || `exit ${r.code}`}`;
          break;
        }
      }
      failed ??= await check?.(c);
      if (!failed) return c;
      setupFailures++;
      await inspect(c, rootBaseline);
      safeRemove(c.b.dir);
      if (attempt === 3) throw new KeelError(`crash sweep: ${runtime} ${command} (${variant} bundle): ${failed}`);
    }
  }

  const onSignal = () => {
    holder?.kill('SIGKILL');
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // Calibration: every command and variant, timed to the end (and cleaned up the same way).
    const calibration: Calibration[] = [];
    for (const command of commands) {
      for (const variant of variants) {
        const cal: Calibration = { command, variant, spanMs: 0 };
        for (let i = 0; i < (opts.calibrationRuns ?? 2); i++) {
          let t: Timed | undefined;
          const c = await prepared(command, variant, async (x) => {
            t = await timed(x.args);
            return t.code === 0 ? undefined : `${command} failed without being killed: ${readFileSync(join(logs, `${logSeq}.err`), 'utf8').trim().split('\n').at(-1) ?? `exit ${t.code}`}`;
          });
          cal.spanMs = Math.max(cal.spanMs, t!.ms);
          if (t!.childMs !== undefined) cal.childMs = Math.max(cal.childMs ?? 0, t!.childMs);
          await inspect(c, rootBaseline);
          safeRemove(c.b.dir);
        }
        if (!SPAWNS.has(command)) delete cal.childMs;
        calibration.push(cal);
      }
    }
    rootBaseline = new Set(readdirSync(root));

    // The plan: kills spread evenly over commands × variants, stratified over the span, shuffled.
    const plans: Plan[] = [];
    const combos = calibration.length;
    calibration.forEach((cal, i) => {
      const n = Math.floor(opts.kills / combos) + (i < opts.kills % combos ? 1 : 0);
      const aimed = SPAWNS.has(cal.command) && cal.childMs !== undefined ? Math.round(n * (opts.aimedShare ?? 0.3)) : 0;
      const sweep = n - aimed;
      for (let k = 0; k < sweep; k++) plans.push({ command: cal.command, variant: cal.variant, mode: 'sweep', delayMs: (cal.spanMs * 1.25 * (k + random())) / sweep });
      // Aimed: denser near the moment the container process appears.
      const window = Math.max(cal.spanMs - (cal.childMs ?? 0), 1);
      for (let k = 0; k < aimed; k++) plans.push({ command: cal.command, variant: cal.variant, mode: 'aimed', delayMs: window * ((k + random()) / aimed) ** 2 });
    });
    for (let i = plans.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [plans[i], plans[j]] = [plans[j]!, plans[i]!];
    }

    const perCommand: Partial<Record<CrashCommand, Figures>> = {};
    const total = emptyFigures();
    const failures: KillResult[] = [];
    for (const [n, plan] of plans.entries()) {
      const c = await prepared(plan.command, plan.variant);
      const t = await timed(c.args, plan);
      const found = await inspect(c, rootBaseline);
      const k: KillResult = {
        n, id: c.b.id, command: plan.command, variant: plan.variant, mode: plan.mode, delayMs: Math.round(plan.delayMs * 100) / 100,
        landed: t.landed, childSeen: t.childSeen, deleteCode: found.deleteCode, ...(found.deleteError ? { deleteError: found.deleteError } : {}),
        leftovers: found.leftovers.map(({ kind, what }) => ({ kind, what })),
      };
      addTo((perCommand[plan.command] ??= emptyFigures()), k);
      addTo(total, k);
      if (k.leftovers.length) failures.push(k);
      safeRemove(c.b.dir);
      opts.onKill?.(k, n + 1, plans.length);
    }
    return {
      target: opts.hideUnifiedCgroup ? `${runtime} (cgroup2 /sys/fs/cgroup/unified hidden)` : runtime,
      seed, startedAt: new Date(started).toISOString(), ms: Date.now() - started, calibration, perCommand, total, failures, setupFailures, ok: total.withLeftovers === 0,
    };
  } finally {
    reaper.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const m of scope.cgroupMounts) removeCgroup(cgroupDir(m, cgroupParent));
    if (holder) {
      holder.kill('SIGKILL');
      await new Promise((r) => (holder!.exitCode !== null || holder!.signalCode !== null ? r(undefined) : holder!.once('exit', r)));
    }
    if (!opts.keepTemp) {
      const kept = safeRemove(tmp);
      if (kept) process.stderr.write(`keel-conformance: ${kept}\n`);
    } else process.stderr.write(`keel-conformance: kept ${tmp}\n`);
  }
}

/** The report as text: per command, kills and what was left by kind; then every kill that left something. */
export function formatCrashReport(r: CrashReport): string {
  const lines: string[] = [];
  lines.push(`crash sweep of ${r.target}: ${r.total.kills} kills, seed ${r.seed}, ${(r.ms / 1000).toFixed(0)} s`);
  lines.push('');
  lines.push('calibration (longest timed run; when the container process appeared):');
  for (const c of r.calibration) lines.push(`  ${c.command.padEnd(7)} ${c.variant.padEnd(7)} ${c.spanMs.toFixed(0).padStart(6)} ms${c.childMs !== undefined ? `  (process at ${c.childMs.toFixed(0)} ms)` : ''}`);
  lines.push('');
  const head = ['command', 'kills', 'landed', 'aimed', 'left', ...LEFTOVER_KINDS, 'delete-failed'];
  const row = (name: string, f: Figures) => [name, f.kills, f.landed, f.aimed, f.withLeftovers, ...LEFTOVER_KINDS.map((k) => (f.byKind[k] ? `${f.byKind[k]} (${f.items[k]})` : '0')), f.deleteFailures].map(String);
  const rows = [head, ...Object.entries(r.perCommand).map(([c, f]) => row(c, f!)), row('total', r.total)];
  const widths = head.map((_, i) => Math.max(...rows.map((x) => x[i]!.length)));
  for (const x of rows) lines.push(x.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  '));
  lines.push('');
  lines.push('landed: the runtime died of the kill; left: kills after which something was left, by kind (things in all)');
  if (r.setupFailures) lines.push(`${r.setupFailures} container(s) failed to set up without being killed and were tried again`);
  if (r.failures.length) {
    lines.push('');
    lines.push('what was left:');
    for (const k of r.failures) {
      lines.push(`  #${k.n} ${k.command} (${k.variant}, ${k.mode} ${k.delayMs} ms${k.landed ? '' : ', had finished'}) ${k.id}${k.deleteCode !== 0 ? ` — delete --force failed: ${k.deleteError}` : ''}`);
      for (const l of k.leftovers) lines.push(`      ${l.kind}: ${l.what}`);
    }
  }
  lines.push('');
  lines.push(r.ok ? `PASS: nothing left after ${r.total.kills} kills` : `FAIL: something left after ${r.total.withLeftovers} of ${r.total.kills} kills`);
  return lines.join('\n') + '\n';
}
