// process.apparmorProfile on a host whose kernel runs no AppArmor: one clear error line, nothing left
// behind (runc and crun refuse too; ignoring it would run the container unconfined). Where the
// kernel has AppArmor (the VM lane's guest), test/vm/guest checks that the profile is applied.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canRunContainers, skipReason, keelWithRoot, makeBundle } from './helpers.js';
import { apparmorEnabled } from '../../src/runtime/security/apparmor.js';

const skip = !canRunContainers ? skipReason : apparmorEnabled() ? 'this host runs AppArmor (the VM lane tests it applied)' : false;

test('an AppArmor profile on a host without AppArmor is one error line and leaves no container', { skip }, () => {
  const keel = keelWithRoot();
  try {
    const bundle = makeBundle(['true'], (c) => { c.process.apparmorProfile = 'docker-default'; });
    const r = keel(['run', '--bundle', bundle, `aa-${process.pid}`]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /cannot apply AppArmor profile "docker-default" \(process\.apparmorProfile\): AppArmor is not enabled on this host/);
    assert.equal(keel(['list', '-q']).stdout.trim(), '');
  } finally {
    keel.cleanup();
  }
});
