import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { canRunContainers, skipReason, makeBundle, keelBin, sh } from './helpers.js';

const USER = 'keel-rootless-test';

function ensureUser(): number | undefined {
  if (sh('id', ['-u', USER]).status !== 0) {
    const r = sh('useradd', ['-M', '-s', '/bin/sh', USER]);
    if (r.status !== 0) return undefined;
  }
  return Number(sh('id', ['-u', USER]).stdout.trim());
}

test('a non-root user runs a container whose root is its own uid, as runc --rootless', { skip: canRunContainers ? false : skipReason }, (t) => {
  const uid = ensureUser();
  if (uid === undefined) return t.skip('cannot create a test user (useradd failed)');
  const bundle = makeBundle(['sh', '-c', 'echo uid=$(id -u) pid=$$; cat /proc/self/uid_map; touch /tmp/x && echo tmp-writable']);
  // `keel spec --rootless` gives the rootless config; keep the fixture's process and map our uid.
  const spec = sh(keelBin, ['spec', '--rootless', '--bundle', join(bundle, '..')]);
  assert.equal(spec.status, 0, spec.stderr);
  const rootless = JSON.parse(readFileSync(join(bundle, '..', 'config.json'), 'utf8'));
  const fixture = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  rootless.process.args = fixture.process.args;
  rootless.process.terminal = false;
  rootless.linux.uidMappings = [{ containerID: 0, hostID: uid, size: 1 }];
  rootless.linux.gidMappings = [{ containerID: 0, hostID: uid, size: 1 }];
  rootless.mounts.push({ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev'] });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(rootless));
  const top = dirname(bundle);
  sh('chown', ['-R', `${uid}:${uid}`, top]);
  chownSync(top, uid, uid);
  const state = join(top, 'state');
  const r = sh('su', [USER, '-s', '/bin/sh', '-c', `cd ${bundle} && env -u NODE_EXTRA_CA_CERTS ${keelBin} --root ${state} run rootless1`]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines[0], 'uid=0 pid=1');
  assert.deepEqual(lines[1]!.trim().split(/\s+/), ['0', String(uid), '1'], 'container root is the user, mapped by a user namespace');
  assert.equal(lines[2], 'tmp-writable');
});
