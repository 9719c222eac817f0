// Hooks (runtime-spec config.md "POSIX-platform Hooks", runtime.md "Lifecycle"): which run when,
// in which namespaces, with the state on stdin, their args, env and timeout, and what a failure
// of each kind does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkRuntimeState } from '../../src/spec/index.js';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, tempDir, waitFor } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => keel.cleanup());

const KINDS = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;
type Kind = typeof KINDS[number];

/**
 * A hook that appends one line to LOG: its kind ($0), its first argument, $HOOK_ENV, the
 * namespaces it runs in, and the state it read on stdin. LOG's directory is bound into the
 * container at the same path, so hooks in the container's mount namespace reach it too.
 */
function hook(log: string, kind: string, extra: Record<string, unknown> = {}, script = '') {
  const line = `s=$(cat); printf '%s|%s|%s|%s|%s|%s|%s\\n' "$0" "$1" "$HOOK_ENV" "$(readlink /proc/self/ns/pid)" "$(readlink /proc/self/ns/mnt)" "$(readlink /proc/self/ns/uts)" "$s" >> ${log}`;
  return { path: '/bin/sh', args: ['sh', '-c', `${line}${script ? `; ${script}` : ''}`, kind, `arg-of-${kind}`], env: [`HOOK_ENV=env-of-${kind}`, 'PATH=/usr/sbin:/usr/bin:/sbin:/bin'], ...extra };
}

interface Entry { kind: string; arg: string; env: string; pidns: string; mntns: string; utsns: string; state: any }

function entries(log: string): Entry[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => {
    const [kind, arg, env, pidns, mntns, utsns, ...rest] = l.split('|');
    return { kind: kind!, arg: arg!, env: env!, pidns: pidns!, mntns: mntns!, utsns: utsns!, state: JSON.parse(rest.join('|')) };
  });
}

function hookBundle(edit: (c: any, log: string) => void): { bundle: string; log: string } {
  const dir = tempDir('keel-hooks-');
  const log = join(dir, 'log');
  const bundle = makeBundle(['sleep', '30'], (c) => {
    c.mounts.push({ destination: dir, type: 'bind', source: dir, options: ['rbind', 'rw'] });
    c.hooks = {};
    edit(c, log);
  });
  return { bundle, log };
}

/** Checks that nothing of container `id` is left: not listed, no state dir, no cgroup. */
function assertGone(id: string): void {
  assert.equal(keel(['list', '-q']).stdout.split('\n').includes(id), false, `${id} is not listed`);
  assert.equal(existsSync(join(keel.root, id)), false, `${id} has no state directory`);
  assert.equal(existsSync(`/sys/fs/cgroup/pids/${id}`), false, `${id} has no pids cgroup`);
}

const hostNs = (t: string) => readlinkSync(`/proc/self/ns/${t}`);

test('every hook runs once, in lifecycle order, with its args, env and the state on stdin', { skip }, () => {
  const { bundle, log } = hookBundle((c, log) => { for (const k of KINDS) c.hooks[k] = [hook(log, k)]; });
  assert.equal(keel(['create', '--bundle', bundle, 'h1']).status, 0);
  assert.deepEqual(entries(log).map((e) => e.kind), ['prestart', 'createRuntime', 'createContainer'], 'create ran the create hooks');
  const pid = JSON.parse(keel(['state', 'h1']).stdout).pid as number;
  assert.equal(keel(['start', 'h1']).status, 0);
  assert.deepEqual(entries(log).map((e) => e.kind), ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart']);
  assert.equal(keel(['delete', '--force', 'h1']).status, 0);
  const all = entries(log);
  assert.deepEqual(all.map((e) => e.kind), [...KINDS], 'delete ran poststop');

  const expectStatus: Record<Kind, string> = {
    prestart: 'creating', createRuntime: 'creating', createContainer: 'creating', startContainer: 'created', poststart: 'running', poststop: 'stopped',
  };
  for (const e of all) {
    const k = e.kind as Kind;
    assert.equal(e.arg, `arg-of-${k}`, `${k}: args`);
    assert.equal(e.env, `env-of-${k}`, `${k}: env`);
    const v = checkRuntimeState(e.state);
    assert.equal(v.ok, true, `${k}: the state on stdin is valid: ${JSON.stringify(v)}`);
    assert.equal(e.state.id, 'h1', `${k}: state.id`);
    assert.equal(e.state.bundle, bundle, `${k}: state.bundle`);
    assert.equal(e.state.status, expectStatus[k], `${k}: state.status`);
    if (k !== 'poststop') assert.equal(e.state.pid, pid, `${k}: state.pid is the container's init`);
  }
});

test('prestart, createRuntime and poststart/poststop run in the runtime\'s namespaces; createContainer and startContainer in the container\'s', { skip }, () => {
  const { bundle, log } = hookBundle((c, log) => { for (const k of KINDS) c.hooks[k] = [hook(log, k)]; });
  assert.equal(keel(['create', '--bundle', bundle, 'h2']).status, 0);
  const pid = JSON.parse(keel(['state', 'h2']).stdout).pid as number;
  const ns = Object.fromEntries(['pid', 'mnt', 'uts'].map((t) => [t, readlinkSync(`/proc/${pid}/ns/${t}`)]));
  const ctr = (t: string) => ns[t]!;
  assert.equal(keel(['start', 'h2']).status, 0);
  assert.equal(keel(['delete', '--force', 'h2']).status, 0);
  for (const e of entries(log)) {
    const inContainer = e.kind === 'createContainer' || e.kind === 'startContainer';
    const want = inContainer ? { pid: ctr('pid'), mnt: ctr('mnt'), uts: ctr('uts') } : { pid: hostNs('pid'), mnt: hostNs('mnt'), uts: hostNs('uts') };
    assert.deepEqual({ pid: e.pidns, mnt: e.mntns, uts: e.utsns }, want, `${e.kind} runs in the ${inContainer ? 'container' : 'runtime'} namespaces`);
  }
});

test('a hook that outlives its timeout fails create, and nothing is left', { skip }, () => {
  for (const kind of ['createRuntime', 'createContainer'] as const) {
    const { bundle } = hookBundle((c, log) => { c.hooks[kind] = [hook(log, kind, { timeout: 1 }, 'sleep 10')]; });
    const t0 = Date.now();
    const r = keel(['create', '--bundle', bundle, `to-${kind}`]);
    assert.equal(r.status, 1, `${kind}: create fails`);
    assert.ok(Date.now() - t0 < 6000, `${kind}: the hook was stopped at its timeout, not waited for (${Date.now() - t0} ms)`);
    assert.match(r.stderr, new RegExp(`${kind} hook #0 .*timed out after 1s`));
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one error line');
    assertGone(`to-${kind}`);
  }
});

test('a failing prestart, createRuntime or createContainer hook fails create; the container is cleaned up and later hooks do not run', { skip }, () => {
  for (const kind of ['prestart', 'createRuntime', 'createContainer'] as const) {
    const { bundle, log } = hookBundle((c, log) => {
      for (const k of KINDS) c.hooks[k] = [hook(log, k)];
      c.hooks[kind] = [hook(log, kind, {}, 'echo "broken hook says no" >&2; exit 3'), hook(log, `${kind}-second`)];
    });
    const r = keel(['create', '--bundle', bundle, `fail-${kind}`]);
    assert.equal(r.status, 1, `${kind}: create fails`);
    assert.match(r.stderr, new RegExp(`${kind} hook #0 \\(/bin/sh\\) failed with exit status 3`));
    assert.match(r.stderr, /broken hook says no/, 'the hook\'s own message is shown');
    const ran = entries(log).map((e) => e.kind);
    assert.equal(ran.includes(`${kind}-second`), false, `${kind}: the next hook of the kind did not run`);
    assert.equal(ran.includes('startContainer'), false);
    assertGone(`fail-${kind}`);
  }
});

test('the error of a failing hook is one line that ends with the hook\'s last stderr line, in the container\'s namespaces too', { skip }, () => {
  for (const kind of ['createRuntime', 'createContainer'] as const) {
    // 200 kB of stderr first: more than a pipe holds, so the runtime must read while it waits.
    const { bundle } = hookBundle((c, log) => { c.hooks[kind] = [hook(log, kind, {}, 'i=0; while [ $i -lt 2000 ]; do echo "filler line $i ......................................................................................." >&2; i=$((i+1)); done; echo "broken hook says no" >&2; exit 3')]; });
    const r = keel(['create', '--bundle', bundle, `oneline-${kind}`]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr.trim(), `${kind} hook #0 (/bin/sh) failed with exit status 3: broken hook says no`, kind);
  }
});

test('a failing startContainer hook fails start and stops the container; delete still works', { skip }, () => {
  const { bundle, log } = hookBundle((c, log) => {
    c.hooks.startContainer = [hook(log, 'startContainer', {}, 'exit 4')];
    c.hooks.poststart = [hook(log, 'poststart')];
    c.hooks.poststop = [hook(log, 'poststop')];
  });
  assert.equal(keel(['create', '--bundle', bundle, 'fail-sc']).status, 0);
  const r = keel(['start', 'fail-sc']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /startContainer hook #0 .*exit status 4/);
  assert.ok(waitFor(() => JSON.parse(keel(['state', 'fail-sc']).stdout).status === 'stopped', 3000), 'the container is stopped (runtime.md: "stop the container")');
  assert.equal(entries(log).some((e) => e.kind === 'poststart'), false, 'poststart did not run');
  assert.equal(keel(['delete', 'fail-sc']).status, 0);
  assertGone('fail-sc');
});

test('failing poststart and poststop hooks only warn: the operation succeeds and the next hooks run', { skip }, () => {
  const { bundle, log } = hookBundle((c, log) => {
    c.hooks.poststart = [hook(log, 'poststart', {}, 'exit 5'), hook(log, 'poststart-second')];
    c.hooks.poststop = [hook(log, 'poststop', {}, 'exit 6'), hook(log, 'poststop-second')];
  });
  assert.equal(keel(['create', '--bundle', bundle, 'warn1']).status, 0);
  const s = keel(['start', 'warn1']);
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stderr, /poststart hook #0 .*exit status 5/, 'a warning names the hook');
  assert.equal(JSON.parse(keel(['state', 'warn1']).stdout).status, 'running');
  const d = keel(['delete', '--force', 'warn1']);
  assert.equal(d.status, 0, d.stderr);
  assert.match(d.stderr, /poststop hook #0 .*exit status 6/);
  assert.deepEqual(entries(log).map((e) => e.kind), ['poststart', 'poststart-second', 'poststop', 'poststop-second']);
  assertGone('warn1');
});

test('a hook path that does not exist fails create with a clear line', { skip }, () => {
  const { bundle } = hookBundle((c) => { c.hooks.createRuntime = [{ path: '/nonexistent/hook' }]; });
  const r = keel(['create', '--bundle', bundle, 'nohook']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /createRuntime hook #0 \(\/nonexistent\/hook\)/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assertGone('nohook');
  void writeFileSync;
});
