// keel-build run by an unprivileged user (keel-rootless-test, with subordinate ids in /etc/subuid and
// /etc/subgid): it starts itself again in a user namespace where it is root, its store under
// $XDG_DATA_HOME/keel, overlay mounts and RUN containers in that namespace; the image is what root
// would build (owners as the steps set them, opaque directories). A user without subordinate ids
// gets one clear line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { skipReason, context, tempDir, cli, ensureBuilt, keelBuild } from './helpers.js';

const USER = 'keel-rootless-test';

function sh(cmd: string, args: string[]) {
  return spawnSync(cmd, args, { encoding: 'utf8' });
}

/** The test user (made when missing; Debian's useradd gives it subordinate ids), or why not. */
function testUser(): { uid: number } | string {
  if (sh('id', ['-u', USER]).status !== 0 && sh('useradd', ['-M', '-s', '/bin/sh', USER]).status !== 0) return 'cannot create a test user';
  const uid = Number(sh('id', ['-u', USER]).stdout.trim());
  const has = (f: string) => fs.existsSync(f) && fs.readFileSync(f, 'utf8').split('\n').some((l) => l.startsWith(`${USER}:`) || l.startsWith(`${uid}:`));
  if (!has('/etc/subuid') || !has('/etc/subgid')) return `${USER} has no subordinate ids in /etc/subuid and /etc/subgid`;
  if (!fs.existsSync('/usr/bin/newuidmap')) return 'newuidmap not installed (uidmap)';
  return { uid };
}

const user = skipReason ? skipReason : testUser();
const why = typeof user === 'string' ? user : undefined;

/** Runs dist/keel-build as `who` with its own HOME; returns the result. */
function asUser(who: string, home: string, args: string[]) {
  ensureBuilt();
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return spawnSync('su', [who, '-s', '/bin/sh', '-c', `cd ${q(home)} && env -u NODE_EXTRA_CA_CERTS -u NODE_OPTIONS HOME=${q(home)} XDG_DATA_HOME=${q(join(home, 'data'))} ${q(keelBuild)} ${args.map(q).join(' ')}`],
    { encoding: 'utf8', timeout: 300_000 });
}

test('an unprivileged user builds with RUN steps in a user namespace of its subordinate ids; the store is its own', { skip: why }, () => {
  const { uid } = user as { uid: number };
  const home = tempDir('rootless-home');
  const ctx = context(`FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN id > /id && cat /proc/self/uid_map > /uid-map && mkdir -p /a/b && echo old > /a/b/old && touch /owned && chown 1000:50 /owned
RUN rm -rf /a/b && mkdir /a/b && echo new > /a/b/new
`);
  sh('chown', ['-R', `${uid}:${uid}`, home, ctx]);
  const first = asUser(USER, home, ['build', '-q', '-t', 'rootless:1', ctx]);
  assert.equal(first.status, 0, first.stderr);
  const digest = first.stdout.trim();
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);

  const store = join(home, 'data', 'keel');
  assert.equal(fs.statSync(join(store, 'oci', 'index.json')).uid, uid, 'the store belongs to the user');
  const bundle = join(tempDir('rootless-bundle'), 'b');
  const r = cli(['unpack', `${join(store, 'oci')}:rootless:1`, bundle]);
  assert.equal(r.status, 0, r.stderr);
  const rootfs = join(bundle, 'rootfs');
  assert.equal(fs.readFileSync(join(rootfs, 'id'), 'utf8'), 'uid=0 gid=0 groups=0\n');
  const map = fs.readFileSync(join(rootfs, 'uid-map'), 'utf8').trim().split('\n').map((l) => l.trim().split(/\s+/));
  assert.deepEqual(map[0], ['0', String(uid), '1'], 'root of the step is the user');
  assert.equal(map[1]![0], '1', 'the other ids are its subordinate ones');
  assert.ok(Number(map[1]![2]) >= 65535);
  assert.deepEqual(fs.readdirSync(join(rootfs, 'a', 'b')), ['new'], 'the directory replaced in a step is opaque in its layer');
  const owned = fs.statSync(join(rootfs, 'owned'));
  assert.deepEqual([owned.uid, owned.gid], [1000, 50], 'owners in the image are the ids inside');

  const again = asUser(USER, home, ['build', '--progress', 'plain', '-t', 'rootless:1', ctx]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(again.stdout.trim(), digest);
  assert.equal((again.stderr.match(/^#\d+ CACHED$/gm) ?? []).length, 4, again.stderr);
  // Nothing of the build is left mounted outside its namespaces, nor in its work directory.
  assert.deepEqual(fs.readdirSync(join(store, 'tmp')), []);
});

test('a user without subordinate ids gets one clear line', { skip: skipReason }, () => {
  const home = tempDir('nobody-home');
  const ctx = context('FROM scratch\nCOPY busybox /busybox\n');
  sh('chown', ['-R', 'nobody', home, ctx]);
  const r = asUser('nobody', home, ['build', '-q', ctx]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim(), 'rootless build: user nobody has no subordinate user ids in /etc/subuid (add a range, e.g. as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 nobody)');
  assert.equal(fs.existsSync(join(home, 'data', 'keel')), false, 'no store was made');
});
