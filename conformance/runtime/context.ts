// The state one runtime conformance run shares between its checks: the driver, the host facts,
// the probe, a temporary directory, memoised scenarios (one container run observed by several
// checks), and everything to undo at the end.
import { copyFileSync, chmodSync, linkSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Spec } from '../../src/spec/index.js';
import { fail } from '../check.js';
import type { ExecOptions, ExecResult, RuntimeDriver } from './driver.js';
import type { HostInfo } from './host.js';
import type { ProbeEvent, ProbeReport } from './probe.js';

export type Config = Spec & { process: NonNullable<Spec['process']>; linux: NonNullable<Spec['linux']>; mounts: NonNullable<Spec['mounts']> };

/** The environment every probe container gets (checked by the env check). */
export const BASE_ENV = ['PATH=/usr/bin:/bin:/', 'HOME=/root', 'KC_GREETING=hello world', 'KC_EMPTY='];
/** Bounding = effective = permitted for root containers (Docker's default set). */
export const BASE_CAPS = [
  'CAP_AUDIT_WRITE', 'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_MKNOD',
  'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_SETFCAP', 'CAP_SETGID', 'CAP_SETPCAP', 'CAP_SETUID', 'CAP_SYS_CHROOT',
];
export const BASE_MASKED = ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'];
export const BASE_READONLY = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys'];

/** An OCI bundle in the suite's temporary directory whose rootfs holds only the probe (and empty mount points). */
export class Bundle {
  config: Config;
  constructor(
    readonly id: string,
    readonly dir: string,
  ) {
    this.config = baseConfig(this);
  }
  get rootfs(): string {
    return join(this.dir, 'rootfs');
  }
  /** Host side of the container's /out (bind mount, world-writable). */
  get out(): string {
    return join(this.dir, 'out');
  }
  write(config: unknown = this.config): void {
    writeFileSync(join(this.dir, 'config.json'), JSON.stringify(config, null, 2));
  }
  report(name = 'report.json'): ProbeReport | null {
    try {
      return JSON.parse(readFileSync(join(this.out, name), 'utf8')) as ProbeReport;
    } catch {
      return null;
    }
  }
  events(name = 'events.log'): ProbeEvent[] {
    let text = '';
    try {
      text = readFileSync(join(this.out, name), 'utf8');
    } catch {
      return [];
    }
    return text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as ProbeEvent);
  }
}

/** The configuration most checks start from: the probe as /probe in a read-only rootfs, the usual Linux mounts and namespaces. */
export function baseConfig(b: Bundle): Config {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      consoleSize: { height: 24, width: 80 },
      user: { uid: 0, gid: 0 },
      args: ['/probe', '--out', '/out/report.json'],
      env: [...BASE_ENV],
      cwd: '/',
      capabilities: { bounding: [...BASE_CAPS], effective: [...BASE_CAPS], permitted: [...BASE_CAPS] },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: 'kc-host',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/out', type: 'bind', source: b.out, options: ['rbind', 'rw'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: [...BASE_MASKED],
      readonlyPaths: [...BASE_READONLY],
    },
  };
}

export interface ProbeRun {
  bundle: Bundle;
  result: ExecResult;
  report: ProbeReport | null;
}

export interface ProbeRunOptions {
  /** Probe options after `/probe --out /out/report.json`. */
  args?: string[];
  /** Changes to the base configuration. */
  mutate?: (config: Config, bundle: Bundle) => void | Promise<void>;
  /** Extra options to the runtime's `run` command. */
  runArgs?: string[];
  exec?: ExecOptions;
}

export interface SuiteContextInit {
  driver: RuntimeDriver;
  host: HostInfo;
  probe: string;
  tmp: string;
  /** The runtime as the user named it (messages). */
  runtimeName: string;
}

export class SuiteContext {
  readonly driver: RuntimeDriver;
  readonly host: HostInfo;
  /** The probe binary (host path). */
  readonly probe: string;
  readonly tmp: string;
  readonly runtimeName: string;
  private n = 0;
  private readonly memos = new Map<string, Promise<unknown>>();
  private readonly cleanups: (() => unknown)[] = [];

  constructor(init: SuiteContextInit) {
    this.driver = init.driver;
    this.host = init.host;
    this.probe = init.probe;
    this.tmp = init.tmp;
    this.runtimeName = init.runtimeName;
  }

  /** A container id unique to this run. */
  id(name: string): string {
    return `kc-${name}-${process.pid}-${++this.n}`;
  }

  /** Runs `fn` once per key; later callers share its result (a scenario observed by several checks). */
  memo<T>(key: string, fn: () => Promise<T>): Promise<T> {
    let p = this.memos.get(key) as Promise<T> | undefined;
    if (!p) {
      p = fn();
      this.memos.set(key, p);
    }
    return p;
  }

  /** Registers an undo step run at the end (last registered runs first). */
  onCleanup(fn: () => unknown): void {
    this.cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    await this.driver.cleanup();
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn();
      } catch {
        /* keep undoing the rest */
      }
    }
    this.cleanups.length = 0;
  }

  /** A fresh bundle named after the scenario. */
  bundle(name: string): Bundle {
    const id = this.id(name);
    const dir = join(this.tmp, 'bundles', id);
    const rootfs = join(dir, 'rootfs');
    mkdirSync(rootfs, { recursive: true });
    for (const d of ['proc', 'dev', 'sys', 'out', 'tmp']) mkdirSync(join(rootfs, d));
    const probe = join(rootfs, 'probe');
    try {
      linkSync(this.probe, probe);
    } catch {
      copyFileSync(this.probe, probe);
      chmodSync(probe, 0o755);
    }
    mkdirSync(join(dir, 'out'));
    chmodSync(join(dir, 'out'), 0o777);
    return new Bundle(id, dir);
  }

  /** Runs the probe in a fresh bundle with `run` (foreground) and returns what it reported. */
  async runProbe(name: string, opts: ProbeRunOptions = {}): Promise<ProbeRun> {
    const bundle = this.bundle(name);
    bundle.config.process.args = ['/probe', '--out', '/out/report.json', ...(opts.args ?? [])];
    await opts.mutate?.(bundle.config, bundle);
    bundle.write();
    const result = await this.driver.run(bundle.id, bundle.dir, opts.runArgs ?? [], opts.exec);
    const report = bundle.report();
    await this.driver.remove(bundle.id);
    return { bundle, result, report };
  }
}

/** Last non-empty stderr line of a runtime invocation, for failure messages. */
export function why(r: ExecResult): string {
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const last = lines.at(-1) ?? '';
  return `${r.timedOut ? 'timed out' : `exit ${r.code}`}${last ? `: ${last.slice(0, 300)}` : ''}`;
}

/** The probe's report of a run that must have succeeded; fails the check otherwise. */
export function reportOf(run: ProbeRun): ProbeReport {
  if (run.result.code !== 0) fail(`the container did not run (${why(run.result)})`);
  if (!run.report) fail('the container ran but the probe wrote no report (was the process started as configured?)');
  return run.report;
}
