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
import { join, resolve as resolvePath } from 'node:path';
import { KeelError } from '../util/errors.js';
import type { Stage } from '../dockerfile/index.js';
import { BuildStore } from './store.js';
import { BuildContext, checkContextDir } from './context.js';
import { Snapshots } from './snapshots.js';
import { parsePlatform, type ImageResolver } from './images.js';
import { createProgress } from './progress.js';
import { unmountAll } from './mount.js';
import { Builder } from './graph.js';
import { writeOutputs, registryOptions, layerBlob } from './export.js';
import { CacheImports, exportCache } from './cache.js';
import { SshAgents } from './ssh.js';
import type { ContentDescriptor } from '../spec/index.js';
import type { BuildOptions, BuildResult } from './types.js';

export type { OutputSpec, SecretSource, BuildOptions, RegistryAccess, BuildResult } from './types.js';
export { StepError } from './types.js';

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
  // One image per platform of --platform (a comma-separated list), each with its own stage plan:
  // TARGETPLATFORM and friends are the platform's, BUILDPLATFORM this machine's.
  const platformTexts = [...new Set((opts.platform ?? df.hostPlatform()).split(',').map((p) => p.trim()).filter(Boolean))];
  if (platformTexts.length === 0) throw new KeelError('--platform: no platform given');
  const plans = platformTexts.map((p) => ({ platform: parsePlatform(p), plan: df.resolveStages(parsed, { buildArgs: opts.buildArgs ?? {}, target: opts.target, targetPlatform: p }) }));
  const plan = plans[0]!.plan;
  const tags = opts.tags ?? [];
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
  // The stages whose layers make the image: the target and the stages it is FROM.
  const imageStages = new Set<number>();
  for (let s: Stage | undefined = plan.target; s; s = s.base.kind === 'stage' ? plan.stages[s.base.index] : undefined) imageStages.add(s.index);
  const ssh = opts.ssh && Object.keys(opts.ssh).length ? new SshAgents(opts.ssh, workDir) : undefined;
  const builders = plans.map(({ platform, plan: p }) => {
    const b = new Builder(opts, store, p, ctx, snaps, progress, workDir, platform, resolver);
    if (plans.length > 1) b.labelPrefix = `${platformTexts[plans.findIndex((x) => x.plan === p)]} `;
    if (outputs.some((o) => o.type === 'store' || o.type === 'registry')) for (const i of imageStages) b.blobStages.add(i);
    b.ssh = ssh;
    return b;
  });

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
    if (opts.cacheFrom?.length) {
      const imports = await CacheImports.open(opts.cacheFrom, registryOptions(opts.registry), progress);
      for (const b of builders) b.cacheImports = imports;
    }
    // The platforms build side by side (their RUN steps share the machine's run slots).
    const imgs = await Promise.all(builders.map((b) => b.run()));
    ctx.save();
    const out = await writeOutputs(store, imgs, { outputs, tags, compression: opts.compression ?? 'gzip', registry: opts.registry, progress, workDir });
    for (const b of builders) recordImportedHits(store, b.importedHits);
    const records = new Map(builders.flatMap((b) => [...b.records]));
    const cacheExports: ContentDescriptor[] = [];
    for (const spec of opts.cacheTo ?? []) {
      try {
        cacheExports.push(await exportCache(store, { records, imageStages, layerBlob: (d) => layerBlob(store, d, 'gzip') }, spec, registryOptions(opts.registry), progress));
      } catch (err) {
        if (!spec.ignoreError) throw err;
        progress.info(`warning: ${(err as Error).message}`);
      }
    }
    ok = true;
    const first = out.images[0]!;
    return {
      manifestDigest: out.top.digest, configDigest: first.config.digest, config: first.doc,
      images: out.images.map((w) => ({ platform: platformName(w.doc), manifestDigest: w.manifest.digest, configDigest: w.config.digest })),
      tags: out.written, steps: sum(builders, 'steps'), cached: sum(builders, 'cached'), pushes: out.pushes, cacheExports,
    };
  } finally {
    // A failed build still lets the layers being written finish (or fail) before it cleans up
    // (and another platform's steps end: a failed platform fails the build once all have stopped).
    await Promise.allSettled(builders.map((b) => b.settled()));
    ssh?.close();
    for (const s of signals) process.off(s, onSignal);
    const problems = unmountAll();
    try { fs.rmSync(workDir, { recursive: true, force: true }); } catch { /* unmounted lazily: next build cleans */ }
    unlock();
    progress.close();
    if (problems.length && ok) throw new KeelError(`cleanup: ${problems[0]}`);
  }
}

/**
 * Local cache records for the steps an imported cache gave whose layers are in the store now (the
 * image's layers, fetched for the outputs): the next build finds them without --cache-from.
 */
function recordImportedHits(store: BuildStore, hits: Builder['importedHits']): void {
  for (const h of hits) {
    if (h.layer) {
      const rec = store.layerRecord(h.layer.diffID);
      if (!rec || Object.keys(rec.blobs).length === 0) continue;
    }
    store.putCacheRecord(h.key, h.layer ? { v: 2, layer: h.layer, created: h.created } : { v: 2, created: h.created });
  }
}

function sum(builders: Builder[], k: 'steps' | 'cached'): number {
  return builders.reduce((n, b) => n + b[k], 0);
}

function platformName(c: { os: string; architecture: string; variant?: string }): string {
  return `${c.os}/${c.architecture}${c.variant ? `/${c.variant}` : ''}`;
}
