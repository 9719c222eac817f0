import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, tempDir } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => keel.cleanup());

test('exec joins every namespace and the cgroup of the container, and propagates the exit code', { skip }, () => {
  const bundle = makeBundle(['sleep', '60'], (c) => { c.hostname = 'exec-box'; });
  assert.equal(keel(['run', '-d', '-b', bundle, 'ex1']).status, 0);
  const init = JSON.parse(keel(['state', 'ex1']).stdout).pid;
  const r = keel(['exec', 'ex1', 'sh', '-c', 'echo pid=$$ host=$(hostname); for n in pid mnt net ipc uts; do readlink /proc/self/ns/$n; done; exit 5']);
  assert.equal(r.status, 5, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0]!, /^pid=\d+ host=exec-box$/);
  assert.notEqual(lines[0], 'pid=1 host=exec-box', 'the exec process is not the init');
  const expected = ['pid', 'mnt', 'net', 'ipc', 'uts'].map((n) => readlinkSync(`/proc/${init}/ns/${n}`));
  assert.deepEqual(lines.slice(1), expected, 'the same namespaces as the container init');
  const cg = keel(['exec', 'ex1', 'cat', '/proc/self/cgroup']).stdout;
  assert.match(cg, /pids:\/ex1$/m, 'the exec process is in the container cgroup');
});

test('exec applies --user, --env, --cwd and --process, and refuses a stopped container', { skip }, () => {
  const bundle = makeBundle(['sleep', '60']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ex2']).status, 0);
  const r = keel(['exec', '--user', '1000:1001', '--env', 'GREETING=hi', '--cwd', '/tmp', 'ex2', 'sh', '-c', 'echo $(id -u):$(id -g) $GREETING $(pwd)']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '1000:1001 hi /tmp\n');
  const dir = tempDir();
  const procFile = join(dir, 'process.json');
  writeFileSync(procFile, JSON.stringify({ args: ['sh', '-c', 'echo from-process-file; exit 3'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } }));
  const p = keel(['exec', '--process', procFile, 'ex2']);
  assert.equal(p.status, 3, p.stderr);
  assert.equal(p.stdout, 'from-process-file\n');
  const missing = keel(['exec', 'ex2', 'no-such-program']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /executable file not found in \$PATH/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
  assert.equal(keel(['kill', 'ex2', 'KILL']).status, 0);
  for (let i = 0; i < 100 && JSON.parse(keel(['state', 'ex2']).stdout).status !== 'stopped'; i++) { /* wait */ }
  const stopped = keel(['exec', 'ex2', 'true']);
  assert.equal(stopped.status, 1);
  assert.match(stopped.stderr, /cannot exec in a stopped container/);
});

test('exec --detach returns at once and writes --pid-file', { skip }, () => {
  const bundle = makeBundle(['sleep', '60']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ex3']).status, 0);
  const dir = tempDir();
  const r = keel(['exec', '-d', '--pid-file', join(dir, 'pid'), 'ex3', 'sleep', '30']);
  assert.equal(r.status, 0, r.stderr);
  const ps = keel(['exec', 'ex3', 'ps']).stdout;
  assert.match(ps, /sleep 30/);
});
