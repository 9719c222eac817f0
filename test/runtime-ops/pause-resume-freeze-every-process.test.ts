// keel pause / resume: the cgroup freezer stops and restarts every process; status follows; runc's errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, sleepMs, tempDir, waitFor, removeTemps } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => { keel.cleanup(); removeTemps(); });

function status(id: string): string {
  const r = keel(['state', id]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout).status;
}

function counter(dir: string): number {
  try { return Number(readFileSync(join(dir, 'n'), 'utf8').trim() || 0); } catch { return 0; }
}

test('pause freezes the init and its children, resume lets them run again; state says paused then running', { skip }, () => {
  const out = tempDir('keel-pause-');
  mkdirSync(out, { recursive: true });
  // Two processes count: the init (a shell) and a child shell, each in its own file.
  const bundle = makeBundle(['sh', '-c', 'sh -c "i=0; while :; do i=\$((i+1)); echo \$i > /out/m; sleep 0.01; done" & i=0; while :; do i=$((i+1)); echo $i > /out/n; sleep 0.01; done'], (c) => {
    c.mounts.push({ destination: '/out', type: 'bind', source: out, options: ['rbind', 'rw'] });
  });
  assert.equal(keel(['run', '-d', '-b', bundle, 'pz1']).status, 0);
  assert.ok(waitFor(() => counter(out) > 3), 'the container counts');
  const pause = keel(['pause', 'pz1']);
  assert.equal(pause.status, 0, pause.stderr);
  assert.equal(status('pz1'), 'paused');
  const n = counter(out);
  const m = Number(readFileSync(join(out, 'm'), 'utf8'));
  sleepMs(300);
  assert.equal(counter(out), n, 'the init does not run while paused');
  assert.equal(Number(readFileSync(join(out, 'm'), 'utf8')), m, 'its child does not run while paused');

  const again = keel(['pause', 'pz1']);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /cannot pause container pz1: container already paused/);

  const resume = keel(['resume', 'pz1']);
  assert.equal(resume.status, 0, resume.stderr);
  assert.equal(status('pz1'), 'running');
  assert.ok(waitFor(() => counter(out) > n + 3), 'the container counts again after resume');

  const notPaused = keel(['resume', 'pz1']);
  assert.equal(notPaused.status, 1);
  assert.match(notPaused.stderr, /cannot resume container pz1: container not paused \(status running\)/);
});

// container.ts's remove() sends SIGKILL and waits, but a v1-frozen process gets no signal until it
// is thawed (runc thaws after signalling): delete --force of a paused container times out.

test('a paused container can be deleted with --force', { skip }, () => {
  const bundle = makeBundle(['sleep', '100']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'pz2']).status, 0);
  assert.equal(keel(['pause', 'pz2']).status, 0);
  const del = keel(['delete', 'pz2']);
  assert.equal(del.status, 1, 'delete refuses a paused container');
  assert.match(del.stderr, /not stopped: paused/);
  const force = keel(['delete', '--force', 'pz2'], { timeout: 15_000 });
  if (force.status !== 0) keel(['resume', 'pz2']); // let cleanup() remove it
  assert.equal(force.status, 0, force.stderr);
  assert.match(keel(['state', 'pz2']).stderr, /does not exist/);
});

test('pausing a stopped container and resuming an unknown one fail as in runc', { skip }, () => {
  const bundle = makeBundle(['true']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'pz3']).status, 0);
  assert.ok(waitFor(() => status('pz3') === 'stopped'));
  const p = keel(['pause', 'pz3']);
  assert.equal(p.status, 1);
  assert.match(p.stderr, /^cannot pause container pz3: container not running \(status stopped\)\n$/);
  const r = keel(['resume', 'pz3']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /container not paused/);
  const u = keel(['resume', 'nosuch']);
  assert.equal(u.status, 1);
  assert.match(u.stderr, /container nosuch does not exist/);
});
