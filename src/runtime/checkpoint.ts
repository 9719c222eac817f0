// Checkpoint and restore with CRIU, as runc does (`runc checkpoint`, `runc restore`), through
// criu's RPC (criu/swrk.ts). criu freezes and dumps the container's process tree, and restores it
// itself; keel's part is what config.json says about the container that criu cannot know: which
// mounts come from the host (external mounts, and where their sources are on restore), which
// namespaces are joined rather than owned, the cgroup the restored tree goes into, the console,
// the hooks, and the state record. Images are runc's: a checkpoint taken by keel is restored by
// runc and the reverse (same external-mount keys, same descriptors.json).
import { closeSync, existsSync, mkdirSync, readdirSync, openSync, readFileSync, readlinkSync, realpathSync, rmdirSync, statSync, writeFileSync, renameSync, lstatSync, constants as fsc } from 'node:fs';
import { basename, dirname, isAbsolute, join, posix, resolve } from 'node:path';
import type { Spec, Mount } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import { StateStore, checkId, type ContainerRecord } from './state.js';
import { NAMESPACES, MS, MNT_DETACH } from './linux/constants.js';
import type { RuntimeContext } from './container.js';

export interface CriuContext extends RuntimeContext {
  /** The criu binary (runc's global --criu; default PATH's criu). */
  criu?: string;
}

/** Flags `checkpoint` and `restore` share (runc's names). */
export interface CriuFlags {
  /** Where the images are (default ./checkpoint). */
  imagePath?: string;
  /** Where criu's log and work files go (default the image folder). */
  workPath?: string;
  tcpEstablished?: boolean;
  extUnixSk?: boolean;
  shellJob?: boolean;
  fileLocks?: boolean;
  /** soft (criu's default), full, strict or ignore. */
  manageCgroupsMode?: string;
  /** Namespaces made empty rather than restored (runc accepts "network" only; it is always so). */
  emptyNs?: string[];
  autoDedup?: boolean;
  lazyPages?: boolean;
}

export interface CheckpointOptions extends CriuFlags {
  /** The previous (pre-)dump, relative to the image folder. */
  parentPath?: string;
  leaveRunning?: boolean;
  preDump?: boolean;
  /** ADDRESS:PORT of a criu page server to send the memory to. */
  pageServer?: string;
  /** With lazyPages: an fd criu's readiness is written to (a 0 byte). */
  statusFd?: number;
  tcpSkipInFlight?: boolean;
  linkRemap?: boolean;
}

export interface RestoreOptions extends CriuFlags {
  bundle?: string;
  detach?: boolean;
  pidFile?: string;
  consoleSocket?: string;
  /** Accepted as runc does; criu restores the container's root as it was. */
  noPivot?: boolean;
  /** An LSM profile for the restored processes (TYPE:NAME) and mount context (criu 3.16+). */
  lsmProfile?: string;
  lsmMountContext?: string;
  /** Library use: criu's stdin, stdout, stderr (what restored pipes to the outside attach to). */
  stdio?: [number, number, number];
}

const DESCRIPTORS = 'descriptors.json';
/** runc's default criu configuration file, unless annotation org.criu.config says otherwise. */
const DEFAULT_CRIU_CONFIG = '/etc/criu/runc.conf';
const CLONE_NEWNET = 0x40000000;

function store(ctx: RuntimeContext): StateStore { return new StateStore(ctx.root); }

/** criu's name of a namespace type ("network" → "net"). */
function criuNs(type: string): string { return NAMESPACES[type]?.file ?? type; }

/** runc's key of an external namespace: extRootNetNS, extRootPidNS. */
function extNsKey(type: string): string {
  const n = criuNs(type);
  return `extRoot${n[0]!.toUpperCase()}${n.slice(1)}NS`;
}

function cgMode(mode: string | undefined, m: typeof import('./criu/swrk.js')['criu_cg_mode']): number {
  switch (mode ?? '') {
    case '': return m.DEFAULT;
    case 'soft': return m.SOFT;
    case 'full': return m.FULL;
    case 'strict': return m.STRICT;
    case 'ignore': return m.IGNORE;
    default: throw new KeelError(`invalid --manage-cgroups-mode ${JSON.stringify(mode)}: must be soft, full, strict or ignore`);
  }
}

/** The empty_ns mask: the network namespace always (keel, like runc, configures no network devices). */
function emptyNsMask(list: string[] | undefined): number {
  for (const ns of list ?? []) {
    if (ns !== 'network') throw new KeelError(`--empty-ns: namespace ${JSON.stringify(ns)} is not supported (only network)`);
  }
  return CLONE_NEWNET;
}

/** The criu configuration file: annotation org.criu.config ("" for none), else runc's default. */
function configFile(config: Spec): string | undefined {
  const a = config.annotations ?? {};
  if ('org.criu.config' in a) return a['org.criu.config'] || undefined;
  return DEFAULT_CRIU_CONFIG;
}

function isBind(m: Mount): boolean {
  return m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}

function isCgroupMount(m: Mount): boolean {
  return (m.type === 'cgroup' || m.type === 'cgroup2') && !isBind(m);
}

function hasNs(config: Spec, type: string): boolean {
  return (config.linux?.namespaces ?? []).some((n) => n.type === type);
}

function nsPath(config: Spec, type: string): string | undefined {
  return (config.linux?.namespaces ?? []).find((n) => n.type === type && n.path)?.path;
}

/** A mount destination as criu sees it: absolute, normalised, relative to the container's root. */
function dest(d: string): string { return posix.normalize(`/${d}`).replace(/(.)\/$/, '$1'); }

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Mount points and types of process `pid`'s mounts, as it sees them (its root is "/"). */
function mountsOf(pid: number): { mountPoint: string; fstype: string }[] {
  const out: { mountPoint: string; fstype: string }[] = [];
  for (const line of readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    out.push({ mountPoint: unescapeMount(line.slice(0, sep).split(' ')[4] ?? ''), fstype: line.slice(sep + 3).split(' ')[0] ?? '' });
  }
  return out;
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir === '/' ? '/' : `${dir}/`);
}

/** The readlink of `pid`'s fds 0-2 (runc's descriptors.json): pipes are found again on restore by these names. */
function stdioNames(pid: number): string[] {
  return [0, 1, 2].map((fd) => { try { return readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return '/dev/null'; } });
}

/** Creates `dir` (0700) unless it exists, and opens it for criu (not close-on-exec: criu inherits it). */
function openDir(dir: string, what: string, makeIt: boolean): number {
  if (makeIt) {
    try { mkdirSync(dir, { recursive: true, mode: 0o700 }); } catch (err) {
      throw new KeelError(`${what} ${dir}: cannot create it: ${(err as NodeJS.ErrnoException).code}`);
    }
  }
  try {
    return openSync(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  } catch (err) {
    throw new KeelError(`${what} ${dir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot open it: ${(err as NodeJS.ErrnoException).code}`}`);
  }
}

// ---------------------------------------------------------------------------------------------
// checkpoint

/**
 * `keel checkpoint`: dumps a running (or paused) container into images with criu. Unless
 * leaveRunning or preDump, criu kills the container, which is then deleted (as runc does).
 */
export async function checkpoint(ctx: CriuContext, id: string, opts: CheckpointOptions = {}): Promise<void> {
  checkId(id);
  const st = store(ctx);
  if (!st.exists(id)) throw new KeelError(`container ${id} does not exist`);
  const swrk = await import('./criu/swrk.js');
  const criu = await swrk.criuReady('checkpoint', { criu: ctx.criu, cacheDir: ctx.root });
  const mode = cgMode(opts.manageCgroupsMode, swrk.criu_cg_mode);
  const emptyNs = emptyNsMask(opts.emptyNs);
  const imagePath = resolve(opts.imagePath || 'checkpoint');
  if (opts.parentPath !== undefined && opts.parentPath !== '') {
    if (isAbsolute(opts.parentPath)) throw new KeelError('--parent-path must be relative (to --image-path)');
    const parent = join(imagePath, opts.parentPath);
    let isDir = false;
    try { isDir = statSync(parent).isDirectory(); } catch { /* missing */ }
    if (!isDir) throw new KeelError(`invalid --parent-path: ${parent} is not a directory`);
  }
  let ps: { address: string; port: number } | undefined;
  if (opts.pageServer) {
    const m = /^(.*):(\d+)$/.exec(opts.pageServer);
    if (!m || !m[1]) throw new KeelError('use --page-server ADDRESS:PORT to name the page server');
    ps = { address: m[1].replace(/^\[(.*)\]$/, '$1'), port: Number(m[2]) };
  }
  if (opts.preDump) {
    const f = await swrk.criuFeatures(criu.binary, { memTrack: true });
    if (!f.memTrack) throw new KeelError(`checkpoint --pre-dump: criu ${criu.versionText} cannot track memory changes on this kernel (no soft-dirty page tracking, CONFIG_MEM_SOFT_DIRTY)`);
  }
  if (opts.lazyPages) {
    const f = await swrk.criuFeatures(criu.binary, { lazyPages: true });
    if (!f.lazyPages) throw new KeelError(`checkpoint --lazy-pages: criu ${criu.versionText} cannot restore memory lazily on this kernel (no userfaultfd)`);
  }
  if (opts.statusFd !== undefined && opts.statusFd >= 0 && !opts.lazyPages) throw new KeelError('--status-fd needs --lazy-pages');

  const killed = await st.withLock(id, async () => {
    const rec = st.load(id);
    const { statusOf } = await import('./container.js');
    const status = statusOf(ctx, rec);
    if (status !== 'running' && status !== 'paused') throw new KeelError(`container ${id} cannot be checkpointed in ${status} state`);
    const config = rec.config as Spec;
    const fds: number[] = [];
    try {
      const imagesFd = openDir(imagePath, '--image-path', true);
      fds.push(imagesFd);
      let logDir = imagePath;
      let workFd: number | undefined;
      if (opts.workPath) {
        workFd = openDir(resolve(opts.workPath), '--work-path', true);
        fds.push(workFd);
        logDir = resolve(opts.workPath);
      }
      const criuOpts: import('./criu/swrk.js').CriuOptsInit = {
        imagesDirFd: imagesFd, logLevel: 4, logFile: 'dump.log', root: rec.rootfs, manageCgroups: true, manageCgroupsMode: mode,
        notifyScripts: true, pid: rec.pid, shellJob: !!opts.shellJob, leaveRunning: !!opts.leaveRunning,
        tcpEstablished: !!opts.tcpEstablished, tcpSkipInFlight: !!opts.tcpSkipInFlight, linkRemap: !!opts.linkRemap,
        extUnixSk: !!opts.extUnixSk, fileLocks: !!opts.fileLocks, emptyNs, orphanPtsMaster: true, autoDedup: !!opts.autoDedup,
        lazyPages: !!opts.lazyPages, external: [], extMnt: [],
      };
      if (workFd !== undefined) criuOpts.workDirFd = workFd;
      const cfgFile = configFile(config);
      if (cfgFile) criuOpts.configFile = cfgFile;
      // Joined network and pid namespaces are external: the restore joins them again.
      for (const type of ['network', 'pid']) {
        const path = nsPath(config, type);
        if (!path) continue;
        let ino: number;
        try { ino = statSync(path).ino; } catch (err) { throw new KeelError(`config.json: /linux/namespaces: ${type} namespace ${path}: ${(err as NodeJS.ErrnoException).code}`); }
        criuOpts.external!.push(`${criuNs(type)}[${ino}]:${extNsKey(type)}`);
      }
      // criu freezes the tree with the container's freezer cgroup (v1 freezer or v2 cgroup.freeze).
      if (rec.cgroup?.freezerFile) criuOpts.freezeCgroup = dirname(rec.cgroup.freezerFile);
      if (ps) criuOpts.ps = ps;
      if (opts.parentPath) { criuOpts.parentImg = opts.parentPath; criuOpts.trackMem = true; }
      if (opts.lazyPages && opts.statusFd !== undefined && opts.statusFd >= 0 && criu.version < 31500) criuOpts.statusFd = opts.statusFd;
      if (!opts.preDump) {
        criuOpts.extMnt = dumpExternalMounts(config, rec.pid);
        const names = stdioNames(rec.pid);
        writeFileSync(join(imagePath, DESCRIPTORS), JSON.stringify(names), { mode: 0o600 });
      }
      let statusFd = opts.lazyPages && opts.statusFd !== undefined && opts.statusFd >= 0 && criu.version >= 31500 ? opts.statusFd : -1;
      await swrk.call(criu.binary, { type: opts.preDump ? swrk.criu_req_type.PRE_DUMP : swrk.criu_req_type.DUMP, opts: criuOpts }, {
        log: join(logDir, 'dump.log'),
        onNotify: (n) => {
          if (n.script === 'status-ready' && statusFd >= 0) {
            try { writeFileSync(statusFd, Buffer.from([0])); closeSync(statusFd); } catch { /* the reader went away */ }
            statusFd = -1;
          }
        },
      });
      return !opts.leaveRunning && !opts.preDump;
    } finally {
      for (const fd of fds) closeSync(fd);
    }
  });
  // criu killed the container's processes: delete it, as runc does after a checkpoint.
  if (killed) {
    const { remove } = await import('./container.js');
    await remove(ctx, id, { force: true });
  }
}

/**
 * The external mounts of a dump (criu's ext_mnt, mount point → key): bind mounts from the host
 * (key: their destination), cgroup mounts of a container without its own cgroup namespace
 * (their roots are the container's cgroups on the host, found again by path on restore), masked
 * files (/dev/null bound over them; key /dev/null) and device nodes (bound where they are bind
 * mounts). These are runc's keys, so runc restores keel's images and the reverse.
 */
function dumpExternalMounts(config: Spec, pid: number): { key: string; val: string }[] {
  const out: { key: string; val: string }[] = [];
  const seen = new Set<string>();
  const add = (key: string, val: string) => { if (!seen.has(key)) { seen.add(key); out.push({ key, val }); } };
  const mounts = config.mounts ?? [];
  const live = mountsOf(pid);
  const cgroupNs = hasNs(config, 'cgroup');
  for (const m of mounts) {
    const d = dest(m.destination);
    if (isBind(m)) add(d, d);
    else if (isCgroupMount(m) && !cgroupNs) {
      for (const l of live) if (under(l.mountPoint, d) && (l.fstype === 'cgroup' || l.fstype === 'cgroup2')) add(l.mountPoint, l.mountPoint);
    }
  }
  for (const path of config.linux?.maskedPaths ?? []) {
    let st;
    try { st = statSync(`/proc/${pid}/root${dest(path)}`); } catch { continue; }
    if (!st.isDirectory()) add(dest(path), '/dev/null');
  }
  for (const dev of config.linux?.devices ?? []) add(dest(dev.path), dest(dev.path));
  return out;
}

// ---------------------------------------------------------------------------------------------
// restore

/**
 * `keel restore`: restores a container from criu images into container `id` (new or the dumped
 * one's id) with BUNDLE/config.json. With detach it returns 0 once the container runs; otherwise
 * it waits for the restored init and returns its exit code (128+n for signal n), then deletes it.
 */
export async function restore(ctx: CriuContext, id: string, opts: RestoreOptions = {}): Promise<number> {
  checkId(id);
  const st = store(ctx);
  if (st.exists(id)) throw new KeelError(`container with id ${id} already exists`);
  const swrk = await import('./criu/swrk.js');
  const criu = await swrk.criuReady('restore', { criu: ctx.criu, cacheDir: ctx.root });
  const mode = cgMode(opts.manageCgroupsMode, swrk.criu_cg_mode);
  const emptyNs = emptyNsMask(opts.emptyNs);
  const { loadBundle, toState } = await import('./container.js');
  const { config, bundle, rootfs } = await loadBundle(opts.bundle ?? '.');
  const imagePath = resolve(opts.imagePath || 'checkpoint');
  if (!existsSync(join(imagePath, 'inventory.img'))) throw new KeelError(`--image-path ${imagePath}: no checkpoint there (inventory.img is missing)`);
  if ((opts.lsmProfile || opts.lsmMountContext) && criu.version < 31600) throw new KeelError(`--lsm-profile and --lsm-mount-context need criu 3.16 or later (this is ${criu.versionText})`);
  const terminal = !!config.process?.terminal;
  if (terminal && opts.detach && !opts.consoleSocket) throw new KeelError('cannot allocate a tty when keel detaches without --console-socket');
  if (opts.consoleSocket && !terminal) throw new KeelError('--console-socket needs process.terminal to be true');
  let descriptors: string[] = [];
  try {
    descriptors = JSON.parse(readFileSync(join(imagePath, DESCRIPTORS), 'utf8')) as string[];
    if (!Array.isArray(descriptors)) throw new Error('not a list');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new KeelError(`${join(imagePath, DESCRIPTORS)}: ${(err as Error).message}`);
  }
  for (const type of ['cgroup']) {
    if (nsPath(config, type)) throw new KeelError(`config.json: /linux/namespaces: criu cannot join an existing ${type} namespace on restore`);
  }

  const { hostSys } = await import('./sys/host.js');
  const { libc } = await import('./sys/libc.js');
  const sys = hostSys();
  st.claim(id);
  const rec: ContainerRecord = {
    ociVersion: '1.3.0', id, pid: 0, pidStartTime: '', bundle, rootfs, created: new Date().toISOString(),
    owner: '', annotations: config.annotations, creating: true, creator: StateStore.self(), config,
  };
  const fds: number[] = [];
  let criuRoot: string | undefined;
  let pid = 0;
  let master = -1;
  let placed: (() => { destroy(o?: { kill?: boolean }): Promise<void> } | undefined) | undefined;
  try {
    st.save(rec);
    const imagesFd = openDir(imagePath, '--image-path', false);
    fds.push(imagesFd);
    let logDir = imagePath;
    let workFd: number | undefined;
    if (opts.workPath) {
      workFd = openDir(resolve(opts.workPath), '--work-path', true);
      fds.push(workFd);
      logDir = resolve(opts.workPath);
    }
    // criu wants a root that is a mount point whose parent is not over-mounted: a bind of the
    // rootfs, kept outside the state folder so that no recursive removal can ever reach into it.
    sweepCriuRoots(sys, ctx.root);
    criuRoot = join(ctx.root, `.criu-root~${id}~${process.pid}`);
    mkdirSync(criuRoot, { mode: 0o755 });
    sys.mount(rootfs, criuRoot, null, MS.BIND | MS.REC, null);
    criuRoot = realpathSync(criuRoot);
    await prepareMountpoints(config, rootfs, bundle);

    const criuOpts: import('./criu/swrk.js').CriuOptsInit = {
      imagesDirFd: imagesFd, evasiveDevices: true, logLevel: 4, logFile: 'restore.log', rstSibling: true, root: criuRoot,
      manageCgroups: true, manageCgroupsMode: mode, notifyScripts: true, shellJob: !!opts.shellJob, extUnixSk: !!opts.extUnixSk,
      tcpEstablished: !!opts.tcpEstablished, fileLocks: !!opts.fileLocks, emptyNs, orphanPtsMaster: true,
      autoDedup: !!opts.autoDedup, lazyPages: !!opts.lazyPages, extMnt: [], inheritFd: [], joinNs: [], cgRoot: [],
    };
    if (workFd !== undefined) criuOpts.workDirFd = workFd;
    const cfgFile = configFile(config);
    if (cfgFile) criuOpts.configFile = cfgFile;
    if (opts.lsmProfile) criuOpts.lsmProfile = opts.lsmProfile;
    if (opts.lsmMountContext) criuOpts.lsmMountContext = opts.lsmMountContext;
    // Namespaces with a path: network and pid are given to criu as external (inherited fds, from
    // fd 4 on in criu), the others are joined.
    const extraFds: number[] = [];
    for (const ns of config.linux?.namespaces ?? []) {
      if (!ns.path) continue;
      if (ns.type === 'network' || ns.type === 'pid') {
        let fd: number;
        try { fd = openSync(ns.path, fsc.O_RDONLY); } catch (err) {
          throw new KeelError(`config.json: /linux/namespaces: ${ns.type} namespace ${ns.path}: ${(err as NodeJS.ErrnoException).code}`);
        }
        fds.push(fd);
        criuOpts.inheritFd!.push({ key: extNsKey(ns.type), fd: 4 + extraFds.length });
        extraFds.push(fd);
      } else {
        criuOpts.joinNs!.push({ ns: criuNs(ns.type), nsFile: ns.path });
      }
    }
    criuOpts.extMnt = restoreExternalMounts(config, bundle);
    // The pipes the dumped init had on its stdio are criu's own stdio now.
    descriptors.forEach((name, fd) => { if (typeof name === 'string' && name.includes('pipe:')) criuOpts.inheritFd!.push({ key: name, fd }); });

    const { cgroupRecord, placeInCgroup, cgroupOf } = await import('./resources.js');
    const { runHooks } = await import('./hooks.js');
    const { detectCgroupLayout } = await import('./cgroups/layout.js');
    const hooks = config.hooks ?? {};
    const stdio: [number, number, number] = opts.stdio ?? [0, 1, 2];
    await swrk.call(criu.binary, { type: swrk.criu_req_type.RESTORE, opts: criuOpts }, {
      stdio, extraFds, log: join(logDir, 'restore.log'),
      beforeSend: (criuPid) => {
        // criu goes into the container's new cgroup, and restores the tree there.
        rec.cgroup = cgroupRecord(config, id, { systemd: !!ctx.systemdCgroup });
        st.save(rec);
        placed = () => cgroupOf(rec);
        placeInCgroup(config, id, criuPid, rec.cgroup);
        // (The request is made from criuOpts after this.)
        criuOpts.cgRoot!.push(...cgroupRoots(criuPid));
        criuOpts.extMnt!.push(...cgroupMountMap(config, criuPid, detectCgroupLayout()));
      },
      onNotify: async (n, got) => {
        switch (n.script) {
          case 'setup-namespaces': {
            // As runc: prestart and createRuntime hooks, with the restored init's pid.
            const s = { ...toState(ctx, rec), status: 'creating' as const, pid: n.pid };
            await runHooks('prestart', hooks.prestart, s);
            await runHooks('createRuntime', hooks.createRuntime, s);
            break;
          }
          case 'post-restore':
            pid = n.pid;
            rec.pid = pid;
            rec.pidStartTime = procStartTime(pid);
            st.save(rec);
            break;
          case 'orphan-pts-master': {
            if (!got.length) throw new KeelError('criu sent no pty master');
            if (opts.consoleSocket) {
              const { packetSys } = await import('./sys/packet.js');
              try { packetSys().sendFdTo(resolve(opts.consoleSocket), got[0]!, '/dev/ptmx'); } catch (err) {
                throw new KeelError(`--console-socket ${opts.consoleSocket}: ${(err as Error).message}`);
              }
            } else {
              master = libc().fcntl(got[0]!, 1030 /* F_DUPFD_CLOEXEC */, 3);
            }
            break;
          }
          default: break;
        }
      },
    });
    if (!(pid > 0)) throw new KeelError(`restore ${id}: criu did not name the restored process`);
    delete rec.creating;
    delete rec.creator;
    rec.created = new Date().toISOString();
    st.save(rec);
  } catch (err) {
    if (pid > 0) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      libc().waitpid(pid, new Int32Array(1), 0);
    }
    if (master >= 0) libc().close(master);
    try { await placed?.()?.destroy({ kill: true }); } catch { /* the error that got us here matters more */ }
    if (criuRoot) unmountRoot(sys, criuRoot);
    criuRoot = undefined;
    st.remove(id);
    throw err;
  } finally {
    for (const fd of fds) closeSync(fd);
    if (criuRoot) unmountRoot(sys, criuRoot);
  }
  if (opts.pidFile) writePidFile(resolve(opts.pidFile), pid);
  if (opts.detach) {
    if (master >= 0) libc().close(master);
    return 0;
  }
  const [{ relayConsole }, { waitForwarding }] = await Promise.all([import('./container.js'), import('./sys/libc.js')]);
  const relay = master >= 0 ? await relayConsole(master) : undefined;
  const code = await waitForwarding(pid);
  await relay?.close();
  const { remove } = await import('./container.js');
  await remove(ctx, id, { force: true });
  return code;
}

function procStartTime(pid: number): string {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch { return ''; }
}

function writePidFile(path: string, pid: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}`);
  try {
    writeFileSync(tmp, String(pid));
    renameSync(tmp, path);
  } catch (err) {
    throw new KeelError(`--pid-file ${path}: cannot write it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Unmounts and removes the criu roots of restores that were killed (their process is gone). */
function sweepCriuRoots(sys: import('./sys/host.js').HostSys, root: string): void {
  let names: string[] = [];
  try { names = readdirSync(root); } catch { return; }
  for (const name of names) {
    const m = /^\.criu-root~.*~(\d+)$/.exec(name);
    if (m && !existsSync(`/proc/${m[1]}`)) unmountRoot(sys, join(root, name));
  }
}

function unmountRoot(sys: import('./sys/host.js').HostSys, dir: string): void {
  try { sys.umount2(dir, MNT_DETACH); } catch { /* not mounted */ }
  try { rmdirSync(dir); } catch { /* still busy or gone */ }
}

/** criu's cgroup roots: the cgroups process `pid` (criu, placed in the container's cgroup) is in. */
function cgroupRoots(pid: number): { ctrl: string; path: string }[] {
  const out: { ctrl: string; path: string }[] = [];
  for (const line of readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (!m[1]) { out.push({ ctrl: '', path: m[2]! }); continue; }
    for (const c of m[1].split(',')) out.push({ ctrl: c, path: m[2]! });
  }
  return out;
}

/**
 * The external mounts of a restore (criu's ext_mnt, key → host source): bind mounts by their
 * destination, masked files' /dev/null, device nodes, and the container's cgroup mounts (without
 * a cgroup namespace of its own) by their mount point → the new container's cgroup on the host.
 */
function restoreExternalMounts(config: Spec, bundle: string): { key: string; val: string }[] {
  const out: { key: string; val: string }[] = [];
  const seen = new Set<string>();
  const add = (key: string, val: string) => { if (!seen.has(key)) { seen.add(key); out.push({ key, val }); } };
  for (const m of config.mounts ?? []) {
    if (isBind(m)) add(dest(m.destination), resolve(bundle, m.source ?? ''));
  }
  if (config.linux?.maskedPaths?.length) add('/dev/null', '/dev/null');
  for (const dev of config.linux?.devices ?? []) add(dest(dev.path), dest(dev.path));
  return out;
}

/**
 * The cgroup mounts' external keys → the new container's cgroup dirs, once criu (pid) is in them:
 * on a cgroup v1 (or hybrid) host one mount per hierarchy under the destination (named as the
 * host's mount point), on a v2 host the destination itself.
 */
function cgroupMountMap(config: Spec, pid: number, layout: import('./cgroups/layout.js').CgroupLayout): { key: string; val: string }[] {
  if (hasNs(config, 'cgroup')) return [];
  const cgMounts = (config.mounts ?? []).filter(isCgroupMount);
  if (!cgMounts.length) return [];
  const lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n');
  const pathFor = (match: (ctrls: string) => boolean): string | undefined => {
    for (const line of lines) {
      const m = /^\d+:([^:]*):(.*)$/.exec(line);
      if (m && match(m[1]!)) return m[2]!;
    }
    return undefined;
  };
  const within = (mountpoint: string, root: string, path: string) => join(mountpoint, root !== '/' && path.startsWith(root) ? path.slice(root.length) : path);
  const out: { key: string; val: string }[] = [];
  for (const m of cgMounts) {
    const d = dest(m.destination);
    if (layout.mode === 'v2') {
      const p = pathFor((c) => c === '');
      if (layout.unified && p !== undefined) out.push({ key: d, val: within(layout.unified.mountpoint, layout.unified.root, p) });
      continue;
    }
    const hierarchies = new Set(Object.values(layout.v1));
    for (const h of hierarchies) {
      const want = [...h.controllers].sort().join(',');
      const p = pathFor((c) => c.split(',').sort().join(',') === want);
      if (p !== undefined) out.push({ key: join(d, basename(h.mountpoint)), val: within(h.mountpoint, h.root, p) });
    }
    if (layout.unified && under(layout.unified.mountpoint, '/sys/fs/cgroup')) {
      const p = pathFor((c) => c === '');
      if (p !== undefined) out.push({ key: join(d, basename(layout.unified.mountpoint)), val: within(layout.unified.mountpoint, layout.unified.root, p) });
    }
  }
  return out;
}

/**
 * Makes the mount points config.json's mounts need in the rootfs, as create does (an imported
 * rootfs may lack them), except under tmpfs mounts (criu restores those with their contents) and
 * for cgroup mounts. Bind mounts are mounted for the moment, so mount points nested in them are
 * made in their sources (runc#2748); they are unmounted before criu runs.
 */
async function prepareMountpoints(config: Spec, rootfs: string, bundle: string): Promise<void> {
  const { loadFsSys, RESOLVE_IN_ROOT, O_PATH } = await import('./sys/fs.js');
  const { hostSys } = await import('./sys/host.js');
  const fs = await loadFsSys();
  const sys = hostSys();
  const mounts = config.mounts ?? [];
  const tmpfs = mounts.filter((m) => m.type === 'tmpfs').map((m) => dest(m.destination));
  const rootFd = openSync(rootfs, fsc.O_RDONLY | fsc.O_DIRECTORY);
  const mounted: string[] = [];
  try {
    for (const m of mounts) {
      if (isCgroupMount(m)) continue;
      const d = dest(m.destination);
      if (d === '/' || tmpfs.some((t) => d.startsWith(`${t}/`))) continue;
      let srcIsDir = true;
      if (isBind(m)) {
        try { srcIsDir = statSync(resolve(bundle, m.source ?? '')).isDirectory(); } catch { continue; /* criu will say */ }
      }
      // Each component made in its parent, opened inside the root (symlinks cannot lead out).
      const parts = d.split('/').filter(Boolean);
      let dirFd = fs.openat2(rootFd, '/', O_PATH | fsc.O_DIRECTORY, 0, RESOLVE_IN_ROOT);
      try {
        for (const [i, part] of parts.entries()) {
          const last = i === parts.length - 1;
          const here = `/proc/self/fd/${dirFd}/${part}`;
          let exists = true;
          try { lstatSync(here); } catch { exists = false; }
          if (!exists) {
            if (last && !srcIsDir) closeSync(openSync(here, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY | fsc.O_NOFOLLOW, 0o755));
            else mkdirSync(here, { mode: 0o755 });
          }
          if (last) break;
          const next = fs.openat2(dirFd, part, O_PATH | fsc.O_DIRECTORY, 0, RESOLVE_IN_ROOT);
          closeSync(dirFd);
          dirFd = next;
        }
        if (isBind(m)) {
          const target = fs.openat2(rootFd, d, O_PATH, 0, RESOLVE_IN_ROOT);
          try {
            sys.mount(resolve(bundle, m.source ?? ''), `/proc/self/fd/${target}`, null, MS.BIND | MS.REC, null);
            mounted.push(join(rootfs, d));
          } finally { closeSync(target); }
        }
      } catch (err) {
        throw new KeelError(`restore: cannot make the mount point ${d} in ${rootfs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      } finally {
        closeSync(dirFd);
      }
    }
  } finally {
    for (const p of mounted.reverse()) { try { sys.umount2(p, MNT_DETACH); } catch { /* already gone */ } }
    closeSync(rootFd);
  }
}
