// A client of the OCI distribution spec (and Docker's registry API it came from): pulls images
// into keel's store and pushes built images, with bearer-token and basic authentication, blob
// existence checks, cross-repository blob mounts, and monolithic or chunked uploads.
//
// Hosts on the loopback interface (localhost, 127.0.0.0/8, ::1) and those listed as insecure are
// spoken to over plain HTTP; the rest over HTTPS. Credentials come from the options, else from
// the containers auth file ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json) or Docker's
// ~/.docker/config.json.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';
import type { IncomingMessage } from 'node:http';
import type { ImageConfig, ImageManifest, ImageIndex, ContentDescriptor } from '../spec/index.js';
import { KeelError } from '../util/errors.js';
import type { BuildStore } from './store.js';
import type { Progress } from './progress.js';
import type { ImageReference } from './imageref.js';
import { familiarName } from './imageref.js';
import type { Platform, ResolvedImage } from './images.js';
import type { LayerRef } from './snapshots.js';

/** The registry could not be reached at all (name, connection, TLS or time-out), as opposed to an answer refusing. */
export class RegistryUnreachable extends KeelError {}

export interface RegistryOptions {
  insecure?: string[];
  auth?: Record<string, { username: string; password: string }>;
  /** Credentials for registries not in `auth`. */
  credentials?: { username: string; password: string };
  progress?: Progress;
  /** Uploads bigger than this go in chunks of this size (default 16 MiB); 0 for monolithic always. */
  chunkSize?: number;
}

const ACCEPT_MANIFEST = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

const MAX_MANIFEST = 4 << 20;

function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

interface Credentials { username: string; password: string }

function credentialsFor(registry: string, opts: RegistryOptions): Credentials | undefined {
  if (opts.auth?.[registry]) return opts.auth[registry];
  if (opts.credentials) return opts.credentials;
  const files = [
    process.env.REGISTRY_AUTH_FILE,
    process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, 'containers', 'auth.json') : undefined,
    join(homedir(), '.docker', 'config.json'),
  ].filter((f): f is string => !!f);
  for (const f of files) {
    let doc: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
    try {
      doc = JSON.parse(fs.readFileSync(f, 'utf8'));
    } catch {
      continue;
    }
    const hosts = registry === 'docker.io' ? ['docker.io', 'index.docker.io', 'https://index.docker.io/v1/', 'registry-1.docker.io'] : [registry, `https://${registry}`, `http://${registry}`];
    for (const h of hosts) {
      const e = doc.auths?.[h];
      if (!e) continue;
      if (e.username && e.password) return { username: e.username, password: e.password };
      if (e.auth) {
        const text = Buffer.from(e.auth, 'base64').toString('utf8');
        const i = text.indexOf(':');
        if (i > 0) return { username: text.slice(0, i), password: text.slice(i + 1) };
      }
    }
  }
  return undefined;
}

interface Response {
  status: number;
  headers: IncomingMessage['headers'];
  res: IncomingMessage;
}

/** One registry host, one repository, with the authorization it has negotiated. */
export class RegistryClient {
  private authorization: string | undefined;
  private challenge: { scheme: 'bearer' | 'basic'; params: Record<string, string> } | undefined;
  readonly base: string;
  readonly apiHost: string;
  /** More token scopes to ask for (`repository:other/repo:pull`, to mount its blobs). */
  readonly extraScopes: string[] = [];

  constructor(readonly registry: string, readonly repository: string, private readonly opts: RegistryOptions, private readonly actions: string) {
    this.apiHost = registry === 'docker.io' ? 'registry-1.docker.io' : registry;
    const plain = isLoopback(registry) || (opts.insecure ?? []).includes(registry);
    this.base = `${plain ? 'http' : 'https'}://${this.apiHost}`;
  }

  private async raw(method: string, url: string, headers: Record<string, string>, body?: Buffer | AsyncIterable<Uint8Array>): Promise<Response> {
    const u = new URL(url, this.base);
    const lib = u.protocol === 'https:' ? await import('node:https') : await import('node:http');
    return new Promise<Response>((resolve, reject) => {
      const h: Record<string, string> = { 'user-agent': 'keel-build', ...headers };
      if (Buffer.isBuffer(body)) h['content-length'] = String(body.length);
      const req = lib.request(u, { method, headers: h }, (res) => resolve({ status: res.statusCode ?? 0, headers: res.headers, res }));
      req.on('error', (err) => {
        const code = (err as NodeJS.ErrnoException).code;
        reject(new RegistryUnreachable(`registry ${this.registry}: ${method} ${u.pathname}: ${code === 'ECONNREFUSED' ? 'connection refused' : code === 'ENOTFOUND' ? 'host not found' : err.message}${code ? ` (${code})` : ''}`));
      });
      req.setTimeout(120_000, () => req.destroy(new Error('timed out')));
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else {
        (async () => {
          for await (const c of body) {
            if (!req.write(c)) await new Promise<void>((r) => req.once('drain', () => r()));
          }
          req.end();
        })().catch((err) => req.destroy(err as Error));
      }
    });
  }

  private async text(r: Response): Promise<string> {
    const chunks: Buffer[] = [];
    for await (const c of r.res) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  private async authenticate(wwwAuth: string): Promise<void> {
    const m = /^(\w+)\s+(.*)$/.exec(wwwAuth.trim());
    if (!m) throw new KeelError(`registry ${this.registry}: unreadable authentication challenge ${JSON.stringify(wwwAuth)}`);
    const scheme = m[1]!.toLowerCase();
    const params: Record<string, string> = {};
    for (const p of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) params[p[1]!] = p[2]!;
    const cred = credentialsFor(this.registry, this.opts);
    if (scheme === 'basic') {
      if (!cred) throw new KeelError(`registry ${this.registry}: authentication required (no credentials for it)`);
      this.challenge = { scheme: 'basic', params };
      this.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
      return;
    }
    if (scheme !== 'bearer' || !params.realm) throw new KeelError(`registry ${this.registry}: unsupported authentication scheme ${m[1]}`);
    this.challenge = { scheme: 'bearer', params };
    const url = new URL(params.realm);
    if (params.service) url.searchParams.set('service', params.service);
    url.searchParams.append('scope', `repository:${this.repository}:${this.actions}`);
    for (const s of this.extraScopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    if (cred) headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
    const r = await this.raw('GET', url.toString(), headers);
    const body = await this.text(r);
    if (r.status !== 200) throw new KeelError(`registry ${this.registry}: token request to ${url.host} failed: HTTP ${r.status}${cred ? '' : ' (no credentials given)'}`);
    let token: string | undefined;
    try {
      const doc = JSON.parse(body) as { token?: string; access_token?: string };
      token = doc.token ?? doc.access_token;
    } catch { /* below */ }
    if (!token) throw new KeelError(`registry ${this.registry}: the token server gave no token`);
    this.authorization = `Bearer ${token}`;
  }

  /** A request with authentication negotiated on the first 401 (bodies must be Buffers then). */
  async request(method: string, path: string, headers: Record<string, string> = {}, body?: Buffer | (() => AsyncIterable<Uint8Array>)): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const h = { ...headers };
      if (this.authorization) h.authorization = this.authorization;
      const r = await this.raw(method, path, h, typeof body === 'function' ? body() : body);
      if (r.status === 401 && attempt === 0) {
        const www = r.headers['www-authenticate'];
        r.res.resume();
        if (!www) throw new KeelError(`registry ${this.registry}: ${method} ${path}: unauthorized`);
        await this.authenticate(Array.isArray(www) ? www[0]! : www);
        continue;
      }
      return r;
    }
  }

  async fail(r: Response, what: string): Promise<never> {
    const body = await this.text(r).catch(() => '');
    let detail = '';
    try {
      const doc = JSON.parse(body) as { errors?: { code?: string; message?: string }[] };
      if (doc.errors?.length) detail = `: ${doc.errors.map((e) => `${e.code ?? ''} ${e.message ?? ''}`.trim()).join('; ')}`;
    } catch { /* not JSON */ }
    throw new KeelError(`registry ${this.registry}: ${what}: HTTP ${r.status}${detail}`);
  }

  path(kind: 'manifests' | 'blobs', ref: string): string {
    return `/v2/${this.repository}/${kind}/${ref}`;
  }

  async getManifest(ref: string): Promise<{ mediaType: string; digest: string; bytes: Buffer }> {
    const r = await this.request('GET', this.path('manifests', ref), { accept: ACCEPT_MANIFEST });
    if (r.status === 404) {
      await this.text(r);
      throw new KeelError(`registry ${this.registry}: ${this.repository}:${ref}: manifest unknown (no such image)`);
    }
    if (r.status !== 200) return this.fail(r, `manifest ${this.repository}:${ref}`);
    // 4 MiB, as containerd and the distribution registry cap manifests: refused while reading.
    const tooLarge = () => new KeelError(`registry ${this.registry}: manifest ${this.repository}:${ref} is larger than ${MAX_MANIFEST} bytes`);
    if (Number(r.headers['content-length'] ?? 0) > MAX_MANIFEST) { r.res.destroy(); throw tooLarge(); }
    const chunks: Buffer[] = [];
    let got = 0;
    for await (const c of r.res) {
      got += (c as Buffer).length;
      if (got > MAX_MANIFEST) { r.res.destroy(); throw tooLarge(); }
      chunks.push(c as Buffer);
    }
    const bytes = Buffer.concat(chunks);
    const { sha256 } = await import('../layers/index.js');
    const digest = sha256(bytes);
    if (ref.startsWith('sha256:') && ref !== digest) throw new KeelError(`registry ${this.registry}: manifest ${ref} has digest ${digest}`);
    let mediaType = String(r.headers['content-type'] ?? '').split(';')[0]!.trim();
    try {
      const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: string };
      if (doc.mediaType) mediaType = doc.mediaType;
    } catch {
      throw new KeelError(`registry ${this.registry}: manifest ${ref} is not JSON`);
    }
    return { mediaType, digest, bytes };
  }

  /** A blob's content as a stream (redirects followed); verification is the caller's (the store's). */
  async *getBlob(digest: string): AsyncGenerator<Buffer> {
    let r = await this.request('GET', this.path('blobs', digest));
    for (let hops = 0; r.status >= 300 && r.status < 400 && r.headers.location; hops++) {
      if (hops > 5) throw new KeelError(`registry ${this.registry}: blob ${digest}: too many redirects`);
      const loc = new URL(r.headers.location, this.base).toString();
      r.res.resume();
      // Redirect targets (storage) get no registry credentials.
      r = await this.raw('GET', loc, {});
    }
    if (r.status !== 200) {
      await this.fail(r, `blob ${digest}`);
    }
    for await (const c of r.res) yield c as Buffer;
  }

  async hasBlob(digest: string): Promise<boolean> {
    const r = await this.request('HEAD', this.path('blobs', digest));
    r.res.resume();
    if (r.status === 200) return true;
    if (r.status === 404) return false;
    return this.fail(r, `blob ${digest}`);
  }

  /** Tries to mount a blob from another repository of the same registry. */
  async mountBlob(digest: string, from: string): Promise<boolean> {
    const r = await this.request('POST', `/v2/${this.repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from)}`, { 'content-length': '0' }, Buffer.alloc(0));
    await this.text(r);
    if (r.status === 201) return true;
    if (r.status === 202) {
      // The registry started an upload instead: cancel it.
      const loc = r.headers.location;
      if (loc) {
        const d = await this.request('DELETE', loc);
        d.res.resume();
      }
      return false;
    }
    return false;
  }

  /** Uploads a blob: one PUT when small (or chunkSize 0), else PATCH chunks then the closing PUT. */
  async uploadBlob(digest: string, size: number, read: () => AsyncIterable<Buffer>): Promise<'monolithic' | 'chunked'> {
    const start = await this.request('POST', `/v2/${this.repository}/blobs/uploads/`, { 'content-length': '0' }, Buffer.alloc(0));
    await this.text(start);
    if (start.status !== 202 || !start.headers.location) return this.fail(start, `starting the upload of ${digest}`);
    let location = new URL(start.headers.location, this.base).toString();
    const withDigest = (loc: string) => {
      const u = new URL(loc);
      u.searchParams.set('digest', digest);
      return u.toString();
    };
    const chunk = this.opts.chunkSize ?? 16 << 20;
    if (chunk === 0 || size <= chunk) {
      const r = await this.request('PUT', withDigest(location), { 'content-type': 'application/octet-stream', 'content-length': String(size) }, () => read());
      await this.text(r);
      if (r.status !== 201) return this.fail(r, `uploading ${digest}`);
      return 'monolithic';
    }
    let offset = 0;
    let pending: Buffer[] = [];
    let pendingSize = 0;
    const flush = async () => {
      if (pendingSize === 0) return;
      const body = Buffer.concat(pending, pendingSize);
      const r = await this.request('PATCH', location, {
        'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + body.length - 1}`,
      }, body);
      await this.text(r);
      if (r.status !== 202 || !r.headers.location) return this.fail(r, `uploading a chunk of ${digest}`);
      location = new URL(r.headers.location, this.base).toString();
      offset += body.length;
      pending = [];
      pendingSize = 0;
    };
    for await (const c of read()) {
      let data = c;
      while (data.length > 0) {
        const take = Math.min(chunk - pendingSize, data.length);
        pending.push(data.subarray(0, take));
        pendingSize += take;
        data = data.subarray(take);
        if (pendingSize === chunk) await flush();
      }
    }
    await flush();
    const r = await this.request('PUT', withDigest(location), { 'content-length': '0' }, Buffer.alloc(0));
    await this.text(r);
    if (r.status !== 201) return this.fail(r, `finishing the upload of ${digest}`);
    return 'chunked';
  }

  async putManifest(ref: string, mediaType: string, bytes: Buffer): Promise<void> {
    const r = await this.request('PUT', this.path('manifests', ref), { 'content-type': mediaType }, bytes);
    await this.text(r);
    if (r.status !== 201 && r.status !== 200) return this.fail(r, `pushing manifest ${this.repository}:${ref}`);
  }
}

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);

/** Pulls `ref` for `platform` into the store (blobs verified) and tags it there by its familiar name. */
export async function pullImage(store: BuildStore, ref: ImageReference, platform: Platform, opts: RegistryOptions = {}): Promise<ResolvedImage> {
  const name = familiarName(ref);
  opts.progress?.info(`pulling ${name}`);
  const client = new RegistryClient(ref.registry, ref.repository, opts, 'pull');
  const { parseDigest } = await import('../layers/index.js');
  const { validateImageManifest, validateImageConfig, validateImageIndex } = await import('../spec/index.js');
  let m = await client.getManifest(ref.digest ?? ref.tag ?? 'latest');
  const layout = await store.layout();
  const release = await layout.hold();
  try {
    if (INDEX_TYPES.has(m.mediaType)) {
      const index = validateImageIndex(JSON.parse(m.bytes.toString('utf8')), `index of ${name}`) as ImageIndex;
      const pick = index.manifests.find((d) => d.platform && d.platform.os === platform.os && d.platform.architecture === platform.architecture &&
        (platform.variant === undefined || d.platform.variant === undefined || d.platform.variant === platform.variant));
      if (!pick) throw new KeelError(`${name}: no image for ${platform.os}/${platform.architecture} (has ${index.manifests.map((d) => d.platform ? `${d.platform.os}/${d.platform.architecture}` : '?').join(', ')})`);
      m = await client.getManifest(pick.digest);
    }
    const manifest = validateImageManifest(JSON.parse(m.bytes.toString('utf8')), `manifest of ${name}`) as ImageManifest;
    const cfgDesc = manifest.config;
    const cfgDigest = parseDigest(cfgDesc.digest);
    if (!(await layout.has(cfgDigest))) await layout.putStream(client.getBlob(cfgDesc.digest), { digest: cfgDigest, size: cfgDesc.size }, `config of ${name}`);
    const config = validateImageConfig(JSON.parse((await layout.readBytes(cfgDigest, cfgDesc.size)).toString('utf8')), `config of ${name}`) as ImageConfig;
    for (const l of manifest.layers) {
      const d = parseDigest(l.digest);
      if (await layout.has(d)) continue;
      opts.progress?.info(`pulling ${name}: layer ${d.slice(0, 19)} (${l.size} bytes)`);
      await layout.putStream(client.getBlob(l.digest), { digest: d, size: l.size }, `layer ${d} of ${name}`);
    }
    const mDigest = parseDigest(m.digest);
    if (!(await layout.has(mDigest))) await layout.putBytes(m.bytes, { digest: mDigest, size: m.bytes.length });
    const { recordLayers, storeTag } = await import('./images.js');
    const layers: LayerRef[] = await recordLayers(store, config, manifest.layers);
    for (const l of manifest.layers) addOrigin(store, l.digest, `${ref.registry}/${ref.repository}`);
    await layout.tag(storeTag(ref), { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length, platform: { os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) } });
    return { name, manifestDigest: m.digest, config, layers, blobs: manifest.layers as ContentDescriptor[] };
  } finally {
    await release();
  }
}

/** Remembers that a blob exists in a registry repository (a source for cross-repository mounts). */
function addOrigin(store: BuildStore, digest: string, repo: string): void {
  const file = join(store.root, 'origins', `${digest.replace(':', '-')}`);
  let list: string[] = [];
  try { list = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean); } catch { /* none yet */ }
  if (list.includes(repo)) return;
  list.push(repo);
  fs.mkdirSync(join(store.root, 'origins'), { recursive: true });
  fs.writeFileSync(`${file}.tmp-${process.pid}`, list.join('\n') + '\n');
  fs.renameSync(`${file}.tmp-${process.pid}`, file);
}

function origins(store: BuildStore, digest: string): string[] {
  try {
    return fs.readFileSync(join(store.root, 'origins', `${digest.replace(':', '-')}`), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

export interface PushReport {
  /** The document pushed (an image manifest, an image index, a cache manifest). */
  digest: string;
  uploaded: { digest: string; how: 'monolithic' | 'chunked' }[];
  mounted: string[];
  existing: string[];
}

/** A manifest to push: its bytes and descriptor, and the blobs it references (all in the store's layout). */
export interface PushDocument {
  descriptor: ContentDescriptor;
  bytes: Buffer;
  blobs: ContentDescriptor[];
}

/**
 * Pushes a document to `ref`: the blobs the registry lacks first (mounted from another repository of
 * the same registry when keel pulled or pushed them there, else uploaded from the store's layout),
 * then the document under `ref`'s tag, or its digest when `byDigest` or `ref` has no tag.
 */
export async function pushDocument(store: BuildStore, ref: ImageReference, doc: PushDocument, opts: RegistryOptions & { byDigest?: boolean }): Promise<PushReport> {
  const name = familiarName(ref);
  const client = new RegistryClient(ref.registry, ref.repository, opts, 'pull,push');
  const layout = await store.layout();
  const { parseDigest } = await import('../layers/index.js');
  const report: PushReport = { digest: doc.descriptor.digest, uploaded: [], mounted: [], existing: [] };
  const here = `${ref.registry}/${ref.repository}`;
  // Blobs known to be in other repositories of this registry can be mounted from there: the
  // token must grant pull on those repositories too.
  const sources = new Set<string>();
  for (const b of doc.blobs) {
    for (const o of origins(store, b.digest)) {
      if (o !== here && o.startsWith(`${ref.registry}/`)) sources.add(o.slice(ref.registry.length + 1));
    }
  }
  for (const repo of [...sources].slice(0, 8)) client.extraScopes.push(`repository:${repo}:pull`);
  for (const b of doc.blobs) {
    const d = parseDigest(b.digest);
    if (await client.hasBlob(b.digest)) {
      report.existing.push(b.digest);
      addOrigin(store, b.digest, here);
      continue;
    }
    let mounted = false;
    for (const o of origins(store, b.digest)) {
      const slash = o.indexOf('/');
      if (o.slice(0, slash) !== ref.registry || o === here) continue;
      if (await client.mountBlob(b.digest, o.slice(slash + 1))) {
        mounted = true;
        break;
      }
    }
    if (mounted) {
      report.mounted.push(b.digest);
    } else {
      opts.progress?.info(`pushing ${name}: blob ${b.digest.slice(0, 19)} (${b.size} bytes)`);
      const how = await client.uploadBlob(b.digest, b.size, () => layout.readBlob(d, b.size));
      report.uploaded.push({ digest: b.digest, how });
    }
    addOrigin(store, b.digest, here);
  }
  const tag = opts.byDigest ? undefined : ref.tag;
  await client.putManifest(tag ?? doc.descriptor.digest, doc.descriptor.mediaType, doc.bytes);
  return report;
}
