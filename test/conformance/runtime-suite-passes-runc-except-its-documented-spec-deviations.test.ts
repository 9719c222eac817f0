// The runtime suite against runc (the reference runtime): every required check passes except the
// places where runc 1.1.5 itself departs from runtime-spec v1.3.0, each listed with its reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runRuntimeSuite } from '../../conformance/runtime/index.js';
import { byId, requiredFailuresProblem, runtimeSuiteSkipReason, which } from './helpers.js';

/** Where runc 1.1.5 departs from runtime-spec v1.3.0 (observed by the suite on this host). */
const RUNC_DEVIATIONS: Record<string, string> = {
  'runtime.delete.created-errors': 'runc delete kills and removes a created container instead of refusing',
  'config.hooks.poststart.before-start-returns': 'runc runs poststart hooks during create, not start',
  'config.hooks.poststart.after-process-executed': 'same cause: at create the container process is still runc init',
  'runtime.lifecycle.poststart-failure-continues': 'a failing poststart hook fails runc create and stops the container',
  'runtime.lifecycle.poststop-failure-continues': 'runc stops at the first failing poststop hook and does not run the rest',
  'config.process.rlimits-duplicate-errors': 'runc applies duplicated rlimits without an error',
  'config.domainname': 'runc 1.1.5 (runtime-spec 1.0.2-dev) predates domainname and ignores it',
  'config-linux.devices.conflict-errors': 'runc ignores EEXIST when a file already sits at a device path',
};

test('runc passes every required runtime check except its documented deviations from the spec', async (t) => {
  const why = (await runtimeSuiteSkipReason()) ?? (which('runc') ? null : 'runc not installed');
  if (why) return t.skip(why);
  const report = await runRuntimeSuite({ runtime: 'runc' });
  assert.ok(report.results.length >= 100, `only ${report.results.length} checks ran`);
  const problem = requiredFailuresProblem(report, RUNC_DEVIATIONS);
  assert.equal(problem, null, problem ?? '');
  // The core of the lifecycle and the probe's view are really observed (passed, not skipped).
  const r = byId(report);
  for (const id of ['runtime.state.running', 'runtime.kill.sends-signal', 'config.hooks.createRuntime.during-create', 'config.process.capabilities.root', 'config-linux.namespaces.new-pid', 'config-linux.cgroups.memory-limit', 'config.mounts.order']) {
    assert.equal(r.get(id)?.status, 'pass', `${id}: ${r.get(id)?.message}`);
  }
});
