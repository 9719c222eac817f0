import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { OciLayout, writeLayer, writeImage, newImageConfig, changesFromTree, resolveUser, unpackImage, parseLayoutRef } from '../../src/layers/index.js';
import { checkRuntimeConfig } from '../../src/spec/index.js';
import { defaultSpec } from '../../src/runtime/spec-default.js';
import { tempDir, busyboxRootfs, which, repoRoot, snapshot, diffSnapshots } from './helpers.js';
import { keel, ensureBuilt, cliEnv } from '../foundation/cli.js';

const tmp = tempDir('unpack');
const passwd = 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n# comment\nbroken line\n';
const group = 'root:x:0:\napp:x:1000:\nextra:x:2000:app,other\nwheel:x:10:root,app\n';
const rootfs = busyboxRootfs(tmp, { passwd, group });
fs.mkdirSync(join(rootfs, 'home', 'app'), { recursive: true });
fs.chownSync(join(rootfs, 'home', 'app'), 1000, 1000);
const layoutDir = join(tmp, 'layout');

function keelBuild(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/keel-build.ts'), ...args], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ready = (async () => {
  const store = await OciLayout.create(layoutDir);
  const base = await writeLayer(store, changesFromTree(rootfs));
  const extraDir = join(tmp, 'extra');
  fs.mkdirSync(join(extraDir, 'work'), { recursive: true });
  fs.writeFileSync(join(extraDir, 'work', 'hello.txt'), 'hi\n');
  const extra = await writeLayer(store, changesFromTree(extraDir), { compression: 'zstd' });
  await writeImage(store, {
    config: newImageConfig({
      created: '2024-01-02T03:04:05Z',
      config: {
        User: 'app', WorkingDir: '/work', Env: ['FOO=bar', 'PATH=/bin:/usr/bin'],
        Entrypoint: ['/bin/sh', '-c'], Cmd: ['id; pwd; echo "$FOO $HOME $PATH"; cat hello.txt'],
        Labels: { 'com.example.label': 'yes' }, ExposedPorts: { '80/tcp': {}, '53/udp': {} }, StopSignal: 'SIGINT',
      },
    }),
    layers: [base, extra],
    tag: 'app',
    annotations: { 'org.opencontainers.image.title': 'app image' },
  });
  await writeImage(store, { config: newImageConfig(), layers: [base], tag: 'plain' });
})();

test('User is resolved against the image\'s /etc/passwd and /etc/group as runc and umoci do (supplementary groups unless a group is given)', async () => {
  await ready;
  const cases: [string | undefined, { uid: number; gid: number; additionalGids: number[] }][] = [
    [undefined, { uid: 0, gid: 0, additionalGids: [10] }],
    ['', { uid: 0, gid: 0, additionalGids: [10] }],
    ['root', { uid: 0, gid: 0, additionalGids: [10] }],
    ['app', { uid: 1000, gid: 1000, additionalGids: [2000, 10] }],
    ['app:extra', { uid: 1000, gid: 2000, additionalGids: [] }],
    ['1000', { uid: 1000, gid: 1000, additionalGids: [2000, 10] }],
    ['4242', { uid: 4242, gid: 0, additionalGids: [] }],
    ['4242:7', { uid: 4242, gid: 7, additionalGids: [] }],
    ['app:7', { uid: 1000, gid: 7, additionalGids: [] }],
  ];
  for (const [spec, want] of cases) {
    const got = await resolveUser(rootfs, spec);
    assert.deepEqual({ uid: got.uid, gid: got.gid, additionalGids: got.additionalGids }, want, `User ${JSON.stringify(spec)}`);
  }
  await assert.rejects(resolveUser(rootfs, 'nobody-here'), /no user "nobody-here" in \/etc\/passwd/);
  await assert.rejects(resolveUser(rootfs, 'app:nogroup'), /no group "nogroup" in \/etc\/group/);
  await assert.rejects(resolveUser(rootfs, 'a:b:c'), /expected USER or USER:GROUP/);
});

test('an /etc/passwd that is a symlink is followed inside the rootfs only, never to the host\'s', async () => {
  const r = join(tmp, 'symlinked-etc');
  fs.mkdirSync(join(r, 'etc'), { recursive: true });
  fs.mkdirSync(join(r, 'real'));
  fs.writeFileSync(join(r, 'real', 'passwd'), 'inside:x:77:88::/:/bin/sh\n');
  fs.symlinkSync('/real/passwd', join(r, 'etc', 'passwd'));
  assert.equal((await resolveUser(r, 'inside')).uid, 77);
  fs.rmSync(join(r, 'etc', 'passwd'));
  fs.symlinkSync('../../../../../../../../../../etc/passwd', join(r, 'etc', 'passwd')); // would be the host's
  await assert.rejects(resolveUser(r, 'root'), /no user "root"/);
});

test('keel-build unpack makes rootfs + a complete, schema-valid config.json from the image config, and runc runs it', async (t) => {
  await ready;
  const bundle = join(tmp, 'bundle');
  const r = keelBuild(['unpack', `${layoutDir}:app`, bundle]);
  assert.equal(r.status, 0, r.stderr);
  const config = JSON.parse(fs.readFileSync(join(bundle, 'config.json'), 'utf8'));
  const check = checkRuntimeConfig(config);
  assert.ok(check.ok, JSON.stringify(check));
  const p = config.process;
  assert.deepEqual(p.args, ['/bin/sh', '-c', 'id; pwd; echo "$FOO $HOME $PATH"; cat hello.txt']);
  assert.deepEqual(p.user, { uid: 1000, gid: 1000, additionalGids: [2000, 10] });
  assert.equal(p.cwd, '/work');
  assert.deepEqual(p.env, ['PATH=/bin:/usr/bin', 'TERM=xterm', 'FOO=bar', 'HOME=/home/app']);
  assert.equal(p.terminal, false);
  // Everything else is the runtime's default spec (what `keel spec`/`runc spec` write).
  const def = defaultSpec();
  assert.deepEqual(config.mounts, def.mounts);
  assert.deepEqual(config.linux, def.linux);
  assert.deepEqual(p.capabilities, def.process!.capabilities);
  assert.deepEqual(p.rlimits, def.process!.rlimits);
  assert.deepEqual(config.root, { path: 'rootfs', readonly: false });
  assert.deepEqual(config.linux.namespaces.map((n: { type: string }) => n.type), ['pid', 'network', 'ipc', 'uts', 'mount']);
  assert.equal(config.annotations['com.example.label'], 'yes');
  assert.equal(config.annotations['org.opencontainers.image.title'], 'app image');
  assert.equal(config.annotations['org.opencontainers.image.exposedPorts'], '80/tcp,53/udp');
  assert.equal(config.annotations['org.opencontainers.image.stopSignal'], 'SIGINT');
  assert.equal(config.annotations['org.opencontainers.image.created'], '2024-01-02T03:04:05Z');
  assert.equal(fs.statSync(join(bundle, 'rootfs', 'home', 'app')).uid, 1000);

  if (!which('runc')) return t.skip('runc not installed');
  const run = spawnSync('runc', ['run', `keel-unpack-${process.pid}`], { cwd: bundle, encoding: 'utf8', timeout: 20000 });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'uid=1000(app) gid=1000(app) groups=10(wheel),2000(extra)\n/work\nbar /home/app /bin:/usr/bin\nhi\n');
});

test('keel run runs the unpacked bundle with the same result as runc', async () => {
  await ready;
  const bundle = join(tmp, 'bundle-keel');
  await unpackImage(layoutDir, 'app', bundle);
  ensureBuilt();
  const run = spawnSync(keel, ['run', `keel-unpack-k-${process.pid}`], { cwd: bundle, encoding: 'utf8', timeout: 20000, env: cliEnv() });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'uid=1000(app) gid=1000(app) groups=10(wheel),2000(extra)\n/work\nbar /home/app /bin:/usr/bin\nhi\n');
});

test('the bundle matches what umoci unpack makes from the same layout: same rootfs, same process', async (t) => {
  await ready;
  if (!which('umoci')) return t.skip('umoci not installed');
  // umoci 0.4 does not know zstd layers: compare on the gzip-only image.
  const ours = join(tmp, 'ours-plain');
  const theirs = join(tmp, 'umoci-plain');
  await unpackImage(layoutDir, 'plain', ours);
  const u = spawnSync('umoci', ['unpack', '--image', `${layoutDir}:plain`, theirs], { encoding: 'utf8' });
  assert.equal(u.status, 0, u.stderr);
  assert.deepEqual(diffSnapshots(await snapshot(join(theirs, 'rootfs')), await snapshot(join(ours, 'rootfs'))), []);
  const a = JSON.parse(fs.readFileSync(join(ours, 'config.json'), 'utf8'));
  const b = JSON.parse(fs.readFileSync(join(theirs, 'config.json'), 'utf8'));
  assert.deepEqual(a.process.args, b.process.args);
  assert.deepEqual(a.process.user, b.process.user);
  assert.equal(a.process.cwd, b.process.cwd);
  assert.deepEqual(a.mounts.map((m: { destination: string }) => m.destination), b.mounts.map((m: { destination: string }) => m.destination));
  assert.deepEqual(a.linux.namespaces, b.linux.namespaces);
});

test('unpack refuses a non-empty bundle and leaves nothing behind when a layer is corrupt', async () => {
  await ready;
  const busy = join(tmp, 'busy');
  fs.mkdirSync(busy);
  fs.writeFileSync(join(busy, 'x'), '');
  await assert.rejects(unpackImage(layoutDir, 'app', busy), /already exists and is not empty/);
  assert.deepEqual(fs.readdirSync(busy), ['x']);

  const broken = join(tmp, 'broken-layout');
  fs.cpSync(layoutDir, broken, { recursive: true });
  const store = await OciLayout.open(broken);
  const manifest = JSON.parse(fs.readFileSync(store.blobPath((await store.resolve('app')).descriptor.digest as `sha256:${string}`), 'utf8'));
  const layerPath = store.blobPath(manifest.layers[1].digest);
  const data = fs.readFileSync(layerPath);
  data[data.length - 20] ^= 0xff;
  fs.writeFileSync(layerPath, data);
  const target = join(tmp, 'never');
  await assert.rejects(unpackImage(broken, 'app', target), /layer 2\/2.*(corrupt|checksum)/);
  assert.ok(!fs.existsSync(target), 'the half-made bundle was removed');
  const r = keelBuild(['unpack', `${broken}:nope`, target]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no image tagged "nope" \(tags: app, plain\)/);
  assert.equal(r.stderr.trim().split('\n').length, 1, 'one line');
});

test('keel-build images and inspect describe the layout', async () => {
  await ready;
  const list = keelBuild(['images', layoutDir]);
  assert.equal(list.status, 0, list.stderr);
  const lines = list.stdout.trim().split('\n');
  assert.match(lines[0]!, /^TAG\s+DIGEST\s+PLATFORM\s+CREATED\s+SIZE\s+LAYERS$/);
  assert.match(lines[1]!, /^app\s+sha256:[0-9a-f]{12}\s+linux\/\S+\s+2024-01-02T03:04:05Z\s+\S+\s+2$/);
  assert.match(lines[2]!, /^plain\s/);
  const json = JSON.parse(keelBuild(['images', '--json', layoutDir]).stdout);
  assert.deepEqual(json.map((i: { tag: string }) => i.tag), ['app', 'plain']);
  const info = JSON.parse(keelBuild(['inspect', `${layoutDir}:app`]).stdout);
  assert.equal(info.Config.User, 'app');
  assert.equal(info.Layers.length, 2);
  assert.equal(info.Layers[1].MediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
  const raw = keelBuild(['inspect', '--config', `${layoutDir}:app`]);
  assert.equal(JSON.parse(raw.stdout).config.WorkingDir, '/work');
  assert.deepEqual(parseLayoutRef(`${layoutDir}:app`), { layout: layoutDir, ref: 'app' });
  assert.deepEqual(parseLayoutRef(layoutDir), { layout: layoutDir, ref: undefined });
});

test('an image written without layers gets one empty layer (the manifest schema wants one) and unpacks to an empty rootfs', async () => {
  const store = await OciLayout.create(join(tmp, 'empty-layout'));
  const img = await writeImage(store, { config: newImageConfig({ config: { Cmd: ['/nothing'] } }), layers: [], tag: 'scratch' });
  assert.equal(img.manifest.layers.length, 1);
  assert.equal(img.config.rootfs.diff_ids.length, 1);
  const bundle = join(tmp, 'empty-bundle');
  const r = await unpackImage(store.root, 'scratch', bundle);
  assert.deepEqual(fs.readdirSync(join(bundle, 'rootfs')), []);
  assert.deepEqual(r.spec.process!.args, ['/nothing']);
  await assert.rejects(writeImage(store, { config: newImageConfig(), layers: [], emptyLayer: false }), /at least one layer/);
});

test('an unprivileged user unpacks with --rootless: files are the caller\'s, config.json maps the caller to root in a user namespace', async (t) => {
  await ready;
  if (!which('setpriv')) return t.skip('setpriv not installed');
  const dir = join(tmp, 'rootless');
  fs.mkdirSync(dir);
  fs.cpSync(layoutDir, join(dir, 'layout'), { recursive: true });
  spawnSync('chmod', ['-R', 'a+rX', tmp]);
  fs.chownSync(dir, 65534, 65534);
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', join(repoRoot, 'src/cli/keel-build.ts'), 'unpack', '--rootless', `${join(dir, 'layout')}:plain`, join(dir, 'bundle')], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '', HOME: dir } });
  assert.equal(r.status, 0, r.stderr);
  const config = JSON.parse(fs.readFileSync(join(dir, 'bundle', 'config.json'), 'utf8'));
  assert.deepEqual(config.linux.uidMappings, [{ containerID: 0, hostID: 65534, size: 1 }]);
  assert.ok(config.linux.namespaces.some((n: { type: string }) => n.type === 'user'));
  assert.equal(fs.statSync(join(dir, 'bundle', 'rootfs', 'bin', 'busybox')).uid, 65534);
  assert.ok(checkRuntimeConfig(config).ok);
});
