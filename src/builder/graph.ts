// The stage graph: every stage the target needs is a promise that waits for what it reads (its
// base stage, the stages COPY --from and RUN --mount from= name) when it reads it; stages the target
// does not need are never started. Within a stage, instructions run in order on an `ImageState`
// (config, history, layers) and the stage's variable scope (src/dockerfile): the config-only ones
// here, the file-system ones in steps.ts.
import type { ImageConfig } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import type { Instruction, Stage, StageScope, HealthcheckInstruction } from '../dockerfile/index.js';
import { BuildContext, checkContextDir } from './context.js';
import type { LayerRef } from './snapshots.js';
import { resolveImage, parsePlatform, parseLayoutSource, imageFromLayout, type ResolvedImage, type Platform } from './images.js';
import type { StepProgress } from './progress.js';
import { DEFAULT_PATH } from './run.js';
import { StepExecutor, type Source } from './steps.js';
import { type ConfigBody, type ImageState, type StageResult, type StepContext, type FinalImage, StepError, stepError, keyOf, cloneState } from './types.js';

/** A build of one platform's image: the stages, their steps (StepExecutor) and the final config. */
export class Builder extends StepExecutor {
  private readonly stageResults = new Map<number, Promise<StageResult>>();
  private readonly images = new Map<string, Promise<ResolvedImage>>();
  /**
   * Builds the target: every stage it needs starts now and waits for the stages it reads when it
   * reads them. Resolves once no stage runs any more and every layer is written, to the image.
   */
  async run(): Promise<FinalImage> {
    const started = this.plan.order.map((s) => this.stage(s.index));
    const target = await this.stage(this.plan.target.index);
    // No stage may still be running when the work directory goes (their errors surface here too).
    await Promise.all(started);
    // Layers still being written, and the cache records after them.
    await Promise.all(this.jobs);
    return { config: this.imageConfig(target.state), layers: await Promise.all(target.state.layers.map(async (l) => ({ diffID: await l.diffID }))) };
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

  /** Put before stage names in progress (the platform, when a build makes several). */
  labelPrefix = '';

  private stageLabel(stage: Stage): string {
    return `${this.labelPrefix}${stage.name ?? `stage-${stage.index}`}`;
  }

  /** Resolves when every stage started and every layer job has ended, however they ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.stageResults.values()]);
    await Promise.allSettled(this.jobs);
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
        return this.runInstruction(sc, state, scope, instr);
      case 'COPY':
      case 'ADD':
        return this.copy(sc, state, instr);
    }
  }

  // ---- file-system steps ----

  protected async sourceOf(instr: Instruction, from: string, allowIndex: boolean): Promise<Source> {
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

function healthcheck(h: HealthcheckInstruction): ConfigBody['Healthcheck'] {
  const out: NonNullable<ConfigBody['Healthcheck']> = { Test: h.test };
  if (h.interval !== undefined) out.Interval = h.interval;
  if (h.timeout !== undefined) out.Timeout = h.timeout;
  if (h.startPeriod !== undefined) out.StartPeriod = h.startPeriod;
  if (h.startInterval !== undefined) out.StartInterval = h.startInterval;
  if (h.retries !== undefined) out.Retries = h.retries;
  return out;
}
