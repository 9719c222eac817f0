// podman with --runtime keel: `podman container checkpoint` and `restore` of a counting container
// (it goes on from where it was), and --export / --import into a new container. podman gets its
// own storage, runtime root, tmpdir and configuration; it finds criu on PATH as keel does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { baseSkip, describe, deleteKeelContainers, env, keel, makeBusyboxLayout, run, tempDir, which } from '../runtime-clients/helpers.js';
import { criu, criuProblem } from './helpers.js';

const skip = baseSkip() || (!which('podman') && 'podman not installed') || (!which('conmon') && 'conmon not installed') || criuProblem();
const dir = skip ? '' : tempDir('keel-podman-ckpt-');
const keelRoot = join(dir, 'keel');
const IMAGE = 'localhost/keel-test/busybox:ckpt';
const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const COUNT = 'i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done';
// podman checks criu itself (PATH's): a KEEL_TEST_CRIU goes first on PATH, named criu.
const path = criu.includes('/') ? `${dirname(criu)}:${env.PATH}` : env.PATH;

function podman(args: string[], opts: { timeout?: number } = {}) {
  const global = [
    '--root', join(dir, 'storage'), '--runroot', join(dir, 'run'), '--tmpdir', join(dir, 'tmp'),
    '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file',
    '--runtime', keel, '--runtime-flag', `root=${keelRoot}`,
  ];
  return run('podman', [...global, ...args], { timeout: opts.timeout ?? 120_000, env: { ...env, PATH: path, CONTAINERS_CONF: join(dir, 'containers.conf') } });
}

/** The numbers a container printed, in order. */
function counted(name: string): number[] {
  return podman(['logs', name]).stdout.split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
}

function waitCount(name: string, n: number): number[] {
  const end = Date.now() + 20_000;
  for (;;) {
    const c = counted(name);
    if (c.length >= n || Date.now() > end) return c;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
}

/** Every number from 0 to the last, once, in order: the count never restarted nor skipped. */
function assertUnbroken(nums: number[], what: string): void {
  assert.ok(nums.length > 0, what);
  nums.forEach((n, i) => assert.equal(n, i, `${what}: ${nums.join(' ')}`));
}

before(async () => {
  if (skip) return;
  writeFileSync(join(dir, 'containers.conf'), '[engine]\nlock_type = "file"\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n');
  await makeBusyboxLayout(join(dir, 'layout'), 'bb');
  const pull = podman(['pull', '-q', `oci:${join(dir, 'layout')}:bb`]);
  assert.equal(pull.status, 0, describe(pull, 'podman pull'));
  const tag = podman(['tag', pull.stdout.trim(), IMAGE]);
  assert.equal(tag.status, 0, describe(tag, 'podman tag'));
});

after(() => {
  if (skip) return;
  podman(['rm', '--all', '--force', '--time', '0']);
  deleteKeelContainers(keelRoot);
  rmSync(dir, { recursive: true, force: true });
});

test('podman container checkpoint and restore a counting container through keel', { skip }, () => {
  const r = podman(['run', '-d', '--name', 'ck1', '--network', 'none', ...ULIMITS, IMAGE, 'sh', '-c', COUNT]);
  assert.equal(r.status, 0, describe(r, 'podman run'));
  waitCount('ck1', 5);
  const ck = podman(['container', 'checkpoint', 'ck1']);
  assert.equal(ck.status, 0, describe(ck, 'podman container checkpoint'));
  assert.match(podman(['ps', '-a', '--format', '{{.Status}}', '--filter', 'name=ck1']).stdout, /Exited/);
  const atDump = counted('ck1').length;
  const rs = podman(['container', 'restore', 'ck1']);
  assert.equal(rs.status, 0, describe(rs, 'podman container restore'));
  assert.match(podman(['ps', '--format', '{{.Status}}', '--filter', 'name=ck1']).stdout, /^Up/);
  const nums = waitCount('ck1', atDump + 5);
  assert.ok(nums.length >= atDump + 5, 'the restored container counts on');
  assertUnbroken(nums, 'the count across checkpoint and restore');
  // keel has the restored container, running.
  const id = podman(['inspect', '--format', '{{.Id}}', 'ck1']).stdout.trim();
  assert.match(run(keel, ['--root', keelRoot, 'state', id]).stdout, /"status": "running"/);
});

test('podman container checkpoint --export and restore --import into a new container through keel', { skip }, () => {
  const r = podman(['run', '-d', '--name', 'ex1', '--network', 'none', ...ULIMITS, IMAGE, 'sh', '-c', COUNT]);
  assert.equal(r.status, 0, describe(r, 'podman run'));
  waitCount('ex1', 5);
  const archive = join(dir, 'ex1.tar.gz');
  const ck = podman(['container', 'checkpoint', '--export', archive, 'ex1']);
  assert.equal(ck.status, 0, describe(ck, 'podman container checkpoint --export'));
  assert.ok(existsSync(archive));
  const atDump = counted('ex1');
  assert.equal(podman(['rm', 'ex1']).status, 0);
  const rs = podman(['container', 'restore', '--import', archive, '--name', 'ex2']);
  assert.equal(rs.status, 0, describe(rs, 'podman container restore --import'));
  // The new container goes on from the dump. Its log starts with the old one's where the archive
  // carries it (podman's k8s-file log driver), or with the first number after the dump (journald).
  const nums = waitCount('ex2', 5);
  const from = nums[0] === 0 ? 0 : atDump.at(-1)! + 1;
  assert.equal(nums[0], from, `ex2 goes on from ${atDump.at(-1)}: ${nums.join(' ')}`);
  assert.ok(nums.at(-1)! > atDump.at(-1)!, `ex2 counts past the dump: ${nums.join(' ')}`);
  nums.forEach((n, i) => assert.equal(n, from + i, `the count across export and import: ${nums.join(' ')}`));
  const id = podman(['inspect', '--format', '{{.Id}}', 'ex2']).stdout.trim();
  assert.match(run(keel, ['--root', keelRoot, 'state', id]).stdout, /"status": "running"/);
});
