// The build: Dockerfile → stage graph → steps, each looked up in the cache or executed, → image.
//
// Stages run concurrently: each stage is a promise that waits for what it needs (its base stage,
// the stages COPY --from and RUN --mount from= name) when it needs it; stages the target does not
// need are never started. Within a stage, instructions run in order on an `ImageState` (config,
// history, layers) and the stage's variable scope (src/dockerfile).
//
// Cache keys. A step that changes the file system has a key: sha256 over the key of the file
// system it starts from (the previous such step, or the base image's manifest digest, or
// "scratch"), the instruction with its arguments expanded, and what else reaches the result: for
// RUN the command, environment, user, working directory, network and mounts (bind sources by
// content); for COPY/ADD the content digests of the files read (context, stage chain ID, image
// digest, download checksum), destination, owner and mode flags. Steps that only change the
// config (ENV, LABEL, CMD ...) have no key of their own: they cost nothing to replay. A hit reuses
// the layer recorded under the key: its snapshot and blob stay where they are.
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve as resolvePath, dirname } from 'node:path';
import { availableParallelism } from 'node:os';
import type { ImageConfig, ContentDescriptor, Mount } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import type {
  Instruction, BuildPlan, Stage, StageScope, RunInstruction, CopyInstruction, AddInstruction, DockerIgnore,
  HealthcheckInstruction, MountSpec,
} from '../dockerfile/index.js';
import { BuildStore, type BlobRef, type CompressionName } from './store.js';
import { BuildContext, checkContextDir, matchComponent, hasMeta } from './context.js';
import { Snapshots, type LayerRef } from './snapshots.js';
import { resolveImage, parsePlatform, parseLayoutSource, imageFromLayout, type ResolvedImage, type Platform, type ImageResolver } from './images.js';
import { createProgress, type Progress, type ProgressMode, type StepProgress } from './progress.js';
import { prepareMounts, mountOverlay, unmount, unmountAll, bindMount } from './mount.js';
import { resolveInRoot, lstatOrUndefined, components } from './rootpath.js';
import { copyEntry, copyChildren, ensureDir, fileTarget, isDirInRoot, writeFileEntry, type Owner, type CopyOptions } from './copy.js';
import { runStep, prepareMountPoints, cleanMountPoints, DEFAULT_PATH } from './run.js';

export type OutputSpec =
  | { type: 'store' }
  | { type: 'oci'; dest: string }
  | { type: 'oci-archive'; dest: string }
  | { type: 'registry' };

export interface SecretSource {
  /** A file holding the secret. */
  src?: string;
  /** An environment variable of the builder holding it. */
  env?: string;
}

export interface BuildOptions {
  /** The build context directory. */
  context: string;
  /** Dockerfile path (default CONTEXT/Dockerfile). */
  dockerfile?: string;
  /** Dockerfile text (read from stdin by the CLI); `dockerfile` then only names it in messages. */
  dockerfileText?: string;
  /** Names to tag the image with (NAME[:TAG]). */
  tags?: string[];
  buildArgs?: Record<string, string>;
  target?: string;
  noCache?: boolean;
  /** Where the image goes; default the store (tagged with `tags`). */
  outputs?: OutputSpec[];
  /** Compression of layers exported (default gzip). The store keeps built layers uncompressed. */
  compression?: 'gzip' | 'zstd';
  /** An OCI runtime CLI for RUN steps instead of keel's runtime in-process. */
  runtime?: string;
  /** Target platform (default this machine's). */
  platform?: string;
  /** Store directory (default /var/lib/keel for root, else under XDG_DATA_HOME). */
  store?: string;
  /** Named contexts for FROM / COPY --from=NAME: a directory or oci-layout://DIR[:TAG]. */
  buildContexts?: Record<string, string>;
  secrets?: Record<string, SecretSource>;
  progress?: ProgressMode;
  /** Where progress goes (default stderr). */
  progressStream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** SOURCE_DATE_EPOCH (default: the environment's, or the build arg of that name). */
  sourceDateEpoch?: number;
  /** Registry access (pulls and pushes). */
  registry?: RegistryAccess;
  /** The most one layer of a base image may unpack to (default: the store's free space less a margin). */
  maxUnpackedSize?: number;
}

export interface RegistryAccess {
  /** Registries (host[:port]) spoken to over plain HTTP. Default: none except localhost/127.0.0.1. */
  insecure?: string[];
  /** Credentials per registry host (else `credentials`, else the Docker/containers auth files). */
  auth?: Record<string, { username: string; password: string }>;
  /** Credentials for any registry not in `auth`. */
  credentials?: { username: string; password: string };
  /** Uploads bigger than this go in chunks of this size (default 16 MiB; 0: always one request). */
  chunkSize?: number;
  /** No pulls at all (default false). */
  offline?: boolean;
}

export interface BuildResult {
  manifestDigest: string;
  configDigest: string;
  config: ImageConfig;
  /** Tags written (store or layout ref names, or pushed references). */
  tags: string[];
  steps: number;
  cached: number;
  /** What each push did (type=registry). */
  pushes: import('./registry.js').PushReport[];
}

const KEY_VERSION = 'keel-build/1';

/** KEEL_BUILD_TRACE=1: phase timings on stderr (for benchmarks). */
const TRACE = process.env.KEEL_BUILD_TRACE === '1';
let traceT = performance.now();
function trace(what: string): void {
  if (!TRACE) return;
  const now = performance.now();
  process.stderr.write(`[trace] +${(now - traceT).toFixed(1)}ms ${what}\n`);
  traceT = now;
}

function keyOf(parts: unknown[]): string {
  return `sha256:${createHash('sha256').update(JSON.stringify([KEY_VERSION, ...parts])).digest('hex')}`;
}

type ConfigBody = NonNullable<ImageConfig['config']> & {
  Healthcheck?: { Test: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; StartInterval?: number; Retries?: number };
  OnBuild?: string[] | null;
  Shell?: string[];
};
type History = NonNullable<ImageConfig['history']>[number];

interface ImageState {
  platform: Platform;
  config: ConfigBody;
  history: History[];
  layers: LayerRef[];
  /** Cache key of the file system (see the module comment). */
  fsKey: string;
  /** Time of the latest step (history `created`). */
  created?: string;
  author?: string;
  shell: string[];
  /** CMD set in this stage (ENTRYPOINT then keeps it). */
  cmdSet: boolean;
}

interface StageResult {
  state: ImageState;
  scope: StageScope;
}

/** A failed step: `Dockerfile:12: RUN make: exit code 2`. */
export class StepError extends KeelError {}

function stepError(instr: Instruction, message: string): StepError {
  const text = instr.original.length > 80 ? `${instr.original.slice(0, 77)}...` : instr.original;
  return new StepError(`${instr.file}:${instr.startLine}: ${text}: ${message}`);
}

function cloneState(s: ImageState): ImageState {
  return {
    ...s,
    platform: { ...s.platform },
    config: structuredClone(s.config),
    history: s.history.map((h) => ({ ...h })),
    layers: [...s.layers],
    cmdSet: false,
  };
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

function isoOf(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

function readSourceDateEpoch(opts: BuildOptions): number | undefined {
  if (opts.sourceDateEpoch !== undefined) return opts.sourceDateEpoch;
  const v = opts.buildArgs?.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new KeelError(`SOURCE_DATE_EPOCH must be a whole number of seconds, not ${JSON.stringify(v)}`);
  return Number(v);
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

interface StepContext {
  stage: Stage;
  label: string;
  position: string;
}

class Builder {
  private readonly stageResults = new Map<number, Promise<StageResult>>();
  private readonly images = new Map<string, Promise<ResolvedImage>>();
  private readonly runSlots = new Semaphore(Math.max(2, availableParallelism()));
  private readonly contexts = new Map<string, BuildContext>();
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

  private async mounts(): Promise<void> {
    if (!this.mountsReady) {
      await prepareMounts();
      this.mountsReady = true;
    }
  }

  stage(index: number): Promise<StageResult> {
    let p = this.stageResults.get(index);
    if (!p) {
      p = this.buildStage(this.plan.stages[index]!);
      // Failures surface where they are awaited; avoid unhandled-rejection noise meanwhile.
      p.catch(() => {});
      this.stageResults.set(index, p);
    }
    return p;
  }

  image(name: string, platform: Platform): Promise<ResolvedImage> {
    const key = `${name}|${platform.os}/${platform.architecture}/${platform.variant ?? ''}`;
    let p = this.images.get(key);
    if (!p) {
      const named = this.opts.buildContexts?.[name];
      if (named !== undefined) {
        if (!named.startsWith('oci-layout://')) throw new KeelError(`build context ${name}=${named}: a directory cannot be used as an image`);
        p = parseLayoutSource(named).then(({ dir, ref }) => imageFromLayout(this.store, name, dir, ref, platform));
      } else {
        p = resolveImage(this.store, name, platform, this.resolver);
      }
      p.catch(() => {});
      this.images.set(key, p);
    }
    return p;
  }

  private stageLabel(stage: Stage): string {
    return stage.name ?? `stage-${stage.index}`;
  }

  /** The config Env with the default PATH added when missing (as BuildKit does for every stage). */
  private withPath(state: ImageState): string[] {
    if (!(state.config.Env ?? []).some((e) => e.startsWith('PATH='))) state.config.Env = [...(state.config.Env ?? []), DEFAULT_PATH];
    return state.config.Env!;
  }

  private async baseOf(stage: Stage, step: StepProgress): Promise<StageResult & { onbuild: string[] }> {
    const platform = stage.platform ? parsePlatform(stage.platform) : this.platform;
    const { createScope } = await import('../dockerfile/index.js');
    if (stage.base.kind === 'scratch') {
      const state: ImageState = {
        platform, config: {}, history: [], layers: [], shell: ['/bin/sh', '-c'], cmdSet: false,
        fsKey: keyOf(['scratch', `${platform.os}/${platform.architecture}/${platform.variant ?? ''}`, this.epoch ?? null]),
      };
      step.done();
      return { state, scope: createScope(this.plan, { baseEnv: this.withPath(state) }), onbuild: [] };
    }
    if (stage.base.kind === 'stage') {
      const parent = await this.stage(stage.base.index);
      const state = cloneState(parent.state);
      const onbuild = state.config.OnBuild ?? [];
      delete state.config.OnBuild;
      step.done();
      return { state, scope: parent.scope.fork(), onbuild };
    }
    const img = await this.image(stage.base.ref, platform);
    const c = img.config;
    const config: ConfigBody = structuredClone((c.config ?? {}) as ConfigBody);
    const onbuild = config.OnBuild ?? [];
    delete config.OnBuild;
    const state: ImageState = {
      platform: { os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) },
      config, history: (c.history ?? []).map((h) => ({ ...h })), layers: img.layers,
      shell: config.Shell ?? ['/bin/sh', '-c'], cmdSet: false, created: c.created, author: c.author,
      fsKey: keyOf(['image', img.manifestDigest, this.epoch ?? null]),
    };
    step.done();
    return { state, scope: createScope(this.plan, { baseEnv: this.withPath(state) }), onbuild };
  }

  private async buildStage(stage: Stage): Promise<StageResult> {
    const label = this.stageLabel(stage);
    const fsSteps = stage.instructions.filter((i) => i.kind === 'RUN' || i.kind === 'COPY' || i.kind === 'ADD' || i.kind === 'WORKDIR').length;
    const total = fsSteps + 1;
    let n = 1;
    const fromStep = this.progress.step(`${label} ${n}/${total}`, stage.from.original);
    let base: StageResult & { onbuild: string[] };
    try {
      base = await this.baseOf(stage, fromStep);
    } catch (err) {
      fromStep.fail((err as Error).message);
      if (err instanceof KeelError && !(err instanceof StepError)) throw stepError(stage.from, err.message);
      throw err;
    }
    const { state, scope } = base;
    const instructions: Instruction[] = [];
    if (base.onbuild.length) {
      const { parseOnbuildTrigger } = await import('../dockerfile/index.js');
      for (const expr of base.onbuild) {
        let t: Instruction;
        try {
          t = parseOnbuildTrigger(expr, { file: stage.from.file });
        } catch (err) {
          throw stepError(stage.from, `base image ONBUILD ${expr}: ${(err as Error).message}`);
        }
        instructions.push({ ...t, file: stage.from.file, startLine: stage.from.startLine, endLine: stage.from.endLine } as Instruction);
      }
    }
    instructions.push(...stage.instructions);
    for (const raw of instructions) {
      const isFs = raw.kind === 'RUN' || raw.kind === 'COPY' || raw.kind === 'ADD' || raw.kind === 'WORKDIR';
      if (isFs && n < total) n++;
      const sc: StepContext = { stage, label, position: `${label} ${n}/${total}` };
      let instr: Instruction;
      try {
        instr = scope.step(raw);
      } catch (err) {
        if (err instanceof KeelError) throw err;
        throw stepError(raw, (err as Error).message);
      }
      await this.instruction(sc, state, scope, instr);
    }
    return { state, scope };
  }

  private history(state: ImageState, _instr: Instruction, createdBy: string, emptyLayer: boolean, created?: string): void {
    const h: History = { created: created ?? state.created ?? this.buildTime, created_by: createdBy, comment: 'keel-build' };
    if (emptyLayer) h.empty_layer = true;
    state.history.push(h);
  }

  private async instruction(sc: StepContext, state: ImageState, scope: StageScope, instr: Instruction): Promise<void> {
    const cfg = state.config;
    const text = (i: Instruction) => i.original.replace(/^\S+\s*/, '');
    switch (instr.kind) {
      case 'ARG':
        return;
      case 'ENV':
        cfg.Env = scope.imageEnv();
        this.history(state, instr, `ENV ${instr.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, true);
        return;
      case 'LABEL':
        cfg.Labels = { ...(cfg.Labels ?? {}) };
        for (const p of instr.pairs) cfg.Labels[p.key] = p.value;
        this.history(state, instr, `LABEL ${instr.pairs.map((p) => `${p.key}=${p.value}`).join(' ')}`, true);
        return;
      case 'MAINTAINER':
        state.author = instr.maintainer;
        this.history(state, instr, `MAINTAINER ${instr.maintainer}`, true);
        return;
      case 'CMD': {
        const { commandArgs } = await import('../dockerfile/index.js');
        cfg.Cmd = commandArgs(instr.command, state.shell);
        state.cmdSet = true;
        this.history(state, instr, `CMD ${JSON.stringify(cfg.Cmd)}`, true);
        return;
      }
      case 'ENTRYPOINT': {
        const { commandArgs } = await import('../dockerfile/index.js');
        cfg.Entrypoint = instr.command.form === 'exec' && instr.command.args.length === 0 ? null : commandArgs(instr.command, state.shell);
        if (!state.cmdSet) cfg.Cmd = null;
        this.history(state, instr, `ENTRYPOINT ${JSON.stringify(cfg.Entrypoint)}`, true);
        return;
      }
      case 'SHELL':
        state.shell = [...instr.shell];
        cfg.Shell = [...instr.shell];
        this.history(state, instr, `SHELL ${JSON.stringify(instr.shell)}`, true);
        return;
      case 'USER':
        cfg.User = instr.user;
        this.history(state, instr, `USER ${instr.user}`, true);
        return;
      case 'EXPOSE': {
        cfg.ExposedPorts = { ...(cfg.ExposedPorts ?? {}) };
        for (const p of instr.ports) {
          const port = p.includes('/') ? p.toLowerCase() : `${p}/tcp`;
          if (!/^\d+(-\d+)?\/(tcp|udp|sctp)$/.test(port)) throw stepError(instr, `invalid port ${JSON.stringify(p)}`);
          cfg.ExposedPorts[port] = {};
        }
        this.history(state, instr, `EXPOSE ${instr.ports.join(' ')}`, true);
        return;
      }
      case 'VOLUME':
        cfg.Volumes = { ...(cfg.Volumes ?? {}) };
        for (const p of instr.paths) cfg.Volumes[p] = {};
        this.history(state, instr, `VOLUME ${JSON.stringify(instr.paths)}`, true);
        return;
      case 'STOPSIGNAL':
        cfg.StopSignal = instr.signal;
        this.history(state, instr, `STOPSIGNAL ${instr.signal}`, true);
        return;
      case 'HEALTHCHECK':
        cfg.Healthcheck = healthcheck(instr);
        this.history(state, instr, `HEALTHCHECK ${text(instr)}`, true);
        return;
      case 'ONBUILD':
        cfg.OnBuild = [...(cfg.OnBuild ?? []), instr.expression];
        this.history(state, instr, `ONBUILD ${instr.expression}`, true);
        return;
      case 'FROM':
        return;
      case 'WORKDIR':
        return this.workdir(sc, state, instr);
      case 'RUN':
        return this.run(sc, state, scope, instr);
      case 'COPY':
      case 'ADD':
        return this.copy(sc, state, instr);
    }
  }

  // ---- file-system steps ----

  /**
   * Looks up `key` in the cache; on a miss runs `exec` on an overlay of the state's layers (or,
   * with `link`, on an empty directory) and records the layer it made. Updates `state`.
   */
  private async fsStep(
    sc: StepContext, state: ImageState, instr: Instruction, key: string, createdBy: string,
    exec: (root: string, step: StepProgress) => Promise<(() => void) | void>, opts: { link?: boolean } = {},
  ): Promise<void> {
    this.steps++;
    const step = this.progress.step(sc.position, instr.original);
    try {
      const hit = this.opts.noCache ? undefined : this.store.cacheRecord(key);
      if (hit && (!hit.layer || this.usable(hit.layer))) {
        this.cached++;
        this.applyLayer(state, hit.layer, key);
        const created = this.epoch !== undefined ? this.buildTime : hit.created;
        this.history(state, instr, createdBy, !hit.layer, created);
        state.created = created;
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
      const parent = state.layers[state.layers.length - 1];
      if (fs.readdirSync(upper).length > 0) {
        // The upper dir becomes the layer's snapshot now (the next step stacks on it at once);
        // the layer blob and its diff ID are made meanwhile, and the step is recorded in the cache
        // once they are there (and its parent's are: records never point at unfinished layers).
        const id = this.store.newSnapshotId(key);
        const path = await this.store.placeSnapshot(id, upper);
        this.snaps.pending.add(id);
        const job = this.layerJob(instr, sc.stage, id, path, key, created, parent);
        state.layers = [...state.layers, { id, diffID: job }];
        state.fsKey = key;
      } else {
        const job = (async () => {
          if (parent) await parent.diffID;
          this.store.putCacheRecord(key, { v: 2, created });
        })();
        this.jobs.push(job);
        job.catch(() => {});
        state.fsKey = key;
      }
      fs.rmSync(dir, { recursive: true, force: true });
      this.history(state, instr, createdBy, state.layers[state.layers.length - 1] === parent, created);
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
  private layerJob(instr: Instruction, stage: Stage, id: string, path: string, key: string, created: string, parent: LayerRef | undefined): Promise<string> {
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
  private usable(layer: { diffID: string; snapshot: string }): boolean {
    if (this.snaps.has({ id: layer.snapshot, diffID: layer.diffID })) return true;
    const rec = this.store.layerRecord(layer.diffID);
    return !!rec && (Object.keys(rec.blobs).length > 0 || (!!rec.source && this.store.snapshotComplete(rec.source.snapshot)));
  }

  private applyLayer(state: ImageState, layer: { diffID: string; snapshot: string } | undefined, key: string): void {
    if (layer) state.layers = [...state.layers, { id: layer.snapshot, diffID: layer.diffID }];
    state.fsKey = key;
  }

  private async workdir(sc: StepContext, state: ImageState, instr: Extract<Instruction, { kind: 'WORKDIR' }>): Promise<void> {
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

  private async run(sc: StepContext, state: ImageState, scope: StageScope, instr: RunInstruction): Promise<void> {
    const { runCommand } = await import('../dockerfile/index.js');
    const plan = runCommand(instr, state.shell);
    const env = scope.runEnv();
    if (!env.some((e) => e.startsWith('PATH='))) env.unshift(DEFAULT_PATH);
    const user = state.config.User ?? '';
    const cwd = state.config.WorkingDir || '/';
    const network: 'host' | 'none' = instr.network === 'none' ? 'none' : 'host';
    const mountKeys: unknown[] = [];
    for (const m of instr.mountSpecs) mountKeys.push(await this.mountKey(instr, m));
    const key = keyOf(['RUN', state.fsKey, plan.args, plan.inlineFile ?? null, env, user, cwd, network, instr.security ?? 'sandbox', mountKeys]);
    const createdBy = `RUN ${plan.args.join(' ')}`;
    await this.fsStep(sc, state, instr, key, createdBy, async (root, step) => {
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
        for (const m of instr.mountSpecs) mounts.push(...(await this.prepareMount(instr, m, releases)));
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
        const result = await this.runSlots.use(() => runStep({
          rootfs: root, bundleDir, args: plan.args, env, cwd, user: { uid: u.uid, gid: u.gid, additionalGids: u.additionalGids },
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
  private async mountKey(instr: RunInstruction, m: MountSpec): Promise<unknown> {
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
        throw stepError(instr, '--mount=type=ssh is not supported by keel-build');
    }
    return null;
  }

  private async prepareMount(instr: RunInstruction, m: MountSpec, releases: (() => void)[]): Promise<Mount[]> {
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
      default:
        throw stepError(instr, `--mount=type=${m.type} is not supported by keel-build`);
    }
  }

  /**
   * Where COPY --from / RUN --mount from= reads: another stage, an image, or a named context.
   * `key` is what the step's cache key needs; `open()` mounts a read-only view.
   */
  private async sourceOf(instr: Instruction, from: string, allowIndex: boolean): Promise<{ key: string; open: () => Promise<{ root: string; release: () => void }>; context?: BuildContext }> {
    const named = this.opts.buildContexts?.[from];
    if (named !== undefined && !named.startsWith('oci-layout://')) {
      let c = this.contexts.get(from);
      if (!c) {
        const { DockerIgnore } = await import('../dockerfile/index.js');
        c = new BuildContext(checkContextDir(named), DockerIgnore.empty(), this.store, from);
        this.contexts.set(from, c);
      }
      const ctx = c;
      return { key: `context:${from}`, context: ctx, open: async () => ({ root: ctx.dir, release: () => {} }) };
    }
    const { resolveStageRef } = await import('../dockerfile/index.js');
    let ref;
    try {
      ref = named !== undefined ? { kind: 'image' as const, ref: from } : resolveStageRef(this.plan, from, { index: allowIndex });
    } catch (err) {
      throw stepError(instr, (err as Error).message);
    }
    let layers: LayerRef[];
    let key: string;
    if (ref.kind === 'stage') {
      const r = await this.stage(ref.index);
      layers = r.state.layers;
      key = `stage:${r.state.fsKey}`;
    } else if (ref.kind === 'image') {
      let img: ResolvedImage;
      try {
        img = await this.image(ref.ref, this.platform);
      } catch (err) {
        throw stepError(instr, (err as Error).message);
      }
      layers = img.layers;
      key = `image:${img.manifestDigest}`;
    } else {
      layers = [];
      key = 'scratch';
    }
    return { key, open: async () => { await this.mounts(); return this.snaps.view(layers); } };
  }

  private async copy(sc: StepContext, state: ImageState, instr: CopyInstruction | AddInstruction): Promise<void> {
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
      | { kind: 'url'; url: string; file: string; name: string; mtime: Date };
    const items: Item[] = [];
    let source: Awaited<ReturnType<Builder['sourceOf']>> | undefined;
    if (from !== undefined) {
      source = await this.sourceOf(instr, from, true);
      keyParts.push(source.key);
    }
    for (const c of instr.contents) {
      items.push({ kind: 'inline', name: c.path, data: c.data });
      keyParts.push(['inline', c.path, c.data]);
    }
    for (const src of instr.sources) {
      if (isAdd && /^https?:\/\//i.test(src)) {
        const dl = await this.download(instr as AddInstruction, src);
        items.push({ kind: 'url', url: src, file: dl.file, name: dl.name, mtime: dl.mtime });
        keyParts.push(['url', src, dl.digest]);
        continue;
      }
      if (isAdd && (/^git@/.test(src) || /\.git(#.*)?$/.test(src))) throw stepError(instr, `${src}: ADD of git repositories is not supported by keel-build`);
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
  private async place(root: string, abs: string, st: fs.Stats, parentsRel: string | undefined, destPath: string, destIsDir: boolean, opts: CopyOptions, dirOwner: Owner, unpack: boolean, instr: Instruction, archiveOwner?: Owner): Promise<void> {
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
        await applyLayer(tmp, fs.createReadStream(abs), { what: `archive ${name}` });
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

  private async download(instr: AddInstruction, url: string): Promise<{ file: string; name: string; digest: string; mtime: Date }> {
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

  /** The final config (without rootfs) for a stage's state. */
  imageConfig(state: ImageState): Omit<ImageConfig, 'rootfs'> {
    const created = this.epoch !== undefined ? this.buildTime : state.created ?? this.buildTime;
    const cfg: Omit<ImageConfig, 'rootfs'> = {
      created,
      architecture: state.platform.architecture,
      os: state.platform.os,
    };
    if (state.author) cfg.author = state.author;
    if (state.platform.variant) cfg.variant = state.platform.variant;
    const c = structuredClone(state.config);
    if (c.OnBuild === null || (Array.isArray(c.OnBuild) && c.OnBuild.length === 0)) delete c.OnBuild;
    cfg.config = c;
    cfg.history = state.history;
    return cfg;
  }
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

/** Whether a file is a tar archive (plain, gzip or zstd compressed), as ADD decides to extract. */
async function isTarArchive(path: string): Promise<boolean> {
  const fd = fs.openSync(path, 'r');
  let head: Buffer;
  try {
    head = Buffer.alloc(1 << 16);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    head = head.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
  const { detectCompression } = await import('../layers/index.js');
  const c = detectCompression(head);
  let plain = head;
  if (c === 'gzip') {
    const zlib = await import('node:zlib');
    try {
      plain = zlib.gunzipSync(head, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    } catch {
      return false;
    }
  } else if (c === 'zstd') {
    return true;
  }
  return plain.length >= 263 && plain.toString('latin1', 257, 262) === 'ustar';
}

function healthcheck(h: HealthcheckInstruction): ConfigBody['Healthcheck'] {
  const out: NonNullable<ConfigBody['Healthcheck']> = { Test: h.test };
  if (h.interval !== undefined) out.Interval = h.interval;
  if (h.timeout !== undefined) out.Timeout = h.timeout;
  if (h.startPeriod !== undefined) out.StartPeriod = h.startPeriod;
  if (h.startInterval !== undefined) out.StartInterval = h.startInterval;
  if (h.retries !== undefined) out.Retries = h.retries;
  return out;
}


// ---- exporting ----

interface FinalImage {
  config: Omit<ImageConfig, 'rootfs'>;
  layers: { diffID: string }[];
}

/**
 * The blob of a layer in the wanted compression, in the store's layout: made (and recorded) from
 * the uncompressed blob when missing. Base-image layers keep the blob they came with.
 */
async function layerBlob(store: BuildStore, diffID: string, want: CompressionName | 'any'): Promise<BlobRef> {
  const rec = store.layerRecord(diffID);
  if (!rec) throw new KeelError(`layer ${diffID}: no record in the store`);
  const any = rec.blobs.none ?? rec.blobs.gzip ?? rec.blobs.zstd;
  if (want === 'any' && any) return any;
  if (want !== 'any' && rec.blobs[want]) return rec.blobs[want]!;
  if (want !== 'any' && any && !rec.blobs.none) return any; // a base image's layer keeps its own compression
  const { createCompressor, parseDigest, layerMediaType, writeLayer, changesFromUpper } = await import('../layers/index.js');
  const layout = await store.layout();
  const c: CompressionName = want === 'any' ? 'none' : want;
  if (!any) {
    // Made from the snapshot of the step that made the layer, exactly as then.
    const src = rec.source;
    if (!src || !store.snapshotComplete(src.snapshot)) throw new KeelError(`layer ${diffID}: no blob and no snapshot in the store (run \`keel-build prune\`, then build again)`);
    const layer = await writeLayer(layout, changesFromUpper(store.snapshotPath(src.snapshot), { sourceDateEpoch: src.epoch ?? Infinity }), { compression: c });
    if (layer.diffID !== diffID) throw new KeelError(`layer ${diffID}: its snapshot ${src.snapshot} now gives ${layer.diffID} (was the store modified?)`);
    const ref: BlobRef = { mediaType: layer.descriptor.mediaType, digest: layer.descriptor.digest, size: layer.descriptor.size };
    store.addLayerBlobs(diffID, { [c]: ref });
    return ref;
  }
  const source = rec.blobs.none!;
  const comp = await createCompressor(c as 'gzip' | 'zstd');
  const writer = await layout.blobWriter();
  const { pipeline } = await import('node:stream/promises');
  const { Readable } = await import('node:stream');
  try {
    await pipeline(Readable.from(layout.readBlob(parseDigest(source.digest), source.size)), comp, writer);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const info = await writer.commit(undefined, 'layer');
  const ref: BlobRef = { mediaType: layerMediaType(c), digest: info.digest, size: info.size };
  store.addLayerBlobs(diffID, { [c]: ref });
  return ref;
}

async function storeImage(store: BuildStore, img: FinalImage, tags: string[]): Promise<{ manifest: ContentDescriptor; config: ContentDescriptor; doc: ImageConfig }> {
  const layout = await store.layout();
  const blobs: BlobRef[] = [];
  for (const l of img.layers) blobs.push(await layerBlob(store, l.diffID, 'any'));
  return writeImageDocs(layout, img, blobs, tags);
}

async function writeImageDocs(layout: import('../layers/index.js').OciLayout, img: FinalImage, blobs: BlobRef[], tags: string[]): Promise<{ manifest: ContentDescriptor; config: ContentDescriptor; doc: ImageConfig }> {
  const { validateImageConfig, validateImageManifest } = await import('../spec/index.js');
  const { MediaType, sha256, REF_NAME, parseDigest } = await import('../layers/index.js');
  const config = validateImageConfig({ ...img.config, rootfs: { type: 'layers', diff_ids: img.layers.map((l) => l.diffID) } }, 'image config');
  const configBytes = Buffer.from(JSON.stringify(config));
  const configDesc: ContentDescriptor = { mediaType: MediaType.config, digest: sha256(configBytes), size: configBytes.length };
  const layers = blobs.length ? blobs : undefined;
  if (!layers) {
    // The image-spec wants at least one layer: an empty one, as other builders write.
    const { writeLayer } = await import('../layers/index.js');
    const r = await writeLayer(layout, [], { compression: 'gzip' });
    blobs.push({ mediaType: r.descriptor.mediaType, digest: r.descriptor.digest, size: r.descriptor.size });
    (config.rootfs.diff_ids as string[]).push(r.diffID);
    return writeImageDocs(layout, { ...img, layers: [{ diffID: r.diffID }] }, blobs, tags);
  }
  const manifest = validateImageManifest({
    schemaVersion: 2,
    mediaType: MediaType.manifest,
    config: configDesc,
    layers: blobs.map((b) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })),
  }, 'image manifest');
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDesc: ContentDescriptor = { mediaType: MediaType.manifest, digest: sha256(manifestBytes), size: manifestBytes.length };
  for (const b of blobs) {
    if (!(await layout.has(parseDigest(b.digest)))) throw new KeelError(`layer blob ${b.digest} is missing from ${layout.root}`);
  }
  if (!(await layout.has(parseDigest(configDesc.digest)))) await layout.putBytes(configBytes, { digest: parseDigest(configDesc.digest), size: configDesc.size });
  if (!(await layout.has(parseDigest(manifestDesc.digest)))) await layout.putBytes(manifestBytes, { digest: parseDigest(manifestDesc.digest), size: manifestDesc.size });
  if (tags.length) {
    const index = await layout.readIndex();
    for (const t of tags) {
      const cur = index.manifests.find((m) => m.annotations?.[REF_NAME] === t);
      if (cur?.digest === manifestDesc.digest) continue;
      await layout.tag(t, { ...manifestDesc, platform: { architecture: config.architecture, os: config.os, ...(config.variant ? { variant: config.variant } : {}) } });
    }
  }
  return { manifest: manifestDesc, config: configDesc, doc: config };
}

/** Writes the image to an OCI layout directory (created when missing), layers compressed. */
async function exportLayout(store: BuildStore, img: FinalImage, dest: string, refNames: string[], compression: 'gzip' | 'zstd'): Promise<{ manifest: ContentDescriptor; config: ContentDescriptor; doc: ImageConfig }> {
  const { OciLayout, parseDigest } = await import('../layers/index.js');
  const src = await store.layout();
  const dst = await OciLayout.create(dest);
  const release = await dst.hold();
  try {
    const blobs: BlobRef[] = [];
    for (const l of img.layers) {
      const b = await layerBlob(store, l.diffID, compression);
      const d = parseDigest(b.digest);
      if (!(await dst.has(d))) await dst.putStream(src.readBlob(d, b.size), { digest: d, size: b.size }, `layer ${d}`);
      blobs.push(b);
    }
    return await writeImageDocs(dst, img, blobs, refNames);
  } finally {
    await release();
  }
}

/** The ref names an OCI layout gets for `-t NAME:TAG` (the tags; `latest` when none). */
function layoutRefNames(tags: string[]): string[] {
  const out = tags.map((t) => {
    const at = t.indexOf('@');
    const base = at >= 0 ? t.slice(0, at) : t;
    const slash = base.lastIndexOf('/');
    const colon = base.lastIndexOf(':');
    return colon > slash ? base.slice(colon + 1) : 'latest';
  });
  return out.length ? [...new Set(out)] : ['latest'];
}

function registryOptions(r: RegistryAccess | undefined): import('./registry.js').RegistryOptions {
  return { insecure: r?.insecure, auth: r?.auth, credentials: r?.credentials, chunkSize: r?.chunkSize };
}

/** Builds an image. See BuildOptions; throws a KeelError (StepError for a failing step). */
export async function build(opts: BuildOptions): Promise<BuildResult> {
  const contextDir = checkContextDir(opts.context);
  const dfPath = opts.dockerfile ? resolvePath(opts.dockerfile) : join(contextDir, 'Dockerfile');
  let text = opts.dockerfileText;
  if (text === undefined) {
    try {
      text = fs.readFileSync(dfPath, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new KeelError(`Dockerfile ${dfPath}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
  }
  const df = await import('../dockerfile/index.js');
  const file = opts.dockerfile && opts.dockerfileText === undefined ? opts.dockerfile : 'Dockerfile';
  const parsed = df.parseDockerfile(text, { file: file.slice(file.lastIndexOf('/') + 1) || 'Dockerfile' });
  const platformText = opts.platform ?? df.hostPlatform();
  const plan = df.resolveStages(parsed, { buildArgs: opts.buildArgs ?? {}, target: opts.target, targetPlatform: platformText });
  const platform = parsePlatform(platformText);
  const tags = opts.tags ?? [];
  const { parseReference } = await import('./imageref.js');
  const { storeTag } = await import('./images.js');
  const storeTags = tags.map((t) => storeTag(parseReference(t)));
  const outputs = opts.outputs?.length ? opts.outputs : [{ type: 'store' as const }];
  for (const o of outputs) if (o.type === 'registry' && tags.length === 0) throw new KeelError('--output type=registry needs at least one -t NAME:TAG to push to');

  const progressOut = opts.progressStream ?? process.stderr;
  const progress = createProgress(opts.progress ?? 'auto', progressOut as never);
  for (const w of parsed.warnings) progress.info(`warning: ${w.file}:${w.line}: ${w.message}`);
  for (const k of plan.unusedBuildArgs) progress.info(`warning: build arg ${k} is not used by any ARG`);

  const store = BuildStore.open(opts.store);
  const unlock = await store.lockShared();
  const workDir = await store.newWorkDir();
  const ignore = await df.loadDockerignore(contextDir, opts.dockerfile);
  const ctx = new BuildContext(contextDir, ignore, store);
  const snaps = new Snapshots(store, workDir, opts.maxUnpackedSize);
  const resolver: ImageResolver = {};
  if (!opts.registry?.offline) {
    resolver.pull = async (ref, p) => {
      const { pullImage } = await import('./registry.js');
      return pullImage(store, ref, p, { ...registryOptions(opts.registry), progress });
    };
  }
  const builder = new Builder(opts, store, plan, ctx, snaps, progress, workDir, platform, resolver);
  if (outputs.some((o) => o.type === 'store' || o.type === 'registry')) {
    for (let s: Stage | undefined = plan.target; s; s = s.base.kind === 'stage' ? plan.stages[s.base.index] : undefined) builder.blobStages.add(s.index);
  }

  // An interrupted build stops its containers, unmounts and removes its work directory, then exits
  // with 128 + the signal's number, as a shell reports it.
  const onSignal = (sig: NodeJS.Signals) => {
    void (async () => {
      const { killRunning } = await import('./run.js');
      await killRunning();
      unmountAll();
      try { fs.rmSync(workDir, { recursive: true, force: true }); } catch { /* best effort */ }
      unlock();
      progress.close();
      const { constants } = await import('node:os');
      process.exit(128 + (constants.signals[sig] ?? 15));
    })();
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.once(s, onSignal);
  let ok = false;
  try {
    // Every stage the target needs starts now; each waits for the stages it reads when it reads them.
    const started = plan.order.map((s) => builder.stage(s.index));
    const target = await builder.stage(plan.target.index);
    // No stage may still be running when the work directory goes (their errors surface here too).
    await Promise.all(started);
    // Layers still being written, and the cache records after them.
    await Promise.all(builder.jobs);
    const img: FinalImage = { config: builder.imageConfig(target.state), layers: await Promise.all(target.state.layers.map(async (l) => ({ diffID: await l.diffID }))) };
    ctx.save();
    let result: { manifest: ContentDescriptor; config: ContentDescriptor; doc: ImageConfig } | undefined;
    const written: string[] = [];
    const pushes: import('./registry.js').PushReport[] = [];
    for (const o of outputs) {
      if (o.type === 'store') {
        result = await storeImage(store, img, storeTags);
        written.push(...storeTags);
      } else if (o.type === 'oci') {
        const names = layoutRefNames(tags);
        result = await exportLayout(store, img, resolvePath(o.dest), names, opts.compression ?? 'gzip');
        progress.info(`exported to OCI layout ${o.dest} (${names.join(', ')})`);
        written.push(...names.map((n) => `${o.dest}:${n}`));
      } else if (o.type === 'oci-archive') {
        const names = layoutRefNames(tags);
        const tmp = join(workDir, 'archive-layout');
        result = await exportLayout(store, img, tmp, names, opts.compression ?? 'gzip');
        const { OciLayout, exportArchive } = await import('../layers/index.js');
        const dest = resolvePath(o.dest);
        const part = `${dest}.part-${process.pid}`;
        let fd: number;
        try {
          fd = fs.openSync(part, 'w', 0o644);
        } catch (err) {
          throw new KeelError(`--output type=oci-archive,dest=${o.dest}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
        }
        const out = fs.createWriteStream(part, { fd });
        try {
          await exportArchive(await OciLayout.open(tmp), out);
          await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
          fs.renameSync(part, dest);
        } catch (err) {
          out.destroy();
          fs.rmSync(part, { force: true });
          throw new KeelError(`--output type=oci-archive,dest=${o.dest}: ${(err as Error).message}`);
        }
        progress.info(`exported to OCI archive ${o.dest}`);
        written.push(...names.map((n) => `${o.dest}:${n}`));
      } else if (o.type === 'registry') {
        const { pushImage } = await import('./registry.js');
        result = await storeImage(store, img, storeTags);
        for (const t of tags) {
          const pushed = await pushImage(store, img, parseReference(t), { ...registryOptions(opts.registry), progress, compression: opts.compression ?? 'gzip', layerBlob: (d, c) => layerBlob(store, d, c) });
          pushes.push(pushed);
          result = { manifest: pushed.manifest, config: pushed.config, doc: pushed.doc };
          written.push(t);
        }
      }
    }
    ok = true;
    return {
      manifestDigest: result!.manifest.digest, configDigest: result!.config.digest, config: result!.doc,
      tags: written, steps: builder.steps, cached: builder.cached, pushes,
    };
  } finally {
    // A failed build still lets the layers being written finish (or fail) before it cleans up.
    await Promise.allSettled(builder.jobs);
    for (const s of signals) process.off(s, onSignal);
    const problems = unmountAll();
    try { fs.rmSync(workDir, { recursive: true, force: true }); } catch { /* unmounted lazily: next build cleans */ }
    unlock();
    progress.close();
    if (problems.length && ok) throw new KeelError(`cleanup: ${problems[0]}`);
  }
}

export type { FinalImage };
export { layerBlob, writeImageDocs };
