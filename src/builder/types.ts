// Definitions the builder's modules share: the options and result of a build, the state of a
// stage as its instructions run, cache keys and step errors. No module of src/builder imports
// another in a circle: build.ts → graph.ts → steps.ts → (run, copy, mount, snapshots ...), and
// export.ts / registry.ts beside them; every one of them takes its shared types from here.
import { createHash } from 'node:crypto';
import type { ImageConfig, ContentDescriptor } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import type { Instruction, Stage } from '../dockerfile/index.js';
import type { LayerRef } from './snapshots.js';
import type { Platform } from './images.js';
import type { StageScope } from '../dockerfile/index.js';
import type { ProgressMode } from './progress.js';
import type { PushReport } from './registry.js';
import type { CacheExportSpec, CacheImportSpec } from './cache.js';

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
  /** Target platform, or several separated by commas for an image index (default this machine's). */
  platform?: string;
  /** Store directory (default /var/lib/keel for root, else under XDG_DATA_HOME). */
  store?: string;
  /** Named contexts for FROM / COPY --from=NAME: a directory or oci-layout://DIR[:TAG]. */
  buildContexts?: Record<string, string>;
  secrets?: Record<string, SecretSource>;
  /** ssh agents for RUN --mount=type=ssh: id → agent socket or key files ([]: $SSH_AUTH_SOCK). */
  ssh?: Record<string, string[]>;
  progress?: ProgressMode;
  /** Where progress goes (default stderr). */
  progressStream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** SOURCE_DATE_EPOCH (default: the environment's, or the build arg of that name). */
  sourceDateEpoch?: number;
  /** Registry access (pulls and pushes). */
  registry?: RegistryAccess;
  /** The most one layer of a base image may unpack to (default: the store's free space less a margin). */
  maxUnpackedSize?: number;
  /** Where to export the build cache (`--cache-to`), in BuildKit's cache format. */
  cacheTo?: CacheExportSpec[];
  /** Caches to use (`--cache-from`): their steps are cache hits as if built in this store. */
  cacheFrom?: CacheImportSpec[];
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
  /** The image's manifest, or for several platforms their image index. */
  manifestDigest: string;
  /** The (first platform's) image config. */
  configDigest: string;
  config: ImageConfig;
  /** Tags written (store or layout ref names, or pushed references). */
  tags: string[];
  steps: number;
  cached: number;
  /** Each platform's image. */
  images: { platform: string; manifestDigest: string; configDigest: string }[];
  /** The cache manifests exported (--cache-to), in the order given. */
  cacheExports: ContentDescriptor[];
  /** What each push did (type=registry). */
  pushes: PushReport[];
}

export const KEY_VERSION = 'keel-build/1';

/** KEEL_BUILD_TRACE=1: phase timings on stderr (for benchmarks). */
const TRACE = process.env.KEEL_BUILD_TRACE === '1';
let traceT = performance.now();
export function trace(what: string): void {
  if (!TRACE) return;
  const now = performance.now();
  process.stderr.write(`[trace] +${(now - traceT).toFixed(1)}ms ${what}\n`);
  traceT = now;
}

export function keyOf(parts: unknown[]): string {
  return `sha256:${createHash('sha256').update(JSON.stringify([KEY_VERSION, ...parts])).digest('hex')}`;
}

export type ConfigBody = NonNullable<ImageConfig['config']> & {
  Healthcheck?: { Test: string[]; Interval?: number; Timeout?: number; StartPeriod?: number; StartInterval?: number; Retries?: number };
  OnBuild?: string[] | null;
  Shell?: string[];
};
export type History = NonNullable<ImageConfig['history']>[number];

export interface ImageState {
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

export interface StageResult {
  state: ImageState;
  scope: StageScope;
}

/** A failed step: `Dockerfile:12: RUN make: exit code 2`. */
export class StepError extends KeelError {}

export function stepError(instr: Instruction, message: string): StepError {
  const text = instr.original.length > 80 ? `${instr.original.slice(0, 77)}...` : instr.original;
  return new StepError(`${instr.file}:${instr.startLine}: ${text}: ${message}`);
}

export function cloneState(s: ImageState): ImageState {
  return {
    ...s,
    platform: { ...s.platform },
    config: structuredClone(s.config),
    history: s.history.map((h) => ({ ...h })),
    layers: [...s.layers],
    cmdSet: false,
  };
}

export function isoOf(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

export function readSourceDateEpoch(opts: BuildOptions): number | undefined {
  if (opts.sourceDateEpoch !== undefined) return opts.sourceDateEpoch;
  const v = opts.buildArgs?.SOURCE_DATE_EPOCH ?? process.env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new KeelError(`SOURCE_DATE_EPOCH must be a whole number of seconds, not ${JSON.stringify(v)}`);
  return Number(v);
}

export interface StepContext {
  stage: Stage;
  label: string;
  position: string;
}

/** What a build hands to its outputs: the config (without rootfs) and the layers by diff ID. */
export interface FinalImage {
  config: Omit<ImageConfig, 'rootfs'>;
  layers: { diffID: string }[];
}
