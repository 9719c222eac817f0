// keel checkpoint / keel restore on real busybox containers, with criu: a counter keeps counting
// from where it was, --leave-running, restore into a new id, pre-dump then dump, a terminal, hooks,
// and images exchanged with runc both ways.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, tempDir, which, sh, sleepMs, waitFor } from '../runtime/helpers.js';
import { criu, criuProblem, keelPiped, withPipes, numbersFrom, drain, COUNTER } from './helpers.js';

const problem = !canRunContainers ? skipReason : criuProblem();
const skip = problem || false;
const keel = keelWithRoot();
const runcRoot = tempDir('keel-ckpt-runc-');
after(() => {
  keel.cleanup();
  for (const id of sh('runc', ['--root', runcRoot, 'list', '-q']).stdout?.split('\n').filter(Boolean) ?? []) sh('runc', ['--root', runcRoot, 'delete', '-f', id]);
});

const k = (args: string[]) => keel(['--criu', criu, ...args], { timeout: 120_000 });
const counterBundle = (edit?: (c: any) => void) => makeBundle(['true'], (c) => { c.process.args = COUNTER; edit?.(c); });
/** The error lines of a criu log, for a failure message. */
const criuErrors = (log: string) => { try { return readFileSync(log, 'utf8').split('\n').filter((l) => /Error|Warn/.test(l)).slice(-8).join('\n'); } catch { return `(no ${log})`; } };
const pidOf = (id: string) => JSON.parse(k(['state', id]).stdout).pid as number;

test('a busybox counter checkpointed and restored keeps counting from where it was', { skip }, () => {
  const hookOut = join(tempDir(), 'prestart');
  const b = counterBundle((c) => {
    // A prestart hook runs at create and again at restore, with the restored init's pid (as runc).
    c.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', `cat >> ${hookOut}; echo >> ${hookOut}`] }] };
  });
  const images = join(tempDir(), 'images');
  const run = keelPiped(keel.root, ['run', '-d', '--bundle', b, 'count1']);
  assert.equal(run.status, 0, run.stderr);
  try {
    assert.ok(numbersFrom(run.out, 5).length >= 5);
    const ck = k(['checkpoint', '--image-path', images, 'count1']);
    assert.equal(ck.status, 0, ck.stderr);
    // criu stopped the container and keel deleted it, as runc does.
    assert.match(k(['state', 'count1']).stderr, /does not exist/);
    sleepMs(300);
    const before = numbersFrom(run.out, 0, 0);
    const last = Math.max(...before);
    assert.ok(existsSync(join(images, 'inventory.img')) && existsSync(join(images, 'descriptors.json')));
    const pidFile = join(tempDir(), 'pid');
    const rs = keelPiped(keel.root, ['restore', '-d', '--image-path', images, '--pid-file', pidFile, '--bundle', b, 'count1']);
    assert.equal(rs.status, 0, rs.stderr);
    try {
      const after = numbersFrom(rs.out, 3);
      assert.equal(after[0], last + 1, `counting goes on from ${last}: ${after.join(' ')}`);
      assert.deepEqual(after.slice(0, 3), [last + 1, last + 2, last + 3]);
      const state = JSON.parse(k(['state', 'count1']).stdout);
      assert.equal(state.status, 'running');
      assert.equal(readFileSync(pidFile, 'utf8'), String(state.pid));
      // The prestart hook saw the created init, then the restored one.
      const hooks = readFileSync(hookOut, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      assert.equal(hooks.length, 2);
      assert.equal(hooks[1].pid, state.pid);
      // exec works in the restored container: same namespaces, same root.
      const ps = k(['exec', 'count1', 'cat', '/proc/1/cmdline']);
      assert.equal(ps.status, 0, ps.stderr);
      assert.match(ps.stdout, /^sh\0-c\0/);
      assert.equal(k(['delete', '-f', 'count1']).status, 0);
    } finally { rs.close(); }
  } finally { run.close(); }
});

test('--leave-running keeps the container; its checkpoint restores into a new id with its own cgroup', { skip }, () => {
  const b = counterBundle((c) => {
    c.mounts.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] });
  });
  const images = join(tempDir(), 'images');
  const run = keelPiped(keel.root, ['run', '-d', '--bundle', b, 'orig']);
  assert.equal(run.status, 0, run.stderr);
  try {
    const beforeDump = Math.max(...numbersFrom(run.out, 3));
    // With criu's safety flags on, as engines pass them: they change nothing for this container.
    const ck = k(['checkpoint', '--leave-running', '--file-locks', '--tcp-established', '--auto-dedup', '--manage-cgroups-mode', 'soft', '--image-path', images, 'orig']);
    assert.equal(ck.status, 0, ck.stderr);
    // The dump froze the counter somewhere between what it had printed before and after.
    const atDump = Math.max(...numbersFrom(run.out, 0, 0));
    assert.equal(JSON.parse(k(['state', 'orig']).stdout).status, 'running');
    sleepMs(500);
    assert.ok(Math.max(...numbersFrom(run.out, 1)) > atDump, 'the original keeps counting');
    const rs = keelPiped(keel.root, ['restore', '-d', '--file-locks', '--tcp-established', '--manage-cgroups-mode', 'soft', '--image-path', images, '--bundle', b, 'copy']);
    assert.equal(rs.status, 0, rs.stderr);
    try {
      const copy = numbersFrom(rs.out, 2);
      assert.ok(copy[0]! > beforeDump && copy[0]! <= atDump + 1, `the copy counts on from the dump (between ${beforeDump} and ${atDump}): ${copy.join(' ')}`);
      assert.equal(copy[1], copy[0]! + 1);
      const pid = pidOf('copy');
      assert.notEqual(pid, pidOf('orig'));
      // The copy's processes are in the copy's cgroup, and its /sys/fs/cgroup shows that cgroup.
      assert.match(readFileSync(`/proc/${pid}/cgroup`, 'utf8'), /\/copy$/m);
      const inside = k(['exec', 'copy', 'cat', '/proc/self/cgroup']);
      assert.match(inside.stdout, /\/copy$/m);
      const procs = k(['exec', 'copy', 'sh', '-c', 'cat /sys/fs/cgroup/pids/cgroup.procs 2>/dev/null || cat /sys/fs/cgroup/cgroup.procs']);
      assert.equal(procs.status, 0, procs.stderr);
      assert.ok(procs.stdout.split('\n').includes('1'), `the copy's init is in the cgroup it sees: ${procs.stdout}`);
    } finally { rs.close(); }
  } finally { run.close(); }
});

test('a pre-dump then a dump with --parent-path restore the container', { skip }, (t) => {
  const b = counterBundle();
  const dir = tempDir();
  const run = keelPiped(keel.root, ['run', '-d', '--bundle', b, 'iter']);
  assert.equal(run.status, 0, run.stderr);
  try {
    numbersFrom(run.out, 2);
    const pre = k(['checkpoint', '--pre-dump', '--image-path', join(dir, 'pre'), 'iter']);
    if (pre.status !== 0 && /cannot track memory changes/.test(pre.stderr)) { t.skip(pre.stderr.trim()); return; }
    assert.equal(pre.status, 0, pre.stderr);
    assert.equal(JSON.parse(k(['state', 'iter']).stdout).status, 'running', 'a pre-dump leaves the container running');
    assert.ok(existsSync(join(dir, 'pre', 'pagemap-1.img')) || readFileSync(join(dir, 'pre', 'dump.log'), 'utf8').includes('finished successfully'));
    const dump = k(['checkpoint', '--image-path', join(dir, 'final'), '--parent-path', '../pre', 'iter']);
    assert.equal(dump.status, 0, dump.stderr);
    assert.match(readFileSync(join(dir, 'final', 'dump.log'), 'utf8'), /parent/i);
    const last = Math.max(...numbersFrom(run.out, 0, 0));
    const rs = keelPiped(keel.root, ['restore', '-d', '--image-path', join(dir, 'final'), '--bundle', b, 'iter']);
    assert.equal(rs.status, 0, rs.stderr);
    try {
      assert.equal(numbersFrom(rs.out, 1)[0], last + 1);
    } finally { rs.close(); k(['delete', '-f', 'iter']); }
  } finally { run.close(); }
});

test('a container with a terminal: the restored pty master goes to --console-socket', { skip }, async () => {
  const { consoleReceiver } = await import('../../src/runtime/host.js');
  const dir = tempDir();
  const b = counterBundle((c) => { c.process.terminal = true; });
  const first = await consoleReceiver(join(dir, 'console1.sock'));
  const run = keelPiped(keel.root, ['run', '-d', '--console-socket', first.path, '--bundle', b, 'tty1']);
  assert.equal(run.status, 0, run.stderr);
  const master1 = first.receive();
  first.close();
  try {
    assert.ok(numbersFrom(master1, 3).length >= 3);
    const ck = k(['checkpoint', '--image-path', join(dir, 'img'), 'tty1']);
    assert.equal(ck.status, 0, ck.stderr);
    const last = Math.max(...numbersFrom(master1, 0, 0));
    const second = await consoleReceiver(join(dir, 'console2.sock'));
    const rs = keelPiped(keel.root, ['restore', '-d', '--console-socket', second.path, '--image-path', join(dir, 'img'), '--bundle', b, 'tty1']);
    assert.equal(rs.status, 0, rs.stderr);
    const master2 = second.receive();
    second.close();
    try {
      const nums = numbersFrom(master2, 2);
      assert.equal(nums[0], last + 1, `the restored terminal goes on from ${last}: ${nums.join(' ')}`);
      const tty = k(['exec', 'tty1', 'readlink', '/proc/1/fd/1']);
      assert.match(tty.stdout, /^\/dev\/pts\/\d+$/m);
    } finally { drain(master2); rs.close(); k(['delete', '-f', 'tty1']); }
  } finally { run.close(); }
});

test('a checkpoint keel took is restored by runc, and one runc took is restored by keel', { skip: skip || (!which('runc') && 'runc not installed') }, () => {
  const b = counterBundle();
  const dir = tempDir();
  const runc = (args: string[]) => withPipes('runc', ['--root', runcRoot, '--criu', criu, ...args]);
  // keel → runc
  const run = keelPiped(keel.root, ['run', '-d', '--bundle', b, 'x1']);
  assert.equal(run.status, 0, run.stderr);
  try {
    numbersFrom(run.out, 2);
    const ck = k(['checkpoint', '--image-path', join(dir, 'k'), 'x1']);
    assert.equal(ck.status, 0, ck.stderr);
    const last = Math.max(...numbersFrom(run.out, 0, 0));
    const rs = runc(['restore', '-d', '--image-path', join(dir, 'k'), '--bundle', b, 'r1']);
    assert.equal(rs.status, 0, rs.stderr);
    try {
      assert.equal(numbersFrom(rs.out, 1)[0], last + 1, 'runc restored keel\'s counter where it was');
      assert.match(sh('runc', ['--root', runcRoot, 'state', 'r1']).stdout, /"status": "running"/);
    } finally { rs.close(); sh('runc', ['--root', runcRoot, 'delete', '-f', 'r1']); }
  } finally { run.close(); }
  // runc → keel: a container runc runs and checkpoints.
  const r2 = runc(['run', '-d', '--bundle', b, 'r2']);
  assert.equal(r2.status, 0, r2.stderr);
  try {
    numbersFrom(r2.out, 2);
    const rck = sh('runc', ['--root', runcRoot, '--criu', criu, 'checkpoint', '--image-path', join(dir, 'r'), 'r2']);
    assert.equal(rck.status, 0, `${rck.stderr}\n${criuErrors(join(dir, 'r', 'dump.log'))}`);
    const last2 = Math.max(...numbersFrom(r2.out, 0, 0));
    const ks = keelPiped(keel.root, ['restore', '-d', '--image-path', join(dir, 'r'), '--bundle', b, 'x2']);
    assert.equal(ks.status, 0, ks.stderr);
    try {
      assert.equal(numbersFrom(ks.out, 1)[0], last2 + 1, 'keel restored runc\'s counter where it was');
      assert.equal(JSON.parse(k(['state', 'x2']).stdout).status, 'running');
    } finally { ks.close(); k(['delete', '-f', 'x2']); }
  } finally { r2.close(); }
});

test('without a working criu, checkpoint and restore say so in one line and change nothing', { skip: (!canRunContainers && skipReason) || (!!process.env.KEEL_VM_GUEST && 'needs no criu: runs on the host, not in the VM lane') }, () => {
  const dir = tempDir();
  // A criu whose `check` fails as criu 3.17 does on Linux 6.13+, and a missing one.
  const broken = join(dir, 'criu');
  writeFileSync(broken, '#!/bin/sh\necho "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds" >&2\nexit 1\n');
  chmodSync(broken, 0o755);
  const b = counterBundle();
  const run = keelPiped(keel.root, ['run', '-d', '--bundle', b, 'nocriu']);
  assert.equal(run.status, 0, run.stderr);
  try {
    for (const [bin, why] of [[broken, /criu cannot work on this kernel .*check` failed: vdso: Unexpected rt vDSO area bounds/], [join(dir, 'none'), /criu is not installed/]] as const) {
      const ck = keel(['--criu', bin, 'checkpoint', '--image-path', join(dir, 'img'), 'nocriu']);
      assert.equal(ck.status, 1);
      assert.match(ck.stderr, why);
      assert.equal(ck.stderr.trim().split('\n').length, 1, ck.stderr);
      assert.equal(JSON.parse(keel(['state', 'nocriu']).stdout).status, 'running');
      assert.ok(!existsSync(join(dir, 'img')), 'no image folder was made');
      const rs = keel(['--criu', bin, 'restore', '-d', '--image-path', join(dir, 'img'), '--bundle', b, 'nocriu2']);
      assert.equal(rs.status, 1);
      assert.match(rs.stderr, why);
      assert.equal(rs.stderr.trim().split('\n').length, 1, rs.stderr);
      assert.match(keel(['state', 'nocriu2']).stderr, /does not exist/);
    }
  } finally { run.close(); keel(['delete', '-f', 'nocriu']); }
});

test('bad checkpoint and restore requests fail with one line and leave nothing behind', { skip }, () => {
  const dir = tempDir();
  const b = counterBundle();
  assert.equal(k(['create', '--bundle', b, 'created1']).status, 0);
  const one = (r: { status: number | null; stderr: string }, re: RegExp) => {
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  };
  one(k(['checkpoint', '--image-path', join(dir, 'a'), 'created1']), /cannot be checkpointed in created state/);
  one(k(['checkpoint', '--image-path', join(dir, 'a'), 'nosuch']), /container nosuch does not exist/);
  one(k(['checkpoint', '--manage-cgroups-mode', 'bogus', 'created1']), /invalid --manage-cgroups-mode "bogus"/);
  one(k(['checkpoint', '--parent-path', '/abs', 'created1']), /--parent-path must be relative/);
  one(k(['checkpoint', '--empty-ns', 'pid', 'created1']), /--empty-ns: namespace "pid" is not supported/);
  one(k(['restore', '--image-path', join(dir, 'empty'), '--bundle', b, 'r9']), /no checkpoint there/);
  one(k(['restore', '--image-path', join(dir, 'empty'), '--bundle', b, 'created1']), /already exists/);
  assert.match(k(['state', 'r9']).stderr, /does not exist/);
  assert.equal(JSON.parse(k(['state', 'created1']).stdout).status, 'created');
  k(['delete', '-f', 'created1']);
  // A restore that criu fails (images of a container whose bind source is gone) leaves no container.
  const src = tempDir();
  const bb = counterBundle((c) => c.mounts.push({ destination: '/data', type: 'bind', source: src, options: ['rbind'] }));
  const run = keelPiped(keel.root, ['run', '-d', '--bundle', bb, 'bindc']);
  assert.equal(run.status, 0, run.stderr);
  try {
    numbersFrom(run.out, 1);
    assert.equal(k(['checkpoint', '--image-path', join(dir, 'bind'), 'bindc']).status, 0);
    const cfg = JSON.parse(readFileSync(join(bb, 'config.json'), 'utf8'));
    cfg.mounts.at(-1).source = join(src, 'gone');
    writeFileSync(join(bb, 'config.json'), JSON.stringify(cfg));
    const rs = keelPiped(keel.root, ['restore', '-d', '--image-path', join(dir, 'bind'), '--bundle', bb, 'bindc']);
    assert.equal(rs.status, 1);
    assert.match(rs.stderr.split('\n')[0]!, /criu restore failed|restore/);
    rs.close();
    assert.match(k(['state', 'bindc']).stderr, /does not exist/);
    assert.ok(waitFor(() => !readFileSync('/proc/self/mountinfo', 'utf8').includes('.criu-root~bindc~')), 'the criu root is unmounted');
  } finally { run.close(); }
});
