/**
 * Image → runtime bundle (what `umoci unpack` does): the layers applied into BUNDLE/rootfs and a
 * config.json made from the runtime's default spec (the one `keel spec` writes) with the process
 * taken from the image config, as the image-spec's conversion rules say.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { KeelError } from '../util/errors.js';
import { validateRuntimeConfig } from '../spec/index.js';
import type { Spec, ImageConfig, ImageManifest } from '../spec/index.js';
import { defaultSpec } from '../runtime/spec-default.js';
import { OciLayout, type ResolveOptions } from './store.js';
import { readImage, type ReadImage } from './image.js';
import { applyLayerBlob, defaultUnpackLimit, type ApplyOptions } from './apply.js';
import { resolveUser } from './user.js';
import { parseDigest } from './digest.js';

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface RuntimeSpecOptions {
  /** A rootless configuration (user namespace mapping the caller to root). */
  rootless?: boolean;
  /** Allocate a terminal (default false: images run non-interactively). */
  terminal?: boolean;
  /** Manifest annotations, copied into the spec's annotations. */
  manifestAnnotations?: Record<string, string>;
}

/**
 * A complete runtime config for an image whose root filesystem is at `rootfs` (used to resolve
 * `User` against its /etc/passwd and /etc/group). Valid against the runtime-spec schema.
 */
export async function runtimeSpecFromImage(image: ImageConfig, rootfs: string, opts: RuntimeSpecOptions = {}): Promise<Spec> {
  const spec = defaultSpec({ rootless: opts.rootless ?? false });
  const c = image.config ?? {};
  const proc = spec.process!;
  proc.terminal = opts.terminal ?? false;

  const args = [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])];
  if (args.length) proc.args = args;

  // Environment: the runtime defaults, overridden and extended by the image's.
  const env = new Map<string, string>();
  for (const e of [...(proc.env ?? []), ...(c.Env ?? [])]) {
    const eq = e.indexOf('=');
    env.set(eq < 0 ? e : e.slice(0, eq), e);
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);

  const user = await resolveUser(rootfs, c.User);
  proc.user = { uid: user.uid, gid: user.gid };
  if (user.additionalGids.length) proc.user.additionalGids = user.additionalGids;
  if (!env.has('HOME')) env.set('HOME', `HOME=${user.home || '/'}`);
  proc.env = [...env.values()];

  const wd = c.WorkingDir ?? '';
  proc.cwd = wd === '' ? '/' : wd.startsWith('/') ? wd : `/${wd}`;

  spec.root = { path: 'rootfs', readonly: false };

  // Annotations (image-spec conversion): labels, then the image's own facts.
  const ann: Record<string, string> = { ...(opts.manifestAnnotations ?? {}), ...(c.Labels ?? {}) };
  ann['org.opencontainers.image.os'] = image.os;
  ann['org.opencontainers.image.architecture'] = image.architecture;
  if (image.variant) ann['org.opencontainers.image.variant'] = image.variant;
  if (image['os.version']) ann['org.opencontainers.image.os.version'] = image['os.version'];
  if (image['os.features']?.length) ann['org.opencontainers.image.os.features'] = image['os.features'].join(',');
  if (image.author) ann['org.opencontainers.image.author'] = image.author;
  if (image.created) ann['org.opencontainers.image.created'] = image.created;
  if (c.ExposedPorts && Object.keys(c.ExposedPorts).length) ann['org.opencontainers.image.exposedPorts'] = Object.keys(c.ExposedPorts).join(',');
  if (c.StopSignal) ann['org.opencontainers.image.stopSignal'] = c.StopSignal;
  spec.annotations = ann;

  return validateRuntimeConfig(spec, 'generated config.json');
}

export interface UnpackOptions extends ResolveOptions, RuntimeSpecOptions {
  /** Passed to the layer applier (devices, owners, xattrs, warnings). */
  apply?: Omit<ApplyOptions, 'what' | 'maxSize' | 'unpackedBefore'>;
  /**
   * Most bytes the image's layers may unpack to, all layers together (uncompressed tar size),
   * checked while streaming. Default: the bundle's file system's free space less a margin.
   */
  maxUnpackedSize?: number;
  /** Called after each layer: index (0-based), count, digest. */
  onLayer?: (index: number, count: number, digest: string) => void;
}

export interface UnpackResult {
  image: ReadImage;
  spec: Spec;
  bundle: string;
  warnings: string[];
}

async function emptyOrMissing(dir: string): Promise<'missing' | 'empty'> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    if (code === 'ENOTDIR') throw new KeelError(`bundle ${dir}: exists and is not a directory`);
    throw err;
  }
  if (names.length) throw new KeelError(`bundle ${dir}: already exists and is not empty`);
  return 'empty';
}

/**
 * Unpacks image `ref` of the layout at `layoutDir` into a new bundle directory: rootfs/ from the
 * layers (each verified against its digest and the config's diff_id) and config.json. On failure
 * nothing is left behind.
 */
export async function unpackImage(layoutDir: string, ref: string | undefined, bundleDir: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  const layout = await OciLayout.open(layoutDir);
  const image = await readImage(layout, ref, opts);
  const bundle = resolve(bundleDir);
  const state = await emptyOrMissing(bundle);
  const rootfs = join(bundle, 'rootfs');
  const warnings: string[] = [];
  try {
    await fsp.mkdir(bundle, { recursive: true, mode: 0o700 });
    await fsp.mkdir(rootfs, { mode: 0o755 });
    const layers = image.manifest.layers;
    for (const [i, layer] of layers.entries()) {
      const digest = parseDigest(layer.digest, `layer ${i + 1}`);
      if (await layout.has(digest)) continue;
      if (layer.urls?.length || /nondistributable|foreign/.test(layer.mediaType)) {
        throw new KeelError(`layer ${i + 1}/${layers.length} (${digest.slice(0, 19)}) is a non-distributable (foreign) layer that ${layoutDir} does not hold; its content is at ${layer.urls?.join(', ') || 'no URL given'}, which keel does not download`);
      }
      throw new KeelError(`layer ${i + 1}/${layers.length} (${digest.slice(0, 19)}) is missing from ${layoutDir}`);
    }
    const maxSize = opts.maxUnpackedSize ?? defaultUnpackLimit(rootfs);
    let unpacked = 0;
    for (const [i, layer] of layers.entries()) {
      const digest = parseDigest(layer.digest, `layer ${i + 1}`);
      const r = await applyLayerBlob(layout, { digest, size: layer.size }, rootfs, {
        ...opts.apply,
        what: `layer ${i + 1}/${layers.length} (${digest.slice(0, 19)})`,
        expectedDiffID: image.config.rootfs.diff_ids[i],
        maxSize,
        unpackedBefore: unpacked,
      });
      unpacked += r.size;
      warnings.push(...r.warnings);
      opts.onLayer?.(i, layers.length, digest);
    }
    const spec = await runtimeSpecFromImage(image.config, rootfs, { ...opts, manifestAnnotations: annotationsOf(image.manifest) });
    await fsp.writeFile(join(bundle, 'config.json'), JSON.stringify(spec, null, '\t'), { mode: 0o644 });
    return { image, spec, bundle, warnings };
  } catch (err) {
    if (state === 'missing') await fsp.rm(bundle, { recursive: true, force: true });
    else {
      await fsp.rm(rootfs, { recursive: true, force: true });
      await fsp.rm(join(bundle, 'config.json'), { force: true });
    }
    throw err;
  }
}

function annotationsOf(m: ImageManifest): Record<string, string> {
  return { ...(m.annotations ?? {}) };
}

/**
 * Splits `LAYOUT[:TAG]` or `LAYOUT@DIGEST`. The layout is the first prefix before a ':' that is
 * an existing layout directory (so tags may hold ':' or '/'); otherwise the split is at the last
 * ':' not followed by a '/'.
 */
export function parseLayoutRef(arg: string): { layout: string; ref: string | undefined } {
  const at = arg.lastIndexOf('@');
  if (at > 0 && /^sha(256|512):/.test(arg.slice(at + 1))) return { layout: arg.slice(0, at), ref: arg.slice(at + 1) };
  if (fs.existsSync(join(arg, 'oci-layout'))) return { layout: arg, ref: undefined };
  for (let i = arg.indexOf(':'); i > 0; i = arg.indexOf(':', i + 1)) {
    if (fs.existsSync(join(arg.slice(0, i), 'oci-layout'))) return { layout: arg.slice(0, i), ref: arg.slice(i + 1) || undefined };
  }
  const colon = arg.lastIndexOf(':');
  if (colon > 0 && !arg.slice(colon + 1).includes('/')) return { layout: arg.slice(0, colon), ref: arg.slice(colon + 1) || undefined };
  return { layout: arg, ref: undefined };
}
