// A merged-/usr image, built here from scratch: a base whose /lib, /bin, /lib64 are symlinks into
// /usr, then layers written the way tar-making tools write them (paths through those symlinks),
// replacing a symlink by a directory and a directory by a symlink, whiting out through a
// symlinked parent, and an opaque directory below one. keel's unpack (both resolvers) must give
// the very tree umoci's unpack gives and containerd's snapshotter mounts (`ctr images import` +
// `ctr snapshots view --mounts`), file by file: type, mode, owner, mtime, content, link target, hardlinks.
//
// containerd is compared with its native snapshotter, which applies each layer onto a copy of
// the whole tree below it. Its overlayfs snapshotter (1.6) extracts a layer straight into the
// empty upper directory, where the lower layers' symlinks are not visible: `lib/x/...` then makes
// a real directory `lib` that hides the `lib -> usr/lib` symlink and everything under /usr/lib
// from the container. That is a defect of that code path, not the behaviour to copy.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { OciLayout, writeImage, newImageConfig, unpackImage, exportArchive, sha256, MediaType } from '../../src/layers/index.js';
import { tempDir, which, rawTar, snapshot, diffSnapshots, repoRoot, type RawEntry } from './helpers.js';

const dir = tempDir('merged-usr');
const layoutDir = join(dir, 'layout');
const TAG = 'merged';

const d = (name: string, extra: Partial<RawEntry> = {}): RawEntry => ({ name, type: '5', mode: 0o755, mtime: 1600000000, ...extra });
const f = (name: string, data: string, extra: Partial<RawEntry> = {}): RawEntry => ({ name, data, mode: 0o644, mtime: 1600000100, ...extra });
const l = (name: string, linkname: string): RawEntry => ({ name, type: '2', linkname, mode: 0o777, mtime: 1600000200 });
// A hardlink header carries its target's metadata, as tar writers make it (containerd applies a
// hardlink header's owner, mode and time to the shared inode; umoci and keel leave the inode be).
const h = (name: string, linkname: string, extra: Partial<RawEntry> = {}): RawEntry => ({ name, type: '1', linkname, mode: 0o644, mtime: 1600000100, ...extra });

const layers: RawEntry[][] = [
  // Base: merged /usr, as Debian 12, Fedora and Arch ship it.
  [
    d('usr/'), d('usr/bin/'), d('usr/lib/'), d('usr/lib64/'), d('usr/sbin/'), d('usr/lib/x86_64-linux-gnu/'),
    l('bin', 'usr/bin'), l('lib', 'usr/lib'), l('lib64', 'usr/lib64'), l('sbin', 'usr/sbin'),
    f('usr/bin/sh', '#!shell\n', { mode: 0o755 }), f('usr/lib/x86_64-linux-gnu/libc.so.6', 'libc'),
    l('usr/lib64/ld-linux-x86-64.so.2', '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'),
    f('usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', 'ld.so', { mode: 0o755 }),
    d('usr/lib/old/'), f('usr/lib/old/gone', 'old'), d('usr/lib/tobelink/'), f('usr/lib/tobelink/x', 'x'),
    l('usr/lib/linkdir', 'x86_64-linux-gnu'), d('usr/lib/opq/'), f('usr/lib/opq/a', 'a'), f('usr/lib/opq/b', 'b'),
    d('usr/sbin/'), f('usr/sbin/init', 'init', { mode: 0o755 }), d('etc/'), f('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\n'),
  ],
  // A tool-made layer: every path goes through the base's symlinks.
  [
    d('lib/x86_64-linux-gnu/', { mode: 0o750, mtime: 1600001000 }),
    f('lib/x86_64-linux-gnu/libfoo.so.1', 'foo', { mode: 0o755 }), l('lib/x86_64-linux-gnu/libfoo.so', 'libfoo.so.1'),
    f('bin/app', 'app', { mode: 0o755, uid: 1000, gid: 1000 }), h('bin/app-hardlink', 'bin/app', { mode: 0o755, uid: 1000, gid: 1000 }),
    d('lib/newdir/'), f('lib/newdir/file', 'new'), f('lib64/extra', 'extra'),
    f('./lib/x86_64-linux-gnu/dot-slash-name', 'dot'),
  ],
  // Replacements and whiteouts.
  [
    d('usr/lib/linkdir/', { mode: 0o700 }), f('usr/lib/linkdir/inside', 'was a symlink'),
    l('usr/lib/tobelink', 'x86_64-linux-gnu'),
    f('lib/.wh.old', ''), f('bin/.wh.sh', ''),
    f('lib/opq/.wh..wh..opq', ''), f('lib/opq/c', 'c'),
    d('sbin/', { mode: 0o755, mtime: 1600002000 }), f('sbin/real', 'sbin is a directory now'),
    f('lib64/extra2', 'extra2'), h('lib64/hard-extra', 'lib64/extra2'),
  ],
];

before(async () => {
  const store = await OciLayout.create(layoutDir);
  const written = [];
  for (const entries of layers) {
    const tar = rawTar(entries);
    const blob = gzipSync(tar);
    const info = await store.putBytes(blob);
    written.push({ descriptor: { mediaType: MediaType.layerGzip, digest: info.digest, size: info.size }, diffID: sha256(tar) });
  }
  await writeImage(store, { config: newImageConfig({ config: { Cmd: ['/bin/app'] } }), layers: written, tag: TAG });
});

let bundles = 0;
async function keelTree(resolver: 'auto' | 'walk'): Promise<string> {
  const bundle = join(dir, `keel-${resolver}-${++bundles}`);
  await unpackImage(layoutDir, TAG, bundle, { apply: { resolver } });
  return join(bundle, 'rootfs');
}

test('keel follows the merged-/usr symlinks inside the rootfs: files land under /usr, replacements and whiteouts apply', async () => {
  const root = await keelTree('auto');
  const read = (p: string) => fs.readFileSync(join(root, p), 'utf8');
  assert.equal(read('usr/lib/x86_64-linux-gnu/libfoo.so.1'), 'foo');
  assert.equal(read('usr/lib/x86_64-linux-gnu/dot-slash-name'), 'dot');
  assert.equal(read('usr/bin/app'), 'app');
  assert.equal(fs.statSync(join(root, 'usr/bin/app-hardlink')).ino, fs.statSync(join(root, 'usr/bin/app')).ino);
  assert.equal(read('usr/lib/newdir/file'), 'new');
  assert.equal(read('usr/lib64/extra'), 'extra');
  assert.equal(fs.lstatSync(join(root, 'lib')).isSymbolicLink(), true, 'the merged-/usr link itself stays');
  assert.equal(fs.statSync(join(root, 'usr/lib/x86_64-linux-gnu')).mode & 0o777, 0o750);
  assert.ok(fs.lstatSync(join(root, 'usr/lib/linkdir')).isDirectory());
  assert.equal(fs.readlinkSync(join(root, 'usr/lib/tobelink')), 'x86_64-linux-gnu');
  assert.ok(!fs.existsSync(join(root, 'usr/lib/old')), 'whiteout through the lib symlink');
  assert.ok(!fs.existsSync(join(root, 'usr/bin/sh')), 'whiteout through the bin symlink');
  assert.deepEqual(fs.readdirSync(join(root, 'usr/lib/opq')), ['c'], 'opaque directory below a symlink');
  assert.ok(fs.lstatSync(join(root, 'sbin')).isDirectory(), 'a directory entry replaces the sbin symlink');
  assert.equal(read('usr/sbin/init'), 'init');
  assert.equal(fs.statSync(join(root, 'usr/lib64/hard-extra')).ino, fs.statSync(join(root, 'usr/lib64/extra2')).ino);
});

test('keel-build unpack --no-follow-symlinks refuses the same image in one line, leaving no bundle', async () => {
  const bundle = join(dir, 'keel-refuse');
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/keel-build.ts'), 'unpack', '--no-follow-symlinks', `${layoutDir}:${TAG}`, bundle], { cwd: repoRoot, encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^[^\n]*layer 2\/3 \(sha256:[0-9a-f]{12}\): "lib\/x86_64-linux-gnu\/": refusing to write through symlink "lib"\n$/);
  assert.ok(!fs.existsSync(bundle));
});

test('the O_NOFOLLOW walk (kernels without openat2) gives the same tree as openat2', async () => {
  assert.deepEqual(diffSnapshots(await snapshot(await keelTree('auto')), await snapshot(await keelTree('walk'))), []);
});

test('keel unpacks the merged-/usr image exactly as umoci does', async (t) => {
  if (!which('umoci')) return t.skip('umoci not installed');
  const bundle = join(dir, 'umoci');
  const r = spawnSync('umoci', ['unpack', '--image', `${layoutDir}:${TAG}`, bundle], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const theirs = await snapshot(join(bundle, 'rootfs'), { skipXattr: () => true });
  const ours = await snapshot(await keelTree('auto'), { skipXattr: () => true });
  assert.deepEqual(diffSnapshots(ours, theirs), []);
});

// containerd, started here with its own root, state and socket.
let daemon: ChildProcess | undefined;
const cdir = join(dir, 'containerd');
const sock = join(cdir, 'containerd.sock');
const NS = `keel-merged-usr-${process.pid}`;
const ctr = (args: string[]) => spawnSync('ctr', ['--address', sock, '--namespace', NS, ...args], { encoding: 'utf8', timeout: 120_000 });
let viewed = false;

after(() => {
  if (viewed) ctr(['snapshots', '--snapshotter', 'native', 'rm', 'keel-view']);
  if (daemon) {
    ctr(['images', 'rm', `localhost/keel-test/merged-usr:${TAG}`]);
    daemon.kill('SIGTERM');
  }
  spawnSync('sh', ['-c', `grep -o ' ${cdir}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l`]);
});

test('keel unpacks the merged-/usr image exactly as containerd\'s snapshotter mounts it', async (t) => {
  if (!which('containerd') || !which('ctr')) return t.skip('containerd not installed');
  fs.mkdirSync(cdir, { recursive: true });
  fs.writeFileSync(join(cdir, 'config.toml'), [
    'version = 2', `root = "${cdir}/root"`, `state = "${cdir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
    '[grpc]', `  address = "${sock}"`, '[ttrpc]', `  address = "${sock}.ttrpc"`, '[debug]', '  address = ""', '[metrics]', '  address = ""', '',
  ].join('\n'));
  const log = fs.openSync(join(cdir, 'containerd.log'), 'a');
  daemon = spawn('containerd', ['--config', join(cdir, 'config.toml')], { stdio: ['ignore', log, log] });
  const deadline = Date.now() + 20_000;
  while (!fs.existsSync(sock) || ctr(['version']).status !== 0) {
    if (daemon.exitCode !== null || Date.now() > deadline) return t.skip(`containerd did not start: ${fs.readFileSync(join(cdir, 'containerd.log'), 'utf8').trim().split('\n').slice(-2).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const archive = join(cdir, 'image.tar');
  const out = fs.createWriteStream(archive);
  await exportArchive(await OciLayout.open(layoutDir), out, { tags: [TAG] });
  await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
  const imp = ctr(['images', 'import', '--snapshotter', 'native', '--base-name', 'localhost/keel-test/merged-usr', archive]);
  assert.equal(imp.status, 0, imp.stderr);
  // The image's top snapshot: its chain ID (image-spec) over the config's diff_ids.
  const { readImage } = await import('../../src/layers/index.js');
  const img = await readImage(await OciLayout.open(layoutDir), TAG);
  const chain = img.config.rootfs.diff_ids.reduce((parent, diff) => (parent ? sha256(`${parent} ${diff}`) : diff), '');
  const v = ctr(['snapshots', '--snapshotter', 'native', 'view', '--mounts', 'keel-view', chain]);
  assert.equal(v.status, 0, v.stderr);
  viewed = true;
  const mounts = JSON.parse(v.stdout) as { Type: string; Source: string }[];
  assert.equal(mounts.length, 1);
  assert.equal(mounts[0]!.Type, 'bind');
  const mountPoint = mounts[0]!.Source;
  // containerd's native snapshotter copies the tree below each layer: the directories it copies
  // or changes get the time of the copy, so directory times are left out here (umoci's match).
  const theirs = await snapshot(mountPoint, { skipXattr: () => true, dirMtimes: false });
  const ours = await snapshot(await keelTree('auto'), { skipXattr: () => true, dirMtimes: false });
  assert.deepEqual(diffSnapshots(ours, theirs), []);
});
