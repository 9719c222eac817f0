// Docker's image formats used exactly like OCI ones: podman's docker-archive export is loaded into
// the store (`keel-build load`), built FROM and run; the same image pushed by skopeo as a Docker
// schema 2 manifest, and behind a Docker manifest list, is pulled FROM a registry; foreign
// (non-distributable) layers are reported by name.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { OciLayout, readImage, unpackImage, writeImage, newImageConfig, importArchive, sha256, MediaType, TarWriter } from '../../src/layers/index.js';
import { tempDir, which, repoRoot } from './helpers.js';
import { keel, ensureBuilt, cliEnv } from '../foundation/cli.js';

const dir = tempDir('docker-formats');
const store = join(dir, 'store');
const NAME = 'localhost/keel-test/bb:1';
const children: ChildProcess[] = [];
after(() => { for (const c of children) c.kill('SIGKILL'); });

function keelBuild(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/keel-build.ts'), ...args], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
}

/** An image made by podman from a static busybox (its own storage, vfs), saved as a docker-archive. */
function podmanDockerArchive(): { archive: string; imageId: string } | string {
  if (!which('podman')) return 'podman not installed';
  const rootfs = join(dir, 'rootfs');
  fs.mkdirSync(join(rootfs, 'bin'), { recursive: true });
  fs.copyFileSync('/bin/busybox', join(rootfs, 'bin/busybox'));
  fs.chmodSync(join(rootfs, 'bin/busybox'), 0o755);
  for (const applet of ['sh', 'cat', 'echo']) fs.symlinkSync('busybox', join(rootfs, 'bin', applet));
  const podman = (args: string[]) => spawnSync('podman', ['--root', join(dir, 'podman-root'), '--runroot', join(dir, 'podman-run'), '--storage-driver', 'vfs', ...args], { encoding: 'utf8' });
  spawnSync('tar', ['-C', rootfs, '-cf', join(dir, 'rootfs.tar'), '.']);
  const imp = podman(['import', '--change', 'CMD ["/bin/sh","-c","echo from podman"]', join(dir, 'rootfs.tar'), NAME]);
  if (imp.status !== 0) return `podman import failed: ${imp.stderr.trim()}`;
  const archive = join(dir, 'bb-docker.tar');
  const save = podman(['save', '--format', 'docker-archive', '-o', archive, NAME]);
  if (save.status !== 0) return `podman save failed: ${save.stderr.trim()}`;
  return { archive, imageId: imp.stdout.trim().split('\n').pop()! };
}
const made = fs.existsSync('/bin/busybox') ? podmanDockerArchive() : 'busybox not installed';

test('podman\'s docker-archive loads into the store with its tag and image ID, builds FROM and runs in keel', async (t) => {
  if (typeof made === 'string') return t.skip(made);
  const load = keelBuild(['load', '--store', store, made.archive]);
  assert.equal(load.status, 0, load.stderr);
  assert.match(load.stdout, /^loaded localhost\/keel-test\/bb:1 sha256:[0-9a-f]{64}\n$/);
  const img = await readImage(await OciLayout.open(join(store, 'oci')), NAME);
  assert.equal(img.manifest.mediaType, MediaType.dockerManifest);
  assert.equal(img.config.rootfs.diff_ids.length, 1);
  assert.equal(img.configDescriptor.digest, made.imageId.startsWith('sha256:') ? made.imageId : `sha256:${made.imageId}`, 'the config is stored byte for byte (its digest is podman\'s image ID)');

  const ctx = join(dir, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(join(ctx, 'Dockerfile'), `FROM ${NAME}\nRUN echo built from a docker-archive > /built\nCMD ["cat", "/built"]\n`);
  const b = keelBuild(['build', '--store', store, '-q', '-t', 'from-docker:1', ctx]);
  assert.equal(b.status, 0, b.stderr);
  const bundle = join(dir, 'bundle');
  const u = keelBuild(['unpack', `${join(store, 'oci')}:from-docker:1`, bundle]);
  assert.equal(u.status, 0, u.stderr);
  ensureBuilt();
  const run = spawnSync(keel, ['run', `keel-docker-archive-${process.pid}`], { cwd: bundle, encoding: 'utf8', timeout: 30000, env: cliEnv() });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'built from a docker-archive\n');
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
}

test('a Docker schema 2 manifest and a Docker manifest list, pushed by skopeo, are pulled FROM a registry', async (t) => {
  if (typeof made === 'string') return t.skip(made);
  if (!which('docker-registry') || !which('skopeo')) return t.skip('docker-registry or skopeo not installed');
  const port = await freePort();
  const regDir = join(dir, 'registry');
  fs.mkdirSync(regDir);
  fs.writeFileSync(join(regDir, 'config.yml'), `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${regDir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('docker-registry', ['serve', join(regDir, 'config.yml')], { stdio: 'ignore' });
  children.push(child);
  const reg = `127.0.0.1:${port}`;
  for (let i = 0; i < 200 && !(await fetch(`http://${reg}/v2/`).then((r) => r.ok, () => false)); i++) await new Promise((r) => setTimeout(r, 25));
  const cp = spawnSync('skopeo', ['copy', '--dest-tls-verify=false', '--format', 'v2s2', `docker-archive:${made.archive}`, `docker://${reg}/bb:1`], { encoding: 'utf8' });
  assert.equal(cp.status, 0, cp.stderr);
  // A manifest list naming that manifest for this platform.
  const head = await fetch(`http://${reg}/v2/bb/manifests/1`, { headers: { accept: MediaType.dockerManifest } });
  assert.equal(head.headers.get('content-type'), MediaType.dockerManifest);
  const bytes = Buffer.from(await head.arrayBuffer());
  const list = { schemaVersion: 2, mediaType: MediaType.dockerManifestList, manifests: [{ mediaType: MediaType.dockerManifest, digest: sha256(bytes), size: bytes.length, platform: { architecture: 'amd64', os: 'linux' } }] };
  const put = await fetch(`http://${reg}/v2/bb/manifests/list`, { method: 'PUT', headers: { 'content-type': MediaType.dockerManifestList }, body: JSON.stringify(list) });
  assert.equal(put.status, 201, await put.text());

  for (const tag of ['1', 'list']) {
    const ctx = join(dir, `ctx-${tag}`);
    fs.mkdirSync(ctx);
    fs.writeFileSync(join(ctx, 'Dockerfile'), `FROM ${reg}/bb:${tag}\nRUN echo pulled > /pulled\n`);
    const b = keelBuild(['build', '--store', join(dir, `store-${tag}`), '-q', '-t', `pulled:${tag}`, ctx]);
    assert.equal(b.status, 0, b.stderr);
    const bundle = join(dir, `bundle-${tag}`);
    await unpackImage(join(dir, `store-${tag}`, 'oci'), `pulled:${tag}`, bundle);
    assert.equal(fs.readFileSync(join(bundle, 'rootfs/pulled'), 'utf8'), 'pulled\n');
    assert.ok(fs.lstatSync(join(bundle, 'rootfs/bin/busybox')).isFile());
  }
});

test('foreign (non-distributable) layers are reported by name, in a layout and in a docker-archive', async () => {
  const layoutDir = join(dir, 'foreign-layout');
  const layout = await OciLayout.create(layoutDir);
  const foreign = { mediaType: MediaType.layerNondistGzip, digest: sha256('not here'), size: 8, urls: ['https://example.invalid/layer.tar.gz'] };
  await writeImage(layout, { config: newImageConfig({}), layers: [{ descriptor: foreign, diffID: sha256('x') }], tag: 'foreign' });
  await assert.rejects(unpackImage(layoutDir, 'foreign', join(dir, 'never')), /layer 1\/1 \(sha256:[0-9a-f]{12}\) is a non-distributable \(foreign\) layer that .* does not hold; its content is at https:\/\/example\.invalid\/layer\.tar\.gz/);
  assert.ok(!fs.existsSync(join(dir, 'never')));

  // A docker-archive (as Windows images are saved) whose manifest.json names a foreign layer.
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'windows', rootfs: { type: 'layers', diff_ids: [sha256('base')] } }));
  const entries = [{ Config: 'config.json', RepoTags: ['win:1'], Layers: ['base.tar'], LayerSources: { [sha256('base')]: { mediaType: MediaType.dockerLayerForeignGzip, size: 10, digest: sha256('blob'), urls: ['https://example.invalid/base'] } } }];
  const chunks: Buffer[] = [];
  const tw = new TarWriter({ write: (c) => { chunks.push(c); } });
  const manifest = Buffer.from(JSON.stringify(entries));
  await tw.add({ path: 'config.json', type: 'file', mode: 0o644, uid: 0, gid: 0, size: config.length, mtime: 0 }, config);
  await tw.add({ path: 'manifest.json', type: 'file', mode: 0o644, uid: 0, gid: 0, size: manifest.length, mtime: 0 }, manifest);
  await tw.finish();
  await assert.rejects(importArchive((async function* () { yield* chunks; })(), await OciLayout.create(join(dir, 'foreign-import'))),
    /archive: win:1: layer 1 \(sha256:[0-9a-f]{64}\) is a non-distributable \(foreign\) layer: the archive has only its URLs \(https:\/\/example\.invalid\/base\)/);
});
