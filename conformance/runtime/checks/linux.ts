// config-linux.md and runtime-linux.md: namespaces, user namespace mappings, devices and default
// devices, /dev symbolic links, file descriptors, cgroups (path, limits, allowed device list,
// removal), sysctl, seccomp, masked and read-only paths, default filesystems, terminal, personality.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assert, assertEqual, fail, skip } from '../../check.js';
import { type ProbeRun, reportOf, type SuiteContext, why } from '../context.js';
import { cgroupsOf, controllerDir, isV1, mountAt } from '../host.js';
import type { ProbeReport } from '../probe.js';
import { cliMd, configLinuxMd, configMd, must, runtimeLinuxMd, should, waitFor, type RuntimeCheck } from '../spec.js';
import { DEFAULT_DEVICES, DEFAULT_SYSCTL, DEV_LINKS, defaultRun } from './scenarios.js';

const NS_FILE: Record<string, string> = { pid: 'pid', network: 'net', ipc: 'ipc', uts: 'uts', mount: 'mnt', cgroup: 'cgroup', user: 'user', time: 'time' };


// ---------- namespaces ----------

/** A process holding new net, uts and ipc namespaces, for joining by path. */
async function holder(ctx: SuiteContext): Promise<{ pid: number; ns: Record<string, string> } | null> {
  return ctx.memo('ns-holder', async () => {
    const unshare = ['/usr/bin/unshare', '/bin/unshare'].find((p) => existsSync(p));
    if (!unshare) return null;
    const child: ChildProcess = spawn(unshare, ['--net', '--uts', '--ipc', 'sleep', '600'], { stdio: 'ignore' });
    ctx.onCleanup(() => child.kill('SIGKILL'));
    const pid = child.pid;
    if (!pid) return null;
    const nsOf = (n: string) => {
      try {
        return readlinkSync(`/proc/${pid}/ns/${n}`);
      } catch {
        return '';
      }
    };
    const ready = await waitFor(() => nsOf('net') !== '' && nsOf('net') !== ctx.host.ns.net && nsOf('uts') !== ctx.host.ns.uts, 5_000);
    if (!ready) return null;
    return { pid, ns: { net: nsOf('net'), uts: nsOf('uts'), ipc: nsOf('ipc') } };
  });
}

function newNamespaceCheck(type: string): RuntimeCheck {
  return must(configLinuxMd('Namespaces'), `config-linux.namespaces.new-${type}`, `If path is not specified, the runtime MUST create a new container namespace of type ${type}.`, async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const file = NS_FILE[type];
    assert(r.ns[file], `the container cannot see /proc/self/ns/${file}`);
    assert(r.ns[file] !== ctx.host.ns[file], `the container shares the runtime's ${file} namespace ${ctx.host.ns[file]}`);
    if (type === 'pid') assertEqual(r.pid, 1, 'pid of the container process in its new pid namespace');
  });
}

const USERNS_MAP = { containerID: 0, hostID: 100000, size: 65536 };

function userNsRun(ctx: SuiteContext): Promise<ProbeRun> {
  return ctx.memo('userns', () =>
    ctx.runProbe('userns', {
      mutate: (c) => {
        c.linux.namespaces!.push({ type: 'user' });
        c.linux.uidMappings = [{ ...USERNS_MAP }];
        c.linux.gidMappings = [{ ...USERNS_MAP }];
        c.mounts = c.mounts.filter((m) => m.destination !== '/sys');
        c.linux.maskedPaths = c.linux.maskedPaths!.filter((p) => !p.startsWith('/sys'));
      },
    }),
  );
}

// ---------- cgroups ----------

interface CgroupRun {
  path: string;
  create: string | null;
  cgroups: Map<string, string>;
  files: Record<string, string | null>;
  v2: boolean;
  leafDirs: string[];
  leafLeft: string[];
  parent: string | null;
  parentKept: boolean;
}

const LIMITS = { memory: 64 * 1024 * 1024, pids: 77, shares: 333 };

function readTrim(path: string | null): string | null {
  if (!path) return null;
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

async function cgroupRun(ctx: SuiteContext): Promise<CgroupRun> {
  return ctx.memo('cgroups', async () => {
    const b = ctx.bundle('cgroups');
    const top = `keel-conformance-${process.pid}`;
    const path = `/${top}/${b.id}`;
    const v2 = !isV1(ctx.host, 'pids');
    // A parent the suite creates itself: the runtime did not create it, so delete must keep it.
    const parent = v2 ? controllerDir(ctx.host, '', `/${top}`, true) : controllerDir(ctx.host, 'pids', `/${top}`);
    if (parent) mkdirSync(parent, { recursive: true });
    ctx.onCleanup(() => {
      for (const m of ctx.host.cgroupMounts) {
        try {
          rmdirSync(join(m.mountpoint, top));
        } catch {
          /* not there, or busy */
        }
      }
    });
    b.config.linux.cgroupsPath = path;
    b.config.linux.resources = { memory: { limit: LIMITS.memory }, pids: { limit: LIMITS.pids }, cpu: { shares: LIMITS.shares } };
    b.write();
    const d = ctx.driver;
    const c = await d.create(b.id, b.dir);
    const o: CgroupRun = { path, create: c.code === 0 ? null : why(c), cgroups: new Map(), files: {}, v2, leafDirs: [], leafLeft: [], parent, parentKept: false };
    if (c.code === 0) {
      const pid = Number((await d.state(b.id)).state?.pid);
      if (pid > 0) o.cgroups = cgroupsOf(pid);
      const mine = cgroupsOf(process.pid);
      const dir = (controller: string) => (v2 ? controllerDir(ctx.host, '', o.cgroups.get('') ?? path, true) : controllerDir(ctx.host, controller, o.cgroups.get(controller) ?? path));
      // The container's own cgroups, i.e. not the ones it shares with the suite (those it did not create).
      const own = (controller: string) => o.cgroups.has(controller) && o.cgroups.get(controller) !== mine.get(controller);
      const controllers = v2 ? [''] : ['memory', 'pids', 'cpu'];
      for (const c of controllers) {
        const x = dir(c);
        if (x && own(c)) o.leafDirs.push(x);
      }
      if (v2) {
        const leaf = dir('');
        o.files = { 'memory.max': readTrim(leaf && join(leaf, 'memory.max')), 'pids.max': readTrim(leaf && join(leaf, 'pids.max')) };
      } else {
        const [mem, pids, cpu] = controllers.map(dir);
        o.files = {
          'memory.limit_in_bytes': readTrim(mem && join(mem, 'memory.limit_in_bytes')),
          'pids.max': readTrim(pids && join(pids, 'pids.max')),
          'cpu.shares': readTrim(cpu && join(cpu, 'cpu.shares')),
        };
      }
      await d.kill(b.id, 'KILL');
      await d.waitStatus(b.id, 'stopped', 10_000);
      await d.delete(b.id);
      // Removal of a cgroup can lag the exit of its last process by a moment.
      await waitFor(() => o.leafDirs.every((x) => !existsSync(x)), 2_000);
      o.leafLeft = o.leafDirs.filter((x) => existsSync(x));
      o.parentKept = parent !== null && existsSync(parent);
    }
    await d.remove(b.id);
    return o;
  });
}

async function cgroupsCreated(ctx: SuiteContext): Promise<CgroupRun> {
  const o = await cgroupRun(ctx);
  if (o.create) fail(`create with cgroupsPath and resources failed (${o.create})`);
  return o;
}

interface DeviceRule {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

/**
 * Runs the probe with the given allowed-device rules; it makes a fuse node (10:229, a device no
 * runtime allows by default) and opens it.
 */
function deviceOrderRun(ctx: SuiteContext, name: string, rules: DeviceRule[]): Promise<ProbeRun> {
  return ctx.memo(`devices-${name}`, () =>
    ctx.runProbe(name, {
      args: ['--mknod', '/dev/kc-fuse', 'c', '10', '229', '--open', '/dev/kc-fuse'],
      mutate: (c) => {
        c.linux.resources = { devices: rules };
      },
    }),
  );
}

// ---------- terminal ----------

interface TerminalRun {
  create: string | null;
  report: ProbeReport | null;
  received: boolean;
}

async function terminalRun(ctx: SuiteContext): Promise<TerminalRun> {
  return ctx.memo('terminal', async () => {
    const b = ctx.bundle('tty');
    const sock = join(ctx.tmp, `${process.pid}-${b.id.length}-console.sock`);
    const out = join(ctx.tmp, `${b.id}.console`);
    const server = spawn(ctx.probe, ['--console-server', sock, '--console-out', out], { stdio: 'ignore' });
    ctx.onCleanup(() => server.kill('SIGKILL'));
    const o: TerminalRun = { create: null, report: null, received: false };
    if (!(await waitFor(() => existsSync(`${out}.ready`), 5_000))) {
      o.create = 'the console socket helper did not start';
      return o;
    }
    b.config.process.terminal = true;
    b.config.process.consoleSize = { height: 30, width: 100 };
    b.config.process.args = ['/probe', '--out', '/out/report.json', '--stat', '/dev/console'];
    b.write();
    const d = ctx.driver;
    const c = await d.create(b.id, b.dir, ['--console-socket', sock]);
    if (c.code !== 0) o.create = why(c);
    else {
      const s = await d.start(b.id);
      if (s.code !== 0) o.create = `start: ${why(s)}`;
      await waitFor(() => existsSync(join(b.out, 'report.json')), 10_000);
      await d.waitStatus(b.id, 'stopped', 10_000);
    }
    o.received = existsSync(`${out}.received`);
    o.report = b.report();
    await d.remove(b.id);
    server.kill('SIGKILL');
    return o;
  });
}

async function terminalReport(ctx: SuiteContext): Promise<ProbeReport> {
  const o = await terminalRun(ctx);
  if (o.create) fail(`the terminal container did not run (${o.create})`);
  if (!o.report) fail('the terminal container wrote no report');
  return o.report;
}

// ---------- checks ----------

const nsRef = configLinuxMd('Namespaces');
const devicesRef = configLinuxMd('Devices');
const defaultDevicesRef = configLinuxMd('Default Devices');
const cgroupsPathRef = configLinuxMd('Cgroups Path');

function defaultDeviceCheck(dev: { path: string; major: number; minor: number }): RuntimeCheck {
  const name = dev.path.slice(5);
  return must(defaultDevicesRef, `config-linux.default-devices.${name}`, `In addition to configured devices, the runtime MUST supply ${dev.path} (char ${dev.major}:${dev.minor}).`, async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const st = r.stats[dev.path];
    assert(st?.ok, `${dev.path} is missing (${st?.error})`);
    assertEqual(`${st.type} ${st.major}:${st.minor}`, `c ${dev.major}:${dev.minor}`, `${dev.path} type and numbers`);
    if (name === 'null') assert(r.writes['/dev/null']?.ok, `writing /dev/null failed (${r.writes['/dev/null']?.error})`);
    if (name === 'full') assertEqual(r.writes['/dev/full']?.error, 'ENOSPC', 'error writing /dev/full');
    if (name === 'zero') {
      const z = r.files['/dev/zero'];
      assert(z?.ok && z.data && /^\0+$/.test(z.data), `reading /dev/zero did not give zero bytes (${z?.error ?? 'other data'})`);
    }
    if (name === 'urandom' || name === 'random') assert(r.opens[dev.path]?.ok, `opening ${dev.path} failed (${r.opens[dev.path]?.error})`);
  });
}

function unreadable(r: ProbeReport, path: string): string | null {
  const f = r.files[path];
  if (f && f.ok && f.data && f.data.length > 0) return `${path} can be read (${f.data.length} bytes)`;
  return null;
}

export const linuxChecks: RuntimeCheck[] = [
  ...['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup'].map(newNamespaceCheck),
  must(nsRef, 'config-linux.namespaces.inherit', 'If a namespace type is not specified in namespaces, the container MUST inherit the runtime namespace of that type.', async (ctx) => {
    const run = await ctx.memo('inherit', () =>
      ctx.runProbe('inherit', {
        mutate: (c) => {
          c.linux.namespaces = [{ type: 'pid' }, { type: 'mount' }];
          delete c.hostname;
          c.mounts = c.mounts.filter((m) => m.destination !== '/sys' && m.destination !== '/dev/mqueue');
          c.linux.maskedPaths = c.linux.maskedPaths!.filter((p) => !p.startsWith('/sys'));
        },
      }),
    );
    const r = reportOf(run);
    const differ = ['net', 'ipc', 'uts', 'cgroup', 'user'].filter((n) => r.ns[n] !== ctx.host.ns[n]).map((n) => `${n} (${r.ns[n]} vs ${ctx.host.ns[n]})`);
    assert(differ.length === 0, `not inherited: ${differ.join(', ')}`);
  }),
  must(nsRef, 'config-linux.namespaces.join-path', 'The runtime MUST place the container process in the namespace associated with path.', async (ctx) => {
    const h = await holder(ctx);
    if (!h) return skip('cannot start a namespace holder (unshare(1) missing or failed)');
    const run = await ctx.runProbe('joinns', {
      mutate: (c) => {
        c.linux.namespaces = [{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: `/proc/${h.pid}/ns/net` }, { type: 'uts', path: `/proc/${h.pid}/ns/uts` }, { type: 'ipc', path: `/proc/${h.pid}/ns/ipc` }];
        delete c.hostname;
      },
    });
    const r = reportOf(run);
    for (const n of ['net', 'uts', 'ipc']) assertEqual(r.ns[n], h.ns[n], `${n} namespace`);
  }),
  must(nsRef, 'config-linux.namespaces.path-type-mismatch-errors', 'The runtime MUST generate an error if path is not associated with a namespace of type type.', async (ctx) => {
    const h = await holder(ctx);
    if (!h) return skip('cannot start a namespace holder (unshare(1) missing or failed)');
    const run = await ctx.runProbe('nsmismatch', {
      mutate: (c) => {
        c.linux.namespaces = [{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: `/proc/${h.pid}/ns/uts` }];
        delete c.hostname;
      },
    });
    assert(run.result.code !== 0 && !run.report, 'a container whose network namespace path is a uts namespace ran');
  }),
  must(nsRef, 'config-linux.namespaces.duplicate-errors', 'If namespaces contains duplicated namespaces with the same type, the runtime MUST generate an error.', async (ctx) => {
    const run = await ctx.runProbe('dupns', {
      mutate: (c) => {
        c.linux.namespaces!.push({ type: 'pid' });
      },
    });
    assert(run.result.code !== 0 && !run.report, 'a container with two pid namespace entries ran');
  }),
  must(configLinuxMd('User namespace mappings'), 'config-linux.user-namespace.mappings', 'With a user namespace, uidMappings and gidMappings map container ids to host ids.', async (ctx) => {
    if (!ctx.host.userNamespaces) return skip('user namespaces are disabled on this host');
    const r = reportOf(await userNsRun(ctx));
    assert(r.ns.user !== ctx.host.ns.user, 'the container is in the runtime user namespace');
    const norm = (s: string | null) => (s ?? '').trim().split(/\s+/).join(' ');
    const want = `${USERNS_MAP.containerID} ${USERNS_MAP.hostID} ${USERNS_MAP.size}`;
    assertEqual(norm(r.uidMap), want, 'uid_map');
    assertEqual(norm(r.gidMap), want, 'gid_map');
  }),
  should(nsRef, 'config-linux.namespaces.time', 'The time namespace type SHOULD be supported (a new time namespace is created).', async (ctx) => {
    if (!ctx.host.timeNamespaces) return skip('the kernel has no time namespaces');
    const run = await ctx.runProbe('timens', {
      mutate: (c) => {
        c.linux.namespaces!.push({ type: 'time' });
      },
    });
    const r = reportOf(run);
    assert(r.ns.time !== ctx.host.ns.time, 'the container shares the runtime time namespace');
  }),

  ...DEFAULT_DEVICES.map(defaultDeviceCheck),
  must(defaultDevicesRef, 'config-linux.default-devices.ptmx', 'The runtime MUST supply /dev/ptmx, a bind-mount or symlink of the container\'s /dev/pts/ptmx.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const st = r.stats['/dev/ptmx'];
    assert(st?.ok, `/dev/ptmx is missing (${st?.error})`);
    const ok = (st.type === 'l' && ['pts/ptmx', '/dev/pts/ptmx'].includes(st.link ?? '')) || (st.type === 'c' && st.major === 5 && st.minor === 2);
    assert(ok, `/dev/ptmx is ${st.type === 'l' ? `a symlink to ${st.link}` : `${st.type} ${st.major}:${st.minor}`}`);
  }),
  must(defaultDevicesRef, 'config-linux.default-devices.console', '/dev/console is set up if terminal is enabled, by bind mounting the pseudoterminal pty to /dev/console.', async (ctx) => {
    const r = await terminalReport(ctx);
    const st = r.stats['/dev/console'];
    assert(st?.ok, `/dev/console is missing (${st?.error})`);
    const pty = r.tty['0']?.rdev;
    assert(st.type === 'c' && pty && st.major === pty[0] && st.minor === pty[1], `/dev/console is ${st.type} ${st.major}:${st.minor}, not the pty on stdin (${pty?.join(':')})`);
  }),
  must(configMd('Process'), 'config.process.terminal', 'terminal: true allocates a pseudoterminal pair whose pty is duplicated on the process\'s standard streams.', async (ctx) => {
    const r = await terminalReport(ctx);
    const fds = ['0', '1', '2'].filter((fd) => !r.tty[fd]?.isatty);
    assert(fds.length === 0, `not a terminal: fd ${fds.join(', ')}`);
    const rdevs = new Set(['0', '1', '2'].map((fd) => r.tty[fd]?.rdev?.join(':')));
    assert(rdevs.size === 1, `the standard streams are different terminals (${[...rdevs].join(', ')})`);
  }),
  should(configMd('Process'), 'config.process.consoleSize', 'consoleSize specifies the console size in characters of the terminal.', async (ctx) => {
    const r = await terminalReport(ctx);
    assertEqual([r.tty['0']?.rows, r.tty['0']?.cols], [30, 100], 'terminal rows and columns');
  }),
  must(cliMd('create'), 'cli.create.console-socket', '--console-socket: the runtime MUST pass the pseudoterminal master through the socket.', async (ctx) => {
    const o = await terminalRun(ctx);
    assert(o.received, `no pseudoterminal master arrived on the console socket${o.create ? ` (${o.create})` : ''}`);
  }),
  must(devicesRef, 'config-linux.devices.available', 'devices lists devices that MUST be available in the container (type, numbers, fileMode, uid, gid).', async (ctx) => {
    const run = await ctx.runProbe('devices', {
      args: ['--stat', '/dev/kc-null', '--stat', '/dev/kc-fifo', '--write', '/dev/kc-null'],
      mutate: (c) => {
        c.linux.devices = [
          { path: '/dev/kc-null', type: 'c', major: 1, minor: 3, fileMode: 0o640, uid: 1, gid: 2 },
          { path: '/dev/kc-fifo', type: 'p', fileMode: 0o600 },
        ];
      },
    });
    const r = reportOf(run);
    const dev = r.stats['/dev/kc-null'];
    assert(dev?.ok, `/dev/kc-null is missing (${dev?.error})`);
    assertEqual({ type: dev.type, major: dev.major, minor: dev.minor, mode: dev.mode?.toString(8), uid: dev.uid, gid: dev.gid }, { type: 'c', major: 1, minor: 3, mode: '640', uid: 1, gid: 2 }, '/dev/kc-null');
    const fifo = r.stats['/dev/kc-fifo'];
    assert(fifo?.ok, `/dev/kc-fifo is missing (${fifo?.error})`);
    assertEqual(fifo.type, 'p', '/dev/kc-fifo type');
    assert(r.writes['/dev/kc-null']?.ok, `writing /dev/kc-null failed (${r.writes['/dev/kc-null']?.error})`);
  }),
  must(devicesRef, 'config-linux.devices.conflict-errors', 'If a file already exists at path that does not match the requested device, the runtime MUST generate an error.', async (ctx) => {
    const run = await ctx.runProbe('devconflict', {
      mutate: (c, b) => {
        writeFileSync(join(b.rootfs, 'kc-existing'), 'a regular file\n');
        c.linux.devices = [{ path: '/kc-existing', type: 'c', major: 1, minor: 3 }];
      },
    });
    assert(run.result.code !== 0 && !run.report, 'a container whose device path /kc-existing is a regular file in the rootfs ran');
  }),
  must(runtimeLinuxMd('Dev symbolic links'), 'runtime-linux.dev-symlinks', 'Runtimes MUST create the /dev/fd, /dev/stdin, /dev/stdout and /dev/stderr symlinks.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const bad = DEV_LINKS.filter(([link, target]) => !(r.stats[link]?.type === 'l' && r.stats[link]?.link === target)).map(
      ([link, target]) => `${link} → ${r.stats[link]?.link ?? r.stats[link]?.error ?? r.stats[link]?.type} (want ${target})`,
    );
    assert(bad.length === 0, bad.join('; '));
  }),
  should(runtimeLinuxMd('File descriptors'), 'runtime-linux.file-descriptors', 'By default, only the stdin, stdout and stderr file descriptors are kept open for the application.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const extra = r.fds.filter((f) => f.fd > 2);
    assert(extra.length === 0, `extra open descriptors: ${extra.map((f) => `${f.fd} → ${f.target}`).join(', ')}`);
  }),

  must(cgroupsPathRef, 'config-linux.cgroups.path', 'An absolute cgroupsPath MUST be taken relative to the cgroups mount point (the container is placed there).', async (ctx) => {
    const o = await cgroupsCreated(ctx);
    const controllers = o.v2 ? [''] : ['pids', 'memory', 'cpu'];
    const bad = controllers.filter((c) => o.cgroups.get(c) !== o.path).map((c) => `${c || 'unified'}: ${o.cgroups.get(c)}`);
    assert(bad.length === 0, `the container process is not in ${o.path}: ${bad.join(', ')}`);
  }),
  must(configLinuxMd('Memory'), 'config-linux.cgroups.memory-limit', 'memory.limit sets the limit of memory usage of the container\'s cgroup.', async (ctx) => {
    const o = await cgroupsCreated(ctx);
    assertEqual(o.files[o.v2 ? 'memory.max' : 'memory.limit_in_bytes'], String(LIMITS.memory), 'memory limit of the container cgroup');
  }),
  must(configLinuxMd('PIDs'), 'config-linux.cgroups.pids-limit', 'pids.limit specifies the maximum number of tasks in the cgroup.', async (ctx) => {
    const o = await cgroupsCreated(ctx);
    assertEqual(o.files['pids.max'], String(LIMITS.pids), 'pids.max of the container cgroup');
  }),
  must(configLinuxMd('CPU'), 'config-linux.cgroups.cpu-shares', 'cpu.shares specifies a relative share of CPU time available to the tasks in the cgroup.', async (ctx) => {
    const o = await cgroupsCreated(ctx);
    if (o.v2) return skip('cgroup v2 expresses shares as cpu.weight through a conversion the spec does not fix');
    assertEqual(o.files['cpu.shares'], String(LIMITS.shares), 'cpu.shares of the container cgroup');
  }),
  must(configLinuxMd('Cgroups Path'), 'config-linux.cgroups.removed-on-delete', 'Deleting a container MUST delete the resources created during create (its cgroups).', async (ctx) => {
    const o = await cgroupsCreated(ctx);
    if (o.leafDirs.length === 0) return skip('the container had no cgroup of its own (see config-linux.cgroups.path)');
    assert(o.leafLeft.length === 0, `left after delete: ${o.leafLeft.join(', ')}`);
  }),
  must(configLinuxMd('Cgroups Path'), 'config-linux.cgroups.parent-kept', 'Resources associated with the container but not created by it (a pre-existing parent cgroup) MUST NOT be deleted.', async (ctx) => {
    const o = await cgroupsCreated(ctx);
    if (!o.parent) return skip('no cgroup hierarchy for pids found on this host');
    assert(o.parentKept, `the pre-existing parent cgroup ${o.parent} was removed`);
  }),
  must(configLinuxMd('Allowed Device list'), 'config-linux.cgroups.devices-order', 'The runtime MUST apply the allowed device list entries in the listed order.', async (ctx) => {
    if (!ctx.host.fuse) return skip('no fuse device on this host to observe the device cgroup with');
    const allowLast = reportOf(await deviceOrderRun(ctx, 'devallow', [{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' }]));
    const denyLast = reportOf(await deviceOrderRun(ctx, 'devdeny', [{ allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' }, { allow: false, access: 'rwm' }]));
    const opened = (r: ProbeReport) => r.mknods['/dev/kc-fuse']?.ok && r.opens['/dev/kc-fuse']?.ok;
    assert(opened(allowLast), `deny all then allow c 10:229: the device could not be used (mknod ${allowLast.mknods['/dev/kc-fuse']?.error ?? 'ok'}, open ${allowLast.opens['/dev/kc-fuse']?.error ?? 'ok'})`);
    assert(!opened(denyLast), 'allow c 10:229 then deny all: the device could still be opened');
  }),

  must(configLinuxMd('Sysctl'), 'config-linux.sysctl', 'sysctl modifies kernel parameters for the container.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const bad = Object.entries(DEFAULT_SYSCTL)
      .map(([k, v]) => [k, v, r.files[`/proc/sys/${k.replace(/\./g, '/')}`]] as const)
      .filter(([, v, f]) => f?.data?.trim() !== v)
      .map(([k, v, f]) => `${k}: want ${v}, got ${f?.ok ? JSON.stringify(f.data?.trim()) : f?.error}`);
    assert(bad.length === 0, bad.join('; '));
  }),
  must(configLinuxMd('Seccomp'), 'config-linux.seccomp.filter', 'seccomp: matched syscalls get the configured action; errnoRet is returned, EPERM when unset.', async (ctx) => {
    if (ctx.host.seccompMode !== '0') return skip('the suite itself runs under seccomp');
    const run = await ctx.runProbe('seccomp', {
      args: ['--mkdir', '/out/kc-seccomp-dir', '--mknod', '/out/kc-seccomp-node', 'c', '1', '3'],
      mutate: (c) => {
        c.linux.seccomp = {
          defaultAction: 'SCMP_ACT_ALLOW',
          syscalls: [
            { names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 95 },
            { names: ['mknod', 'mknodat'], action: 'SCMP_ACT_ERRNO' },
          ],
        };
      },
    });
    const r = reportOf(run);
    assertEqual(r.status.Seccomp, '2', 'seccomp mode of the container process');
    assertEqual(r.mkdirs['/out/kc-seccomp-dir']?.errno, 95, 'errno of mkdir (errnoRet 95)');
    assertEqual(r.mknods['/out/kc-seccomp-node']?.error, 'EPERM', 'error of mknod (no errnoRet)');
  }),
  must(configLinuxMd('Seccomp'), 'config-linux.seccomp.none', 'Without seccomp in the configuration, no filter is installed.', async (ctx) => {
    if (ctx.host.seccompMode !== '0') return skip('the suite itself runs under seccomp');
    assertEqual(reportOf(await defaultRun(ctx)).status.Seccomp, '0', 'seccomp mode without a seccomp configuration');
  }),
  must(configLinuxMd('Masked Paths'), 'config-linux.masked-paths', 'maskedPaths will mask over the provided paths inside the container so that they cannot be read.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const problems = ['/proc/kcore', '/proc/keys', '/proc/timer_list'].map((p) => unreadable(r, p)).filter((x): x is string => x !== null);
    const fw = r.lists['/sys/firmware'];
    if (fw?.ok && (fw.entries?.length ?? 0) > 0) problems.push(`/sys/firmware lists ${fw.entries!.join(', ')}`);
    assert(problems.length === 0, problems.join('; '));
  }),
  must(configLinuxMd('Readonly Paths'), 'config-linux.readonly-paths', 'readonlyPaths will set the provided paths as readonly inside the container.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    assertEqual(r.writes['/proc/sys/kernel/domainname']?.error, 'EROFS', 'error writing under /proc/sys');
    const m = mountAt(r.mountinfo, '/proc/sys');
    assert(m?.options.includes('ro'), `/proc/sys is not a read-only mount (${m ? m.options.join(',') : 'no mount there'})`);
  }),
  should(configLinuxMd('Default Filesystems'), 'config-linux.default-filesystems', 'The following filesystems SHOULD be made available: /proc (proc), /sys (sysfs), /dev/pts (devpts), /dev/shm (tmpfs).', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const want: [string, string][] = [['/proc', 'proc'], ['/sys', 'sysfs'], ['/dev/pts', 'devpts'], ['/dev/shm', 'tmpfs']];
    const bad = want.filter(([p, t]) => mountAt(r.mountinfo, p)?.fstype !== t).map(([p, t]) => `${p} is ${mountAt(r.mountinfo, p)?.fstype ?? 'not mounted'} (want ${t})`);
    assert(bad.length === 0, bad.join('; '));
  }),
  should(configLinuxMd('Personality'), 'config-linux.personality', 'personality sets the Linux execution domain (LINUX32 makes uname report a 32-bit machine).', async (ctx) => {
    if (process.arch !== 'x64' && process.arch !== 'arm64') return skip(`no 32-bit personality to observe on ${process.arch}`);
    const run = await ctx.runProbe('personality', {
      mutate: (c) => {
        c.linux.personality = { domain: 'LINUX32' };
      },
    });
    const r = reportOf(run);
    assertEqual(r.personality & 0xff, 8, 'personality domain (PER_LINUX32)');
  }),
];
