// --platform linux/amd64,linux/arm64: each platform's image is built (arm64 RUN steps through
// qemu-user-static, registered in binfmt_misc with the F flag by this test under a name of its own
// and removed afterwards), TARGETPLATFORM/TARGETARCH/BUILDPLATFORM are as BuildKit sets them, the
// result is one image index, and FROM of an index picks the platform's manifest. The arm64 busybox
// is Debian's busybox-static:arm64, fetched with apt-get into a private apt state directory.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { skipReason, context, newStore, buildWith, tempDir, cli, mountsUnder } from './helpers.js';

const BINFMT = '/proc/sys/fs/binfmt_misc';
const QEMU = '/usr/bin/qemu-aarch64-static';
const handler = `keel-test-aarch64-${process.pid}`;
let mountedBinfmt = false;
let registered = false;
let busyboxArm64: string | undefined;
let why: string | undefined = skipReason ?? (!fs.existsSync(QEMU) ? 'qemu-user-static not installed' : undefined);

/** Debian's static busybox for arm64, downloaded once per machine into /var/cache (as the VM lane's kernel; /tmp is left as found). */
function fetchBusyboxArm64(): string | undefined {
  const dir = '/var/cache/keel-test/busybox-arm64';
  const bin = join(dir, 'busybox');
  if (fs.existsSync(bin)) return bin;
  fs.mkdirSync(join(dir, 'lists', 'partial'), { recursive: true });
  fs.mkdirSync(join(dir, 'cache', 'archives', 'partial'), { recursive: true });
  const apt = ['-q', '-o', 'APT::Sandbox::User=root', '-o', 'APT::Architectures::=amd64', '-o', 'APT::Architectures::=arm64',
    '-o', `Dir::State::Lists=${dir}/lists`, '-o', `Dir::Cache=${dir}/cache`, '-o', 'Debug::NoLocking=1'];
  if (spawnSync('apt-get', [...apt, 'update'], { cwd: dir, stdio: 'ignore', timeout: 300_000 }).status !== 0) return undefined;
  if (spawnSync('apt-get', [...apt, 'download', 'busybox-static:arm64'], { cwd: dir, stdio: 'ignore', timeout: 300_000 }).status !== 0) return undefined;
  const deb = fs.readdirSync(dir).find((n) => n.endsWith('_arm64.deb'));
  if (!deb) return undefined;
  if (spawnSync('dpkg-deb', ['-x', join(dir, deb), join(dir, 'x')], { stdio: 'ignore' }).status !== 0) return undefined;
  fs.copyFileSync(join(dir, 'x', 'bin', 'busybox'), bin);
  fs.chmodSync(bin, 0o755);
  return bin;
}

before(() => {
  if (why) return;
  busyboxArm64 = fetchBusyboxArm64();
  if (!busyboxArm64) { why = 'cannot fetch busybox-static:arm64 with apt-get'; return; }
  if (!fs.existsSync(join(BINFMT, 'register'))) {
    if (spawnSync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT]).status !== 0) { why = 'cannot mount binfmt_misc'; return; }
    mountedBinfmt = true;
  }
  // qemu's aarch64 magic and mask; F: the kernel opens the interpreter now, so containers need no copy of it.
  const magic = '\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00';
  const mask = '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff';
  try {
    fs.writeFileSync(join(BINFMT, 'register'), `:${handler}:M::${magic}:${mask}:${QEMU}:F`);
    registered = true;
  } catch (err) {
    why = `cannot register a binfmt_misc handler: ${(err as Error).message}`;
  }
});

after(() => {
  if (registered) fs.writeFileSync(join(BINFMT, handler), '-1');
  if (mountedBinfmt) spawnSync('umount', [BINFMT]);
});

function files(): Record<string, Buffer | { data: Buffer; mode: number }> {
  return {
    'busybox-amd64': { data: fs.readFileSync('/bin/busybox'), mode: 0o755 },
    'busybox-arm64': { data: fs.readFileSync(busyboxArm64!), mode: 0o755 },
  };
}

const DOCKERFILE = `FROM --platform=$BUILDPLATFORM scratch AS tools
COPY busybox-amd64 /bin/busybox
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /tools-uname"]

FROM scratch
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH
COPY busybox-$TARGETARCH /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN uname -m > /uname && echo "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT|$BUILDPLATFORM|$BUILDARCH" > /args
COPY --from=tools /tools-uname /tools-uname
`;

/** A file of one platform's image in an OCI layout, read back with keel-build unpack --platform. */
function readAs(layout: string, ref: string, platform: string, file: string): string {
  const bundle = join(tempDir('bundle'), 'b');
  const r = cli(['unpack', '--platform', platform, `${layout}:${ref}`, bundle]);
  assert.equal(r.status, 0, r.stderr);
  return fs.readFileSync(join(bundle, 'rootfs', file), 'utf8');
}

test('--platform linux/amd64,linux/arm64 builds both (arm64 RUN under qemu) into one image index', { skip: why }, async (t) => {
  if (why) return t.skip(why);
  const store = newStore();
  const out = join(tempDir('oci'), 'layout');
  const r = await buildWith(store, context(DOCKERFILE, files()), {
    platform: 'linux/amd64,linux/arm64', tags: ['multi:1'], outputs: [{ type: 'store' }, { type: 'oci', dest: out }],
  });
  assert.deepEqual(r.images.map((i) => i.platform), ['linux/amd64', 'linux/arm64']);
  const index = JSON.parse(fs.readFileSync(join(out, 'blobs', 'sha256', r.manifestDigest.slice(7)), 'utf8'));
  assert.equal(index.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(index.manifests.map((m: any) => `${m.platform.os}/${m.platform.architecture}`), ['linux/amd64', 'linux/arm64']);
  const top = JSON.parse(fs.readFileSync(join(out, 'index.json'), 'utf8')).manifests[0];
  assert.equal(top.digest, r.manifestDigest);
  assert.equal(top.mediaType, 'application/vnd.oci.image.index.v1+json');

  assert.equal(readAs(out, '1', 'linux/arm64', 'uname'), 'aarch64\n');
  assert.equal(readAs(out, '1', 'linux/amd64', 'uname'), 'x86_64\n');
  assert.equal(readAs(out, '1', 'linux/arm64', 'args'), 'linux/arm64|linux|arm64||linux/amd64|amd64\n');
  assert.equal(readAs(out, '1', 'linux/amd64', 'args'), 'linux/amd64|linux|amd64||linux/amd64|amd64\n');
  // The stage FROM --platform=$BUILDPLATFORM ran natively for both.
  assert.equal(readAs(out, '1', 'linux/arm64', 'tools-uname'), 'x86_64\n');
  const armConfig = JSON.parse(fs.readFileSync(join(out, 'blobs', 'sha256', r.images[1]!.configDigest.slice(7)), 'utf8'));
  assert.equal(armConfig.architecture, 'arm64');

  // FROM an index (the store's multi:1) takes the manifest of each build's platform.
  // (Shell builtins only: under qemu-user, busybox's re-exec of itself through /proc/self/exe reaches
  // qemu's own binary, an emulation limit whoever builds.)
  const child = await buildWith(store, context('FROM multi:1\nRUN read u < /uname; echo "$u" > /base-uname\n'), {
    platform: 'linux/arm64,linux/amd64', tags: ['child:1'], outputs: [{ type: 'oci', dest: out }],
  });
  assert.equal(child.images.length, 2);
  assert.equal(readAs(out, '1', 'linux/arm64', 'base-uname'), 'aarch64\n');
  assert.equal(readAs(out, '1', 'linux/amd64', 'base-uname'), 'x86_64\n');
  // One platform of it alone is a plain manifest.
  const one = await buildWith(store, context('FROM multi:1\nRUN uname -m > /u\n'), { platform: 'linux/arm64', outputs: [{ type: 'oci', dest: out }], tags: ['arm:1'] });
  assert.equal(one.images.length, 1);
  assert.equal(readAs(out, '1', 'linux/arm64', 'u'), 'aarch64\n');
});

test('a RUN step of a platform without an emulator fails in one line and leaves the store consistent', { skip: why }, async (t) => {
  if (why) return t.skip(why);
  const store = newStore();
  const ctx = context('FROM scratch\nCOPY busybox-amd64 /bin/busybox\nRUN ["/bin/busybox", "true"]\n', files());
  const r = cli(['build', '--store', store, '-q', '--platform', 'linux/s390x', ctx]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim(), 'Dockerfile:3: RUN ["/bin/busybox", "true"]: cannot run linux/s390x binaries: no binfmt_misc handler for s390x ELF binaries is registered (install qemu-user-static and register qemu-s390x-static with the F flag)');
  assert.deepEqual(fs.readdirSync(join(store, 'tmp')), []);
  assert.deepEqual(mountsUnder(store), []);
  // Steps without RUN need no emulator; the store still builds.
  const ok = cli(['build', '--store', store, '-q', '--platform', 'linux/s390x', '-f', '-', ctx], { input: 'FROM scratch\nCOPY busybox-amd64 /bin/busybox\n' });
  assert.equal(ok.status, 0, ok.stderr);
  const bad = cli(['build', '--store', store, '-q', '--platform', 'linux', ctx]);
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
});
