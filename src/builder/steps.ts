// The file-system steps of a stage: WORKDIR, RUN, COPY and ADD. Each has a cache key (see
// build.ts); a hit reuses the recorded layer where it is, a miss runs the step on an overlay of the
// parent's snapshots and the overlay's upper directory becomes the layer's snapshot at once, its
// blob and diff ID being written in the background (`jobs`) before the step's cache record.
import * as fs from 'node:fs';
import { join, resolve as resolvePath, dirname } from 'node:path';
import { availableParallelism } from 'node:os';
import type { Mount } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import type {
  Instruction, BuildPlan, Stage, StageScope, RunInstruction, CopyInstruction, AddInstruction, MountSpec,
} from '../dockerfile/index.js';
import type { BuildStore } from './store.js';
import { BuildContext, matchComponent, hasMeta } from './context.js';
import type { Snapshots, LayerRef } from './snapshots.js';
import type { Platform, ImageResolver } from './images.js';
import type { Progress, StepProgress } from './progress.js';
import { prepareMounts, mountOverlay, unmount } from './mount.js';
import { resolveInRoot, lstatOrUndefined, components } from './rootpath.js';
import { copyEntry, copyChildren, ensureDir, fileTarget, isDirInRoot, writeFileEntry, type Owner, type CopyOptions } from './copy.js';
import { runStep, prepareMountPoints, cleanMountPoints, DEFAULT_PATH } from './run.js';
import { isTarArchive, openArchive } from './archives.js';
import { agentProxy, type SshAgents } from './ssh.js';
import { checkCanRun } from './emulation.js';
import { parseGitSource, resolveGitCommit, checkoutGit, type GitSource } from './git.js';
import { fetchImportedLayer, type CacheImports, type StepRecord } from './cache.js';
import {
  type BuildOptions, type ImageState, type History, type StepContext, StepError, stepError, keyOf, trace, readSourceDateEpoch, isoOf,
} from './types.js';

/** Where COPY --from / RUN --mount from= reads: `key` for the step's cache key, `open()` a read-only view. */
export interface Source {
  key: string;
  open: () => Promise<{ root: string; release: () => void }>;
  /** A named context directory (read like the build context). */
  context?: BuildContext;
}

function parseOctalMode(s: string, instr: Instruction): number {
  if (!/^[0-7]{3,4}$/.test(s)) throw stepError(instr, `--chmod=${s}: expected an octal mode such as 755 or 0644`);
  return parseInt(s, 8);
}

class Semaphore {
  private queue: (() => void)[] = [];
  constructor(private free: number) {}
  async use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((r) => this.queue.push(r));
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.free++;
    }
  }
}

/**
 * RUN containers at once in this process, whatever build or platform they belong to: each waits
 * for its container's exit on one of libuv's threads (4 unless UV_THREADPOOL_SIZE says more), and
 * the file system calls of the builds need the others.
 */
const runSlots = new Semaphore(Math.max(2, Math.min(availableParallelism(), 4)));

const locks = new Map<string, Promise<void>>();
async function withNamedLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const prev = locks.get(name) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => { release = r; });
  locks.set(name, prev.then(() => mine));
  await prev;
  try {
    return await fn();
  } finally {
    release();
    if (locks.get(name) === mine) locks.delete(name);
  }
}

/** Parses a --chown value in the destination root: Docker's rules (a missing group = the user string). */
function resolveChown(root: string | undefined, spec: string, instr: Instruction): Owner {
  const [u = '', g] = spec.split(':');
  const group = g === undefined || g === '' ? u : g;
  const num = (s: string) => (/^\d+$/.test(s) ? Number(s) : undefined);
  let uid = num(u);
  let gid = num(group);
  if (uid === undefined || gid === undefined) {
    const read = (file: string) => {
      if (!root) return '';
      try {
        const abs = resolveInRoot(root, file);
        return fs.readFileSync(abs, 'utf8');
      } catch {
        return '';
      }
    };
    if (uid === undefined) {
      const line = read('/etc/passwd').split('\n').find((l) => l.split(':')[0] === u);
      if (!line) throw stepError(instr, `--chown=${spec}: no user ${JSON.stringify(u)} in the image's /etc/passwd`);
      uid = Number(line.split(':')[2]);
    }
    if (gid === undefined) {
      const line = read('/etc/group').split('\n').find((l) => l.split(':')[0] === group);
      if (!line) {
        // A user name without a group: Docker looks up a group of the same name; failing that, the
        // user's primary group is the closest meaning.
        if (g === undefined || g === '') {
          const pw = read('/etc/passwd').split('\n').find((l) => l.split(':')[0] === u);
          if (pw) gid = Number(pw.split(':')[3]);
        }
        if (gid === undefined) throw stepError(instr, `--chown=${spec}: no group ${JSON.stringify(group)} in the image's /etc/group`);
      } else gid = Number(line.split(':')[2]);
    }
  }
  return { uid, gid };
}

/**
 * The file-system steps of a stage (WORKDIR, RUN, COPY, ADD): each looked up in the cache by its
 * key or executed on an overlay of its parent's snapshots, its upper directory becoming the layer.
 * The stage graph (graph.ts) extends this class with the stages and the config-only instructions.
 */
export abstract class StepExecutor {
  protected readonly contexts = new Map<string, BuildContext>();
  steps = 0;
  cached = 0;
  /** Layers being written in the background (and their cache records). */
  readonly jobs: Promise<unknown>[] = [];
  /** Stages whose layers go into the image kept in the store (the target and its FROM chain). */
  readonly blobStages = new Set<number>();
  readonly epoch: number | undefined;
  readonly buildTime: string;
  private mountsReady = false;

  constructor(
    readonly opts: BuildOptions,
    readonly store: BuildStore,
    readonly plan: BuildPlan,
    readonly ctx: BuildContext,
    readonly snaps: Snapshots,
    readonly progress: Progress,
    readonly workDir: string,
    readonly platform: Platform,
    readonly resolver: ImageResolver,
  ) {
    this.epoch = readSourceDateEpoch(opts);
    this.buildTime = this.epoch !== undefined ? isoOf(this.epoch) : new Date().toISOString();
  }

  /** Every step with a cache key this build met, by key (what --cache-to exports). */
  readonly records = new Map<string, StepRecord>();
  /** The ssh agents of `--ssh` (RUN --mount=type=ssh). */
  ssh: SshAgents | undefined;
  /** Caches given with --cache-from. */
  cacheImports: CacheImports | undefined;
  /** Steps found in an imported cache (local records are written for them once their layers are here). */
  readonly importedHits: { key: string; layer?: { diffID: string; snapshot: string }; created: string }[] = [];

  protected async mounts(): Promise<void> {
    if (!this.mountsReady) {
      await prepareMounts();
      this.mountsReady = true;
    }
  }

  /** Where COPY --from / RUN --mount from= reads (a stage, an image or a named context). */
  protected abstract sourceOf(instr: Instruction, from: string, allowIndex: boolean): Promise<Source>;

  protected history(state: ImageState, _instr: Instruction, createdBy: string, emptyLayer: boolean, created?: string): void {
    const h: History = { created: created ?? state.created ?? this.buildTime, created_by: createdBy, comment: 'keel-build' };
    if (emptyLayer) h.empty_layer = true;
    state.history.push(h);
  }

  /**
   * Looks up `key` in the cache; on a miss runs `exec` on an overlay of the state's layers (or,
   * with `link`, on an empty directory) and records the layer it made. Updates `state`.
   */
  protected async fsStep(
    sc: StepContext, state: ImageState, instr: Instruction, key: string, createdBy: string,
    exec: (root: string, step: StepProgress) => Promise<(() => void) | void>, opts: { link?: boolean } = {},
  ): Promise<void> {
    this.steps++;
    const step = this.progress.step(sc.position, instr.original);
    const parent = this.records.has(state.fsKey) ? state.fsKey : undefined;
    try {
      const record = this.opts.noCache ? undefined : this.store.cacheRecord(key);
      const local = record && (!record.layer || this.usable(record.layer)) ? record : undefined;
      const imported = local || this.opts.noCache ? undefined : this.cacheImports?.lookup(key);
      if (local || imported) {
        this.cached++;
        let layer = local?.layer;
        if (imported) {
          // From an imported cache: its blob is fetched when something needs the layer.
          const l = imported.layer;
          layer = l ? { diffID: l.diffID, snapshot: this.store.newSnapshotId(key) } : undefined;
          if (l) this.store.addFetcher(l.diffID, () => fetchImportedLayer(this.store, l));
          this.importedHits.push({ key, layer, created: imported.created });
        }
        this.applyLayer(state, layer, key);
        const created = this.epoch !== undefined ? this.buildTime : (local ?? imported)!.created;
        this.history(state, instr, createdBy, !layer, created);
        state.created = created;
        this.records.set(key, { parent, layer: layer && { diffID: layer.diffID }, created, stage: sc.stage.index });
        step.cached();
        return;
      }
      await this.mounts();
      trace(`${instr.original.slice(0, 40)}: start`);
      const dir = this.snaps.tempDir('step');
      const upper = join(dir, 'upper');
      const work = join(dir, 'work');
      const merged = join(dir, 'merged');
      fs.mkdirSync(upper, { mode: 0o755 });
      let after: (() => void) | void;
      if (opts.link) {
        after = await exec(upper, step);
      } else {
        fs.mkdirSync(work);
        fs.mkdirSync(merged);
        const lowers = await this.snaps.lowers(state.layers);
        mountOverlay(lowers.length ? lowers : [this.store.emptyDir], merged, { upper, work }, `${instr.file}:${instr.startLine}: overlay`);
        try {
          after = await exec(merged, step);
        } finally {
          unmount(merged);
        }
      }
      after?.();
      trace(`${instr.original.slice(0, 40)}: exec`);
      const created = this.epoch !== undefined ? this.buildTime : new Date().toISOString();
      const below = state.layers[state.layers.length - 1];
      if (fs.readdirSync(upper).length > 0) {
        // The upper dir becomes the layer's snapshot now (the next step stacks on it at once);
        // the layer blob and its diff ID are made meanwhile, and the step is recorded in the cache
        // once they are there (and its parent's are: records never point at unfinished layers).
        const id = this.store.newSnapshotId(key);
        const path = await this.store.placeSnapshot(id, upper);
        this.snaps.pending.add(id);
        const job = this.layerJob(instr, sc.stage, id, path, key, created, below);
        state.layers = [...state.layers, { id, diffID: job }];
        state.fsKey = key;
        this.records.set(key, { parent, layer: { diffID: job }, created, stage: sc.stage.index });
      } else {
        this.records.set(key, { parent, created, stage: sc.stage.index });
        const job = (async () => {
          if (below) await below.diffID;
          this.store.putCacheRecord(key, { v: 2, created });
        })();
        this.jobs.push(job);
        job.catch(() => {});
        state.fsKey = key;
      }
      fs.rmSync(dir, { recursive: true, force: true });
      this.history(state, instr, createdBy, state.layers[state.layers.length - 1] === below, created);
      state.created = created;
      step.done();
    } catch (err) {
      step.fail((err as Error).message.split('\n')[0]!);
      if (err instanceof StepError) throw err;
      if (err instanceof KeelError) throw stepError(instr, err.message);
      throw stepError(instr, `${(err as Error).message}`);
    }
  }

  /**
   * Makes the layer of a step's snapshot and then records the step; resolves to the diff ID. The
   * uncompressed blob is stored only for stages whose layers end up in the store's image; for the
   * others the tar is only hashed (a blob is made from the snapshot if ever needed).
   */
  protected layerJob(instr: Instruction, stage: Stage, id: string, path: string, key: string, created: string, parent: LayerRef | undefined): Promise<string> {
    const job = (async () => {
      const { writeLayer, changesFromUpper } = await import('../layers/index.js');
      const changes = changesFromUpper(path, { sourceDateEpoch: this.epoch ?? Infinity });
      let diffID: string;
      const source = { snapshot: id, epoch: this.epoch ?? null };
      if (this.blobStages.has(stage.index)) {
        const layer = await writeLayer(await this.store.layout(), changes, { compression: 'none' });
        diffID = layer.diffID;
        this.store.addLayerBlobs(diffID, { none: { mediaType: layer.descriptor.mediaType, digest: layer.descriptor.digest, size: layer.descriptor.size } }, source);
      } else {
        diffID = await hashLayer(changes);
        this.store.addLayerBlobs(diffID, {}, source);
      }
      this.store.recordSnapshot(id, diffID);
      this.snaps.pending.delete(id);
      trace(`${instr.original.slice(0, 40)}: layer`);
      if (parent) await parent.diffID;
      this.store.putCacheRecord(key, { v: 2, layer: { diffID, snapshot: id }, created });
      return diffID;
    })();
    const wrapped = job.catch((err: unknown) => {
      throw stepError(instr, `writing its layer: ${(err as Error).message}`);
    });
    this.jobs.push(wrapped);
    wrapped.catch(() => {});
    return wrapped;
  }

  /** Whether a cached layer can be used: its snapshot exists or its blob can make one. */
  protected usable(layer: { diffID: string; snapshot: string }): boolean {
    if (this.snaps.has({ id: layer.snapshot, diffID: layer.diffID })) return true;
    const rec = this.store.layerRecord(layer.diffID);
    return !!rec && (Object.keys(rec.blobs).length > 0 || (!!rec.source && this.store.snapshotComplete(rec.source.snapshot)));
  }

  protected applyLayer(state: ImageState, layer: { diffID: string; snapshot: string } | undefined, key: string): void {
    if (layer) state.layers = [...state.layers, { id: layer.snapshot, diffID: layer.diffID }];
    state.fsKey = key;
  }

  protected async workdir(sc: StepContext, state: ImageState, instr: Extract<Instruction, { kind: 'WORKDIR' }>): Promise<void> {
    const { resolveWorkdir } = await import('../dockerfile/index.js');
    const path = resolveWorkdir(state.config.WorkingDir || '/', instr.path);
    state.config.WorkingDir = path;
    const user = state.config.User ?? '';
    const key = keyOf(['WORKDIR', state.fsKey, path, user]);
    await this.fsStep(sc, state, instr, key, `WORKDIR ${path}`, async (root) => {
      if (isDirInRoot(root, path)) return;
      let owner: Owner = { uid: 0, gid: 0 };
      if (user) {
        const { resolveUser } = await import('../layers/index.js');
        const u = await resolveUser(root, user);
        owner = { uid: u.uid, gid: u.gid };
      }
      ensureDir(root, path, owner);
    });
  }

  protected async runInstruction(sc: StepContext, state: ImageState, scope: StageScope, instr: RunInstruction): Promise<void> {
    const { runCommand } = await import('../dockerfile/index.js');
    const plan = runCommand(instr, state.shell);
    const env = scope.runEnv();
    if (!env.some((e) => e.startsWith('PATH='))) env.unshift(DEFAULT_PATH);
    const user = state.config.User ?? '';
    const cwd = state.config.WorkingDir || '/';
    const network: 'host' | 'none' = instr.network === 'none' ? 'none' : 'host';
    // ssh mounts get /run/buildkit/ssh_agent.N unless they say where, and the first one is
    // SSH_AUTH_SOCK (unless the environment has it), as with BuildKit.
    const mountSpecs = sshTargets(instr.mountSpecs);
    const firstSsh = mountSpecs.find((m) => m.type === 'ssh');
    if (firstSsh && !env.some((e) => e.startsWith('SSH_AUTH_SOCK='))) env.push(`SSH_AUTH_SOCK=${firstSsh.target}`);
    const mountKeys: unknown[] = [];
    for (const m of mountSpecs) mountKeys.push(await this.mountKey(instr, m));
    const key = keyOf(['RUN', state.fsKey, plan.args, plan.inlineFile ?? null, env, user, cwd, network, instr.security ?? 'sandbox', mountKeys]);
    const createdBy = `RUN ${plan.args.join(' ')}`;
    await this.fsStep(sc, state, instr, key, createdBy, async (root, step) => {
      // Another architecture's step needs an emulator (binfmt_misc with the F flag).
      try {
        checkCanRun(state.platform);
      } catch (err) {
        throw stepError(instr, (err as Error).message);
      }
      const { resolveUser } = await import('../layers/index.js');
      let u;
      try {
        u = await resolveUser(root, user);
      } catch (err) {
        throw stepError(instr, `USER ${user}: ${(err as Error).message}`);
      }
      const releases: (() => void)[] = [];
      try {
        const mounts: Mount[] = [];
        for (const m of mountSpecs) mounts.push(...(await this.prepareMount(instr, m, releases)));
        if (plan.inlineFile) {
          const f = plan.inlineFile;
          const dir = this.snaps.tempDir('heredoc');
          const file = join(dir, f.name);
          fs.writeFileSync(file, f.data, { mode: f.mode });
          fs.chmodSync(file, f.mode);
          mounts.push({ destination: `${f.dir.replace(/\/$/, '')}/${f.name}`, type: 'bind', source: file, options: ['rbind', 'ro'] });
        }
        // The working directory must exist (it becomes part of the layer, as with BuildKit).
        if (!isDirInRoot(root, cwd)) ensureDir(root, cwd, { uid: 0, gid: 0 });
        const points = [{ path: '/proc', file: false }, { path: '/dev', file: false }, { path: '/sys', file: false }];
        if (network === 'host') {
          if (fs.existsSync('/etc/resolv.conf')) points.push({ path: '/etc/resolv.conf', file: true });
          if (fs.existsSync('/etc/hosts')) points.push({ path: '/etc/hosts', file: true });
        }
        for (const m of mounts) {
          const file = m.type === 'bind' && !!m.source && !fs.statSync(m.source).isDirectory();
          points.push({ path: m.destination, file });
        }
        const mountPoints = prepareMountPoints(root, points);
        const bundleDir = this.snaps.tempDir('bundle');
        const result = await runSlots.use(() => runStep({
          rootfs: root, bundleDir, args: plan.args, env, cwd, user: { uid: u.uid, gid: u.gid, additionalGids: supplementaryGroups(u) },
          network, mounts, insecure: instr.security === 'insecure',
        }, { runtimeRoot: this.store.runtimeRoot(), runtimePath: this.opts.runtime, onLine: (l) => step.log(l) }));
        if (result.code !== 0) {
          const tail = result.tail.filter((l) => l.trim() !== '').slice(-6);
          const err = stepError(instr, `exit code ${result.code}${tail.length ? `; last output: ${tail.join(' | ')}` : ''}`);
          throw err;
        }
        const upper = join(dirname(root), 'upper');
        const lowers = await this.snaps.lowers(state.layers);
        return () => cleanMountPoints(upper, lowers, mountPoints);
      } finally {
        for (const r of releases.reverse()) {
          try { r(); } catch { /* best effort: unmountAll runs at the end */ }
        }
      }
    });
  }

  /** What a RUN --mount contributes to the step's cache key. */
  protected async mountKey(instr: RunInstruction, m: MountSpec): Promise<unknown> {
    switch (m.type) {
      case 'bind': {
        if (m.from) {
          const src = await this.sourceOf(instr, m.from, false);
          return ['bind', m.target, m.source ?? '/', m.readonly, src.key];
        }
        const e = this.ctx.entry(normalizeRel(m.source ?? '.'));
        if (!e) throw stepError(instr, `--mount=type=bind,source=${m.source ?? '.'}: not in the build context`);
        return ['bind', m.target, m.source ?? '.', m.readonly, this.ctx.treeDigest(e)];
      }
      case 'cache':
        return ['cache', m.target, m.id ?? m.target, m.sharing ?? 'shared', m.readonly, m.uid ?? 0, m.gid ?? 0, m.mode ?? 0o755];
      case 'tmpfs':
        return ['tmpfs', m.target, m.size ?? 0];
      case 'secret':
        return ['secret', m.id ?? null, m.target ?? null, m.env ?? null, m.required ?? false];
      case 'ssh':
        return ['ssh', m.id ?? 'default', m.target, m.required ?? false, m.mode ?? 0o600, m.uid ?? 0, m.gid ?? 0];
    }
    return null;
  }

  protected async prepareMount(instr: RunInstruction, m: MountSpec, releases: (() => void)[]): Promise<Mount[]> {
    const target = m.target;
    switch (m.type) {
      case 'bind': {
        if (!target) throw stepError(instr, '--mount=type=bind needs a target');
        let source: string;
        if (m.from) {
          const src = await this.sourceOf(instr, m.from, false);
          const view = await src.open();
          releases.push(view.release);
          source = resolveInRoot(view.root, m.source ?? '/');
        } else {
          source = resolveInRoot(this.ctx.dir, m.source ?? '.');
        }
        if (!fs.existsSync(source)) throw stepError(instr, `--mount=type=bind,source=${m.source ?? '.'}: no such file or directory`);
        if (!m.readonly && fs.statSync(source).isDirectory()) {
          // Writes to a read-write bind are thrown away: an overlay with a scratch upper dir.
          const dir = this.snaps.tempDir('rwbind');
          for (const d of ['upper', 'work', 'merged']) fs.mkdirSync(join(dir, d));
          mountOverlay([source], join(dir, 'merged'), { upper: join(dir, 'upper'), work: join(dir, 'work') }, 'read-write bind');
          releases.push(() => unmount(join(dir, 'merged')));
          source = join(dir, 'merged');
        }
        return [{ destination: target, type: 'bind', source, options: ['rbind', m.readonly ? 'ro' : 'rw'] }];
      }
      case 'cache': {
        if (!target) throw stepError(instr, '--mount=type=cache needs a target');
        const id = m.id ?? target;
        const dir = this.store.cacheMountDir(id);
        const marker = join(dir, '..', `${dir.slice(dir.lastIndexOf('/') + 1)}.init`);
        if (!fs.existsSync(marker)) {
          fs.chownSync(dir, m.uid ?? 0, m.gid ?? 0);
          fs.chmodSync(dir, m.mode ?? 0o755);
          fs.writeFileSync(marker, '');
        }
        if (m.sharing === 'locked') {
          let release!: () => void;
          const held = new Promise<void>((r) => { release = r; });
          const acquired = new Promise<void>((r) => { void withNamedLock(`cache:${id}`, async () => { r(); await held; }); });
          await acquired;
          releases.push(() => release());
        }
        return [{ destination: target, type: 'bind', source: dir, options: ['rbind', m.readonly ? 'ro' : 'rw'] }];
      }
      case 'tmpfs': {
        if (!target) throw stepError(instr, '--mount=type=tmpfs needs a target');
        const options = ['nosuid', 'nodev'];
        if (m.size) options.push(`size=${m.size}`);
        return [{ destination: target, type: 'tmpfs', source: 'tmpfs', options }];
      }
      case 'secret': {
        const id = m.id ?? (target ? target.slice(target.lastIndexOf('/') + 1) : undefined);
        if (!id) throw stepError(instr, '--mount=type=secret needs an id or a target');
        const s = this.opts.secrets?.[id];
        let file: string | undefined;
        if (s?.src) file = resolvePath(s.src);
        else if (s?.env !== undefined || process.env[id] !== undefined) {
          const value = process.env[s?.env ?? id];
          if (value !== undefined) {
            const dir = this.snaps.tempDir('secret');
            file = join(dir, 'secret');
            fs.writeFileSync(file, value, { mode: 0o400 });
          }
        }
        if (!file || !fs.existsSync(file)) {
          if (m.required) throw stepError(instr, `secret ${JSON.stringify(id)} is required but was not given (--secret id=${id},src=FILE)`);
          return [];
        }
        const out: Mount[] = [];
        if (m.env) {
          throw stepError(instr, `--mount=type=secret,env=${m.env}: secrets as environment variables are not supported; mount it as a file`);
        }
        out.push({ destination: target ?? `/run/secrets/${id}`, type: 'bind', source: file, options: ['rbind', 'ro'] });
        return out;
      }
      case 'ssh': {
        const id = m.id ?? 'default';
        if (!this.ssh?.has(id)) {
          if (m.required) throw stepError(instr, `ssh agent ${JSON.stringify(id)} is required but was not given (--ssh ${id}[=SOCKET|KEY])`);
          return [];
        }
        const agent = await this.ssh.socket(id);
        const proxy = join(this.snaps.tempDir('ssh'), 'agent.sock');
        const close = await agentProxy(agent, proxy, { uid: m.uid ?? 0, gid: m.gid ?? 0, mode: m.mode ?? 0o600 });
        releases.push(() => { void close(); });
        return [{ destination: m.target!, type: 'bind', source: proxy, options: ['rbind', 'rw'] }];
      }
      default:
        throw stepError(instr, `--mount=type=${m.type} is not supported by keel-build`);
    }
  }

  /**
   * Where COPY --from / RUN --mount from= reads: another stage, an image, or a named context.
   * `key` is what the step's cache key needs; `open()` mounts a read-only view.
   */
  protected async copy(sc: StepContext, state: ImageState, instr: CopyInstruction | AddInstruction): Promise<void> {
    const isAdd = instr.kind === 'ADD';
    const { resolveWorkdir, DockerIgnore } = await import('../dockerfile/index.js');
    const workdir = state.config.WorkingDir || '/';
    const destRaw = instr.dest;
    if (destRaw === '') throw stepError(instr, 'no destination');
    const destPath = destRaw.startsWith('/') ? resolveWorkdir('/', destRaw) : resolveWorkdir(workdir, destRaw);
    const destSlash = destRaw.endsWith('/') || destRaw === '.' || destRaw.endsWith('/.') || destRaw === '..' || destRaw.endsWith('/..');
    const nSources = instr.sources.length + instr.contents.length;
    if (nSources > 1 && !destSlash) {
      throw stepError(instr, `When using ${instr.kind} with more than one source file, the destination must be a directory and end with a /`);
    }
    const chmod = instr.chmod ? parseOctalMode(instr.chmod, instr) : undefined;
    const exclude = instr.exclude.length ? new DockerIgnore(instr.exclude) : undefined;
    const parents = instr.kind === 'COPY' && instr.parents;
    const from = instr.kind === 'COPY' ? instr.from : undefined;
    const keyParts: unknown[] = [instr.kind, state.fsKey, destPath, destSlash, instr.chown ?? null, chmod ?? null, instr.link, parents, instr.exclude];

    // What the step reads, and its part of the cache key.
    type Item =
      | { kind: 'ctx'; ctx: BuildContext; src: string }
      | { kind: 'view'; src: string }
      | { kind: 'inline'; name: string; data: string }
      | { kind: 'url'; url: string; file: string; name: string; mtime: Date }
      | { kind: 'git'; git: GitSource; commit: string };
    const items: Item[] = [];
    let source: Source | undefined;
    if (from !== undefined) {
      source = await this.sourceOf(instr, from, true);
      keyParts.push(source.key);
    }
    for (const c of instr.contents) {
      items.push({ kind: 'inline', name: c.path, data: c.data });
      keyParts.push(['inline', c.path, c.data]);
    }
    for (const src of instr.sources) {
      const git = isAdd ? parseGitSource(src) : undefined;
      if (git) {
        let commit: string;
        try {
          commit = await resolveGitCommit(git, await this.gitEnv());
        } catch (err) {
          throw stepError(instr, (err as Error).message);
        }
        items.push({ kind: 'git', git, commit });
        keyParts.push(['git', git.url, commit, git.subdir ?? '', (instr as AddInstruction).keepGitDir ?? false]);
        continue;
      }
      if (isAdd && /^https?:\/\//i.test(src)) {
        const dl = await this.download(instr as AddInstruction, src);
        items.push({ kind: 'url', url: src, file: dl.file, name: dl.name, mtime: dl.mtime });
        keyParts.push(['url', src, dl.digest]);
        continue;
      }
      const ctx = source?.context ?? (source ? undefined : this.ctx);
      if (ctx) {
        const matches = ctx.match(src);
        if (matches.length === 0) {
          throw stepError(instr, `${JSON.stringify(src)}: no such file or directory in the ${ctx === this.ctx ? 'build context' : `context ${ctx.name}`}${ctx.ignore.patterns.length ? ' (or excluded by .dockerignore)' : ''}`);
        }
        const excl = exclude ? (r: string) => exclude.ignores(r) : undefined;
        keyParts.push(['ctx', src, matches.map((m) => [m.rel, ctx.treeDigest(m, excl)])]);
        items.push({ kind: 'ctx', ctx, src });
      } else {
        keyParts.push(['view', src]);
        items.push({ kind: 'view', src });
      }
    }
    const key = keyOf(keyParts);
    const createdBy = `${instr.kind} ${[...instr.sources, ...instr.contents.map((c) => `<<${c.path}`)].join(' ')} ${destRaw}`;

    await this.fsStep(sc, state, instr, key, createdBy, async (root) => {
      const releases: (() => void)[] = [];
      try {
        // --chown names are resolved in the image being built (for --link, in its parent's view).
        let owner: Owner | undefined;
        if (instr.chown) {
          let passwdRoot = root;
          if (instr.link && !/^\d+(:\d+)?$/.test(instr.chown)) {
            const v = await this.snaps.view(state.layers);
            releases.push(v.release);
            passwdRoot = v.root;
          }
          owner = resolveChown(passwdRoot, instr.chown, instr);
        }
        const rootOwner: Owner = owner ?? { uid: 0, gid: 0 };
        const destIsDir = destSlash || (!instr.link && isDirInRoot(root, destPath));
        let view: { root: string; release: () => void } | undefined;
        const copyOpts = (extra: Partial<CopyOptions>): CopyOptions => ({ owner, chmod, ...extra });

        const placeFile = (name: string): string => (destIsDir || nSources > 1 ? fileTarget(root, `${destPath}/${name}`, rootOwner) : fileTarget(root, destPath, rootOwner));
        for (const item of items) {
          if (item.kind === 'inline') {
            writeFileEntry(placeFile(item.name), item.data, chmod ?? 0o644, rootOwner, new Date(this.epoch !== undefined ? this.epoch * 1000 : Date.now()));
            continue;
          }
          if (item.kind === 'git') {
            const dir = this.snaps.tempDir('git');
            await checkoutGit(item.git, item.commit, dir, await this.gitEnv());
            let from = dir;
            if (item.git.subdir) {
              from = resolveInRoot(dir, item.git.subdir);
              if (!lstatOrUndefined(from)?.isDirectory()) throw stepError(instr, `${item.git.url}: no directory ${item.git.subdir} at ${item.commit}`);
            }
            const keep = (instr as AddInstruction).keepGitDir ?? false;
            const isGitDir = (r: string) => !keep && (r === '.git' || r.startsWith('.git/'));
            copyChildren(from, ensureDir(root, destPath, rootOwner), { owner: owner ?? { uid: 0, gid: 0 }, chmod, exclude: from === dir ? isGitDir : undefined });
            fs.rmSync(dir, { recursive: true, force: true });
            continue;
          }
          if (item.kind === 'url') {
            const target = destSlash ? fileTarget(root, `${destPath}/${item.name}`, rootOwner) : fileTarget(root, destPath, rootOwner);
            const rm = lstatOrUndefined(target);
            if (rm?.isDirectory()) throw stepError(instr, `${destPath} is a directory`);
            if (rm) fs.unlinkSync(target);
            fs.copyFileSync(item.file, target);
            fs.lchownSync(target, rootOwner.uid, rootOwner.gid);
            fs.chmodSync(target, chmod ?? 0o600);
            fs.utimesSync(target, item.mtime, item.mtime);
            continue;
          }
          if (item.kind === 'ctx') {
            const ctx = item.ctx;
            const matches = ctx.match(item.src);
            const wildcard = hasMeta(item.src);
            for (const m of matches) {
              const excl = (r: string) => ctx.ignored(m.rel === '' ? r : `${m.rel}/${r}`) || !!exclude?.ignores(r);
              const rel = parents ? parentsPath(item.src, m.rel) : undefined;
              await this.place(root, m.abs, m.st, rel, destPath, destIsDir || wildcard || nSources > 1, copyOpts({ owner: owner ?? { uid: 0, gid: 0 }, exclude: excl }), rootOwner, isAdd && instr.kind === 'ADD' && (instr as AddInstruction).unpack !== false, instr, owner);
            }
            continue;
          }
          // From another stage or image.
          view ??= await source!.open();
          if (!releases.includes(view.release)) releases.push(view.release);
          const matches = matchInRoot(view.root, item.src);
          if (matches.length === 0) throw stepError(instr, `${JSON.stringify(item.src)}: no such file or directory in ${from}`);
          const wildcard = hasMeta(item.src);
          for (const m of matches) {
            const rel = parents ? m.rel : undefined;
            await this.place(root, m.abs, m.st, rel, destPath, destIsDir || wildcard || nSources > 1, copyOpts({ exclude: exclude ? (r) => exclude.ignores(r) : undefined }), rootOwner, false, instr);
          }
        }
      } finally {
        for (const r of releases.reverse()) r();
      }
    }, { link: instr.link });
  }

  /** Copies one matched source to its destination (file → dest or dest/name; directory → into dest). */
  protected async place(root: string, abs: string, st: fs.Stats, parentsRel: string | undefined, destPath: string, destIsDir: boolean, opts: CopyOptions, dirOwner: Owner, unpack: boolean, instr: Instruction, archiveOwner?: Owner): Promise<void> {
    const name = abs.slice(abs.lastIndexOf('/') + 1);
    let target = destPath;
    if (parentsRel !== undefined) target = `${destPath}/${parentsRel}`;
    if (st.isDirectory()) {
      const parentDir = parentsRel !== undefined ? target : destPath;
      const parts = components(parentDir);
      ensureDir(root, `/${parts.slice(0, -1).join('/')}`, dirOwner);
      const destAbs = parts.length === 0 ? root : resolveInRoot(root, `/${parts.join('/')}`);
      const exists = lstatOrUndefined(destAbs);
      if (exists?.isDirectory()) {
        copyChildren(abs, destAbs, opts);
      } else {
        copyEntry(abs, st, destAbs, opts);
      }
      return;
    }
    if (unpack && st.isFile() && (await isTarArchive(abs))) {
      // Extracted aside first (refusing what a layer may not hold), then copied in: the archive's
      // owners and modes unless --chown / --chmod say otherwise.
      const dirAbs = ensureDir(root, parentsRel !== undefined ? dirname(target) : destPath, dirOwner);
      const { applyLayer } = await import('../layers/index.js');
      const tmp = this.snaps.tempDir('extract');
      try {
        await applyLayer(tmp, await openArchive(abs), { what: `archive ${name}` });
      } catch (err) {
        throw stepError(instr, `extracting ${name}: ${(err as Error).message}`);
      }
      copyChildren(tmp, dirAbs, { owner: archiveOwner, chmod: opts.chmod });
      fs.rmSync(tmp, { recursive: true, force: true });
      return;
    }
    const fileDest = parentsRel !== undefined ? target : destIsDir ? `${destPath}/${name}` : destPath;
    const t = fileTarget(root, fileDest, dirOwner);
    const existing = lstatOrUndefined(t);
    if (existing?.isDirectory() && !st.isDirectory()) {
      copyEntry(abs, st, `${t}/${name}`, opts);
      return;
    }
    copyEntry(abs, st, t, opts);
  }

  /** The environment git runs in: ssh remotes use the `--ssh default` agent when given. */
  protected async gitEnv(): Promise<NodeJS.ProcessEnv> {
    if (!this.ssh?.has('default')) return {};
    return { SSH_AUTH_SOCK: await this.ssh.socket('default'), GIT_SSH_COMMAND: 'ssh -o BatchMode=yes' };
  }

  protected async download(instr: AddInstruction, url: string): Promise<{ file: string; name: string; digest: string; mtime: Date }> {
    const { download } = await import('./fetch.js');
    const dir = this.snaps.tempDir('download');
    let r;
    try {
      r = await download(url, join(dir, 'data'));
    } catch (err) {
      throw stepError(instr, `${url}: ${(err as Error).message}`);
    }
    if (instr.checksum && instr.checksum !== r.digest) {
      throw stepError(instr, `${url}: checksum mismatch: expected ${instr.checksum}, got ${r.digest}`);
    }
    let name = decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).pop() ?? '') || '__unnamed__';
    if (name.includes('/')) name = '__unnamed__';
    return { file: r.file, name, digest: r.digest, mtime: r.lastModified ?? new Date(this.epoch !== undefined ? this.epoch * 1000 : 0) };
  }

  // ---- the image ----

}

/** The diff ID of the layer a change list makes, without storing it (the same tar writeLayer writes). */
async function hashLayer(changes: AsyncIterable<import('../layers/index.js').LayerChange>): Promise<string> {
  const { TarWriter, Hasher } = await import('../layers/index.js');
  const hash = new Hasher('sha256');
  const tw = new TarWriter({ write: (c) => hash.update(c) });
  for await (const ch of changes) {
    const h = ch.header;
    if (h.type === 'file' && h.size > 0) {
      const fd = fs.openSync(ch.source!, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      try {
        if (fs.fstatSync(fd).size !== h.size) throw new KeelError(`${ch.source}: changed while its layer was being made`);
        await tw.addFromFd(h, fd, ch.source!);
      } finally {
        fs.closeSync(fd);
      }
    } else {
      await tw.add(h);
    }
  }
  await tw.finish();
  return hash.digest();
}

/** RUN --mount specs with the default targets of ssh mounts filled in (/run/buildkit/ssh_agent.N). */
function sshTargets(specs: MountSpec[]): MountSpec[] {
  let n = 0;
  return specs.map((m) => (m.type === 'ssh' ? { ...m, target: m.target ?? `/run/buildkit/ssh_agent.${n++}` } : m));
}

/**
 * A RUN process's supplementary groups as BuildKit gives them since its fix for CVE-2023-25173:
 * the primary group first, then the user's groups from the image's /etc/group (none when USER
 * names the group), so dropping a supplementary group never lifts a restriction of the primary one.
 */
function supplementaryGroups(u: { gid: number; additionalGids: number[] }): number[] {
  return [u.gid, ...u.additionalGids.filter((g) => g !== u.gid)];
}

/** The path of a --parents source under the destination: relative to the context, or to a `/./` pivot. */
function parentsPath(pattern: string, rel: string): string {
  const pivot = pattern.indexOf('/./');
  if (pivot < 0) return rel;
  const prefix = components(pattern.slice(0, pivot)).join('/');
  return prefix && rel.startsWith(`${prefix}/`) ? rel.slice(prefix.length + 1) : rel;
}

function normalizeRel(p: string): string {
  return components(p).filter((c) => c !== '..').join('/');
}

/** Sources in a mounted image view: a path (symlinks followed in the root) or wildcard matches. */
function matchInRoot(root: string, pattern: string): { abs: string; rel: string; st: fs.Stats }[] {
  const parts = components(pattern);
  if (!parts.some(hasMeta)) {
    let abs: string;
    try { abs = resolveInRoot(root, `/${parts.join('/')}`); } catch { return []; }
    const st = lstatOrUndefined(abs);
    return st ? [{ abs, rel: parts.join('/'), st }] : [];
  }
  let level = [{ abs: root, rel: '' }];
  for (const part of parts) {
    const next: { abs: string; rel: string }[] = [];
    for (const d of level) {
      if (!hasMeta(part)) {
        const lit = part.replace(/\\(.)/g, '$1');
        let abs: string;
        try { abs = resolveInRoot(root, `/${d.rel ? `${d.rel}/` : ''}${lit}`); } catch { continue; }
        if (lstatOrUndefined(abs)) next.push({ abs, rel: d.rel ? `${d.rel}/${lit}` : lit });
        continue;
      }
      let names: string[];
      try { names = fs.readdirSync(d.abs).sort(); } catch { continue; }
      for (const n of names) if (matchComponent(part, n)) next.push({ abs: `${d.abs}/${n}`, rel: d.rel ? `${d.rel}/${n}` : n });
    }
    level = next;
  }
  return level.map((l) => ({ ...l, st: fs.lstatSync(l.abs) }));
}

