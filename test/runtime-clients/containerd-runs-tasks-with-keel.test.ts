// ctr run --runc-binary keel: containerd (started here with its own root, state, sockets and config)
// and its runc shim run tasks through keel: run --rm, then a detached task that is listed (ps),
// paused, resumed, exec'd into and killed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseSkip, describe, deleteKeelContainers, env, keel, keelHasExec, makeBusyboxLayout, run, tempDir, which } from './helpers.js';
import { killAtExit } from '../fixtures/cleanup.js';

const skip = baseSkip() || (!which('containerd') && 'containerd not installed') || (!which('ctr') && 'ctr not installed')
  || (!which('containerd-shim-runc-v2') && 'containerd-shim-runc-v2 not installed');
const dir = skip ? '' : tempDir('keel-containerd-');
const keelRoot = join(dir, 'keel');
const sock = join(dir, 'containerd.sock');
const IMAGE = 'localhost/keel-test/busybox:bb';
// containerd names task cgroups /<namespace>/<id>: a namespace of this run only, removed at the end.
const NS = `keel-test-${process.pid}`;
let daemon: ChildProcess | undefined;
let daemonSkip: string | false = false;

function ctr(args: string[], opts: { input?: string; timeout?: number } = {}) {
  return run('ctr', ['--address', sock, '--namespace', NS, ...args], opts);
}

/** `ctr run` options that make the runc shim use keel, with its own state root. */
const KEEL = () => ['--runc-binary', keel, '--runc-root', keelRoot];

function sleep(ms: number) { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms); }

before(async () => {
  if (skip) return;
  writeFileSync(join(dir, 'config.toml'), [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(dir, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
    '[grpc]', `  address = "${sock}"`,
    '[ttrpc]', `  address = "${sock}.ttrpc"`,
    '[debug]', '  address = ""',
    '[metrics]', '  address = ""',
    '',
  ].join('\n'));
  const log = openSync(join(dir, 'containerd.log'), 'a');
  daemon = killAtExit(spawn('containerd', ['--config', join(dir, 'config.toml')], { env, stdio: ['ignore', log, log] }));
  const deadline = Date.now() + 15_000;
  while (!existsSync(sock) || ctr(['version']).status !== 0) {
    if (daemon.exitCode !== null || Date.now() > deadline) {
      daemonSkip = `containerd did not start here: ${readFileSync(join(dir, 'containerd.log'), 'utf8').trim().split('\n').slice(-3).join(' | ')}`;
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await makeBusyboxLayout(join(dir, 'layout'), 'bb');
  const { OciLayout, exportArchive } = await import('../../src/layers/index.js');
  const archive = join(dir, 'image.tar');
  const out = createWriteStream(archive);
  await exportArchive(await OciLayout.open(join(dir, 'layout')), out, { tags: ['bb'] });
  await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
  const imp = ctr(['image', 'import', '--base-name', 'localhost/keel-test/busybox', archive]);
  assert.equal(imp.status, 0, describe(imp, 'ctr image import'));
  assert.match(ctr(['image', 'ls', '-q']).stdout, new RegExp(`^${IMAGE}$`, 'm'));
});

after(async () => {
  if (skip) return;
  if (daemon && daemon.exitCode === null) {
    for (const id of ctr(['task', 'ls', '-q']).stdout.split('\n').filter(Boolean)) {
      ctr(['task', 'kill', '--signal', 'SIGKILL', id]);
      sleep(200);
      ctr(['task', 'delete', '--force', id]);
    }
    for (const id of ctr(['container', 'ls', '-q']).stdout.split('\n').filter(Boolean)) ctr(['container', 'delete', id]);
    daemon.kill('SIGTERM');
    await new Promise((r) => { if (daemon!.exitCode !== null) r(undefined); else daemon!.once('exit', r); });
  }
  if (existsSync(keelRoot)) for (const ns of readdirSync(keelRoot)) deleteKeelContainers(join(keelRoot, ns));
  // The namespace's parent cgroups (empty now) in every hierarchy.
  for (const h of readdirSync('/sys/fs/cgroup')) {
    const found = run('find', [join('/sys/fs/cgroup', h), '-maxdepth', '3', '-type', 'd', '-name', NS]).stdout.split('\n').filter(Boolean);
    for (const d of found) { try { rmdirSync(d); } catch { /* not empty: a task was left behind */ } }
  }
  run('umount', ['-R', join(dir, 'root')], { stdio: 'ignore' });
  rmSync(dir, { recursive: true, force: true });
});

test('ctr run --rm --runc-binary keel prints what the task prints', { skip }, (t) => {
  if (daemonSkip) return t.skip(daemonSkip);
  const r = ctr(['run', '--rm', ...KEEL(), IMAGE, 'kc1', 'echo', 'hi']);
  assert.equal(r.status, 0, describe(r, 'ctr run'));
  assert.equal(r.stdout, 'hi\n');
  assert.ok(existsSync(keelRoot), 'keel made its state root: keel ran the task');
  const code = ctr(['run', '--rm', ...KEEL(), IMAGE, 'kc2', 'sh', '-c', 'echo out; exit 5']);
  assert.equal(code.stdout, 'out\n');
  assert.equal(code.status, 5, describe(code, 'ctr run exit status'));
});

test('a detached task is listed, paused, resumed and killed through keel', { skip }, (t) => {
  if (daemonSkip) return t.skip(daemonSkip);
  const r = ctr(['run', '-d', ...KEEL(), IMAGE, 'kc3', 'sh', '-c', 'sleep 1000 & wait']);
  assert.equal(r.status, 0, describe(r, 'ctr run -d'));
  const ls = () => ctr(['task', 'ls']).stdout.split('\n').find((l) => l.startsWith('kc3 '))?.trim().split(/\s+/);
  const [, pid, status] = ls()!;
  assert.equal(status, 'RUNNING');
  assert.equal(JSON.parse(run(keel, ['--root', join(keelRoot, NS), 'state', 'kc3']).stdout).pid, Number(pid), 'keel holds the task');

  // ctr task ps asks the runtime (keel ps --format json).
  const ps = ctr(['task', 'ps', 'kc3']);
  assert.equal(ps.status, 0, describe(ps, 'ctr task ps'));
  const pids = ps.stdout.trim().split('\n').slice(1).map((l) => Number(l.trim().split(/\s+/)[0])).sort((a, b) => a - b);
  assert.equal(pids.length, 2, ps.stdout);
  assert.ok(pids.includes(Number(pid)));

  const p = ctr(['task', 'pause', 'kc3']);
  assert.equal(p.status, 0, describe(p, 'ctr task pause'));
  assert.equal(ls()![2], 'PAUSED');
  const res = ctr(['task', 'resume', 'kc3']);
  assert.equal(res.status, 0, describe(res, 'ctr task resume'));
  assert.equal(ls()![2], 'RUNNING');

  const k = ctr(['task', 'kill', '--signal', 'SIGKILL', 'kc3']);
  assert.equal(k.status, 0, describe(k, 'ctr task kill'));
  const deadline = Date.now() + 5000;
  while (ls()?.[2] !== 'STOPPED' && Date.now() < deadline) sleep(50);
  assert.equal(ls()![2], 'STOPPED');
  const del = ctr(['task', 'delete', 'kc3']);
  assert.equal(del.status, 0, describe(del, 'ctr task delete'));
  assert.equal(run(keel, ['--root', join(keelRoot, NS), 'list', '-q']).stdout, '', 'keel deleted the container');
  assert.equal(ctr(['container', 'delete', 'kc3']).status, 0);
});

test('ctr task exec runs a process in the task through keel exec', { skip: skip || (!keelHasExec() && 'keel exec is not available in this build') }, (t) => {
  if (daemonSkip) return t.skip(daemonSkip);
  const r = ctr(['run', '-d', ...KEEL(), IMAGE, 'kc4', 'sleep', '1000']);
  assert.equal(r.status, 0, describe(r, 'ctr run -d'));
  try {
    const e = ctr(['task', 'exec', '--exec-id', 'e1', 'kc4', 'sh', '-c', 'echo hi from exec; cat /proc/1/cmdline | tr "\\0" " "']);
    assert.equal(e.status, 0, describe(e, 'ctr task exec'));
    assert.equal(e.stdout, 'hi from exec\nsleep 1000 ');
    const code = ctr(['task', 'exec', '--exec-id', 'e2', 'kc4', 'sh', '-c', 'exit 4']);
    assert.equal(code.status, 4, describe(code, 'ctr task exec exit status'));
  } finally {
    ctr(['task', 'kill', '--signal', 'SIGKILL', 'kc4']);
    const deadline = Date.now() + 5000;
    while (ctr(['task', 'delete', 'kc4']).status !== 0 && Date.now() < deadline) sleep(50);
    ctr(['container', 'delete', 'kc4']);
  }
});
