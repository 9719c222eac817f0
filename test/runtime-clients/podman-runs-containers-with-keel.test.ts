// podman with --runtime keel: run --rm prints the container's output; a detached container is
// paused, resumed, exec'd into and stopped through keel. podman gets its own storage, runtime
// root, tmpdir, lock files and configuration, so the machine's containers are not touched.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseSkip, describe, deleteKeelContainers, env, keel, keelHasExec, makeBusyboxLayout, run, tempDir, which } from './helpers.js';

const skip = baseSkip() || (!which('podman') && 'podman not installed') || (!which('conmon') && 'conmon not installed');
const dir = skip ? '' : tempDir('keel-podman-');
const keelRoot = join(dir, 'keel');
const IMAGE = 'localhost/keel-test/busybox:1';
// podman's default ulimits (nofile 1048576, nproc 1048576) exceed this machine's hard limits: the
// runtime refuses them, as runc does. These fit.
const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

function podman(args: string[], opts: { input?: string; timeout?: number } = {}) {
  const global = [
    '--root', join(dir, 'storage'), '--runroot', join(dir, 'run'), '--tmpdir', join(dir, 'tmp'),
    '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file',
    '--runtime', keel, '--runtime-flag', `root=${keelRoot}`,
  ];
  // File locks under --tmpdir instead of the machine's shared /dev/shm/libpod_lock.
  return run('podman', [...global, ...args], { ...opts, env: { ...env, CONTAINERS_CONF: join(dir, 'containers.conf') } });
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
  // podman 4.3's exit command (container cleanup) leaves --runtime-flag out, so containers that
  // stopped by themselves stay in keel's root: remove them (and their cgroups) here.
  deleteKeelContainers(keelRoot);
  rmSync(dir, { recursive: true, force: true });
});

test('podman run --rm prints what the container prints, through keel', { skip }, () => {
  const r = podman(['run', '--rm', '--network', 'none', ...ULIMITS, IMAGE, 'echo', 'hi']);
  assert.equal(r.status, 0, describe(r, 'podman run'));
  assert.equal(r.stdout, 'hi\n');
  assert.ok(existsSync(keelRoot), 'keel made its state root: keel ran the container');
  const code = podman(['run', '--rm', '--network', 'none', ...ULIMITS, IMAGE, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(code.status, 3, describe(code, 'exit status'));
  assert.equal(code.stdout, 'out\n');
  assert.match(code.stderr, /^err$/m);
});

test('podman run -d, pause, unpause and stop a container through keel', { skip }, () => {
  const script = 'trap "echo bye; exit 0" TERM; echo started; while :; do sleep 0.1; done';
  const r = podman(['run', '-d', '--name', 'kp1', '--network', 'none', ...ULIMITS, IMAGE, 'sh', '-c', script]);
  assert.equal(r.status, 0, describe(r, 'podman run -d'));
  const id = r.stdout.trim();
  assert.ok(readdirSync(keelRoot).includes(id), 'keel holds the container');
  const state = JSON.parse(run(keel, ['--root', keelRoot, 'state', id]).stdout);
  assert.equal(state.status, 'running');

  const p = podman(['pause', 'kp1']);
  assert.equal(p.status, 0, describe(p, 'podman pause'));
  assert.equal(podman(['inspect', '--format', '{{.State.Status}}', 'kp1']).stdout.trim(), 'paused');
  assert.equal(JSON.parse(run(keel, ['--root', keelRoot, 'state', id]).stdout).status, 'paused');
  const u = podman(['unpause', 'kp1']);
  assert.equal(u.status, 0, describe(u, 'podman unpause'));
  assert.equal(podman(['inspect', '--format', '{{.State.Status}}', 'kp1']).stdout.trim(), 'running');

  const s = podman(['stop', '--time', '5', 'kp1']);
  assert.equal(s.status, 0, describe(s, 'podman stop'));
  assert.equal(podman(['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'kp1']).stdout.trim(), 'exited 0', 'SIGTERM reached the trap');
  const logs = podman(['logs', 'kp1']);
  assert.equal(logs.stdout, 'started\nbye\n');
  const rm = podman(['rm', 'kp1']);
  assert.equal(rm.status, 0, describe(rm, 'podman rm'));
});

test('podman exec runs processes in a running container through keel exec', { skip: skip || (!keelHasExec() && 'keel exec is not available in this build') }, () => {
  const r = podman(['run', '-d', '--name', 'kp2', '--network', 'none', ...ULIMITS, IMAGE, 'sleep', '1000']);
  assert.equal(r.status, 0, describe(r, 'podman run -d'));
  try {
    const e = podman(['exec', 'kp2', 'echo', 'hi from exec']);
    assert.equal(e.status, 0, describe(e, 'podman exec'));
    assert.equal(e.stdout, 'hi from exec\n');
    const code = podman(['exec', 'kp2', 'sh', '-c', 'exit 7']);
    assert.equal(code.status, 7, describe(code, 'podman exec exit status'));
    const stdin = podman(['exec', '-i', 'kp2', 'cat'], { input: 'piped through\n' });
    assert.equal(stdin.stdout, 'piped through\n', describe(stdin, 'podman exec -i'));
    const env = podman(['exec', '--env', 'GREETING=hello', '--workdir', '/tmp', 'kp2', 'sh', '-c', 'echo $GREETING from $(pwd)']);
    assert.equal(env.stdout, 'hello from /tmp\n', describe(env, 'podman exec --env --workdir'));
    const ns = podman(['exec', 'kp2', 'sh', '-c', 'echo $$; cat /proc/1/cmdline | tr "\\0" " "']);
    assert.match(ns.stdout, /^\d+\nsleep 1000 $/, describe(ns, 'exec sees the container\'s pid namespace'));
  } finally {
    podman(['rm', '--force', '--time', '0', 'kp2']);
  }
});
