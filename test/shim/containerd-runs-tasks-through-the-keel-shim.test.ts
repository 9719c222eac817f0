// containerd (started here with its own root, state and sockets) runs tasks with runtime
// io.containerd.keel.v2: containerd-shim-keel-v2 from dist/, keel's runtime in the shim's process.
// Every check is through ctr, on containers of a busybox image imported into containerd.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { describe, which } from '../runtime-clients/helpers.js';
import { Containerd, containerdSkip, IMAGE, KEEL_RUNTIME } from './containerd-env.js';

const skip = containerdSkip();
const cd = new Containerd();
let startSkip: string | false = false;
const R = ['--runtime', KEEL_RUNTIME];

function sleep(ms: number) { return new Promise((r) => setTimeout(r, ms)); }

/** Pids of the keel shims serving this test's namespace (started for container `id`). */
function shimPids(id = ''): number[] {
  const out = spawnSync('pgrep', ['-f', `containerd-shim-keel-v2-daemon -namespace ${cd.ns} -id ${id}`], { encoding: 'utf8' }).stdout;
  return out.split('\n').filter(Boolean).map(Number);
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Whether a process runs (a zombie no longer does: its reaper is whoever adopted it, not ours to wait for). */
function running(pid: number): boolean {
  try { return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0] !== 'Z'; } catch { return false; }
}

function taskStatus(id: string): string {
  const line = cd.ctr(['task', 'ls']).stdout.split('\n').find((l) => l.split(/\s+/)[0] === id);
  return line?.split(/\s+/)[2] ?? '';
}

async function removeTask(id: string): Promise<void> {
  cd.ctr(['task', 'kill', '-s', 'SIGKILL', id]);
  await until(`task ${id} to stop`, () => taskStatus(id) === 'STOPPED' || taskStatus(id) === '');
  const d = cd.ctr(['task', 'delete', id]);
  assert.equal(d.status, 0, describe(d, 'ctr task delete'));
  const c = cd.ctr(['container', 'delete', id]);
  assert.equal(c.status, 0, describe(c, 'ctr container delete'));
}

before(async () => {
  if (skip) return;
  startSkip = await cd.start();
  if (!startSkip) await cd.importImage();
});

after(async () => { if (!skip) await cd.cleanup(); });

test('ctr run --rm: the task prints through containerd\'s fifos and its exit code comes back', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  const r = cd.ctr(['run', '--rm', ...R, IMAGE, 'rm1', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(r.status, 3, describe(r, 'ctr run'));
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr.replace(/^time=.*\n/gm, ''), 'err\n');
  const in1 = cd.ctr(['run', '--rm', ...R, IMAGE, 'rm3', 'sh', '-c', 'read line; echo "got $line"'], { input: 'hello\n' });
  assert.equal(in1.stdout, 'got hello\n', describe(in1, 'ctr run with stdin'));
  await until('the shims to exit once their tasks are deleted', () => shimPids().length === 0);
  assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(cd.dir + '/state'), false, 'no rootfs mount is left');
});

test('ctr run --log-uri binary:// and file://: a logger program gets the output on fds 3 and 4, as with runc\'s shim', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  const dir = join(cd.dir, 'logger');
  mkdirSync(dir);
  const logger = join(dir, 'logger.sh');
  // Ready once fd 5 is closed; then copies stdout and stderr and records its arguments and environment.
  writeFileSync(logger, `#!/bin/sh\necho "$* id=$CONTAINER_ID ns=$CONTAINER_NAMESPACE" > ${dir}/args\nexec 5>&-\ncat <&3 > ${dir}/out.tmp &\ncat <&4 > ${dir}/err.tmp\nwait\nmv ${dir}/out.tmp ${dir}/out; mv ${dir}/err.tmp ${dir}/err\n`, { mode: 0o755 });
  const r = cd.ctr(['run', '--rm', ...R, '--log-uri', `binary://${logger}?tag=t1`, IMAGE, 'log1', 'sh', '-c', 'echo to-out; echo to-err >&2; exit 4']);
  assert.equal(r.status, 4, describe(r, 'ctr run --log-uri binary://'));
  await until('the logger to see the end of the output', () => existsSync(join(dir, 'out')) && existsSync(join(dir, 'err')));
  assert.equal(readFileSync(join(dir, 'out'), 'utf8'), 'to-out\n');
  assert.equal(readFileSync(join(dir, 'err'), 'utf8'), 'to-err\n');
  assert.equal(readFileSync(join(dir, 'args'), 'utf8'), `tag t1 id=log1 ns=${cd.ns}\n`);
  const file = join(dir, 'file.log');
  const f = cd.ctr(['run', '--rm', ...R, '--log-uri', `file://${file}`, IMAGE, 'log2', 'sh', '-c', 'echo one; echo two >&2']);
  assert.equal(f.status, 0, describe(f, 'ctr run --log-uri file://'));
  assert.equal(readFileSync(file, 'utf8'), 'one\ntwo\n');
  const bad = cd.ctr(['run', '--rm', ...R, '--log-uri', `binary://${join(dir, 'missing')}`, IMAGE, 'log3', 'true']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /cannot start the logger/, describe(bad, 'ctr run with a missing logger'));
  await until('the shims to exit once their tasks are deleted', () => shimPids().length === 0);
});

test('a detached task: exec, ps, pause, resume, metrics, kill, delete', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  const r = cd.ctr(['run', '-d', ...R, IMAGE, 'd1', 'sleep', '1000']);
  assert.equal(r.status, 0, describe(r, 'ctr run -d'));
  assert.equal(taskStatus('d1'), 'RUNNING');
  const e = cd.ctr(['task', 'exec', '--exec-id', 'e1', 'd1', 'sh', '-c', 'echo in $(cat /proc/1/cmdline | tr "\\0" " "); exit 4']);
  assert.equal(e.status, 4, describe(e, 'ctr task exec'));
  assert.equal(e.stdout, 'in sleep 1000\n');
  const cat = cd.ctr(['task', 'exec', '--exec-id', 'e2', 'd1', 'cat'], { input: 'through stdin\n' });
  assert.equal(cat.status, 0, describe(cat, 'ctr task exec cat'));
  assert.equal(cat.stdout, 'through stdin\n');
  // A process left running in the background is listed by ps.
  const bg = cd.ctr(['task', 'exec', '-d', '--exec-id', 'e3', 'd1', 'sleep', '1001']);
  assert.equal(bg.status, 0, describe(bg, 'ctr task exec -d'));
  const ps = cd.ctr(['task', 'ps', 'd1']);
  assert.equal(ps.status, 0, describe(ps, 'ctr task ps'));
  const pids = ps.stdout.split('\n').slice(1).map((l) => Number(l.split(/\s+/)[0])).filter(Boolean);
  assert.equal(pids.length, 2, ps.stdout);
  for (const pid of pids) assert.match(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), /^sleep\x00100[01]\x00$/);

  assert.equal(cd.ctr(['task', 'pause', 'd1']).status, 0);
  assert.equal(taskStatus('d1'), 'PAUSED');
  assert.equal(cd.ctr(['task', 'resume', 'd1']).status, 0);
  assert.equal(taskStatus('d1'), 'RUNNING');

  const m = cd.ctr(['task', 'metrics', 'd1']);
  assert.equal(m.status, 0, describe(m, 'ctr task metrics'));
  assert.match(m.stdout, /^pids\.current\s+2\s*$/m);
  assert.match(m.stdout, /^memory\.usage_in_bytes\s+[1-9]\d*\s*$/m);
  assert.match(m.stdout, /^cpuacct\.usage\s+[1-9]\d*\s*$/m);

  // Kill the exec'd process alone, then the task.
  assert.equal(cd.ctr(['task', 'kill', '--exec-id', 'e3', '-s', 'SIGKILL', 'd1']).status, 0);
  await until('the exec to end', () => cd.ctr(['task', 'ps', 'd1']).stdout.trim().split('\n').length === 2);
  // Killed by a signal: 128 + n, as containerd reports it.
  assert.equal(cd.ctr(['task', 'kill', '-s', 'SIGKILL', 'd1']).status, 0);
  await until('d1 to stop', () => taskStatus('d1') === 'STOPPED');
  const del = cd.ctr(['task', 'delete', 'd1']);
  assert.equal(del.status, 0, describe(del, 'ctr task delete'));
  assert.match(del.stderr, /exit code 137/);
  assert.equal(cd.ctr(['container', 'delete', 'd1']).status, 0);
  await until('the shim to exit', () => shimPids().length === 0);
});

test('a terminal: ctr run -t gets a pty whose size follows ctr\'s terminal', { skip: skip || (!which('script') && 'script (util-linux) not installed') }, (t) => {
  if (startSkip) return t.skip(startSkip);
  // script(1) gives ctr a terminal of 91x27; the task sees its pty resized to that.
  // (ctr resizes the pty just after the task starts: the task waits for it.)
  const task = 'for i in $(seq 100); do [ "$(stty size 2>/dev/null)" = "27 91" ] && break; sleep 0.1; done; stty size; tty; exit 5';
  const cmd = `stty cols 91 rows 27; ctr --address ${cd.sock} --namespace ${cd.ns} run -t --rm --runtime ${KEEL_RUNTIME} ${IMAGE} tty1 sh -c '${task}'`;
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: cd.env, timeout: 60_000, stdio: ['pipe', 'pipe', 'pipe'] });
  assert.equal(r.status, 5, describe(r, 'ctr run -t'));
  assert.match(r.stdout, /27 91\r*\n/);
  assert.match(r.stdout, /\/dev\/pts\/\d+/);
});

test('task events reach containerd: create, start, exec-added, exec-started, paused, resumed, oom, exit, delete', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  const events = spawn('ctr', ['--address', cd.sock, '--namespace', cd.ns, 'events'], { env: cd.env });
  let out = '';
  events.stdout.on('data', (b) => { out += b; });
  try {
    await sleep(300);
    assert.equal(cd.ctr(['run', '-d', ...R, '--memory-limit', '16777216', IMAGE, 'ev1', 'sleep', '1000']).status, 0);
    assert.equal(cd.ctr(['task', 'exec', '--exec-id', 'x1', 'ev1', 'true']).status, 0);
    assert.equal(cd.ctr(['task', 'pause', 'ev1']).status, 0);
    assert.equal(cd.ctr(['task', 'resume', 'ev1']).status, 0);
    // More than the memory limit: the OOM killer acts in the task's cgroup.
    cd.ctr(['task', 'exec', '--exec-id', 'x2', 'ev1', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1']);
    await removeTask('ev1');
    await until('the delete event', () => out.includes('/tasks/delete'));
  } finally {
    events.kill();
  }
  const topics = out.split('\n').map((l) => /\s(\/tasks\/[\w-]+)\s/.exec(l)?.[1]).filter(Boolean);
  for (const want of ['/tasks/create', '/tasks/start', '/tasks/exec-added', '/tasks/exec-started', '/tasks/paused', '/tasks/resumed', '/tasks/oom', '/tasks/exit', '/tasks/delete']) {
    assert.ok(topics.includes(want), `no ${want} event in:\n${out}`);
  }
  assert.ok(topics.indexOf('/tasks/create') < topics.indexOf('/tasks/start'));
  assert.ok(topics.lastIndexOf('/tasks/exit') < topics.indexOf('/tasks/delete'));
  assert.match(out, /\/tasks\/exit \{"container_id":"ev1","id":"ev1","pid":\d+,"exit_status":137/);
  assert.match(out, /\/tasks\/exit \{"container_id":"ev1","id":"x1","pid":\d+,"exited_at"/); // exit status 0 is left out
});

test('containers of one pod (io.kubernetes.cri.sandbox-id) share one shim, which ends with the last', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  const pod = ['--annotation', 'io.kubernetes.cri.sandbox-id=pod-a'];
  const others = shimPids().length;
  for (const id of ['pa1', 'pa2']) {
    const r = cd.ctr(['run', '-d', ...R, ...pod, IMAGE, id, 'sleep', '1000']);
    assert.equal(r.status, 0, describe(r, `ctr run ${id}`));
  }
  const other = cd.ctr(['run', '-d', ...R, IMAGE, 'solo', 'sleep', '1000']);
  assert.equal(other.status, 0, describe(other, 'ctr run solo'));
  assert.equal(shimPids().length, others + 2, 'one shim for the pod, one for the other container');
  const addr = (id: string) => readFileSync(`${cd.bundle(id)}/address`, 'utf8');
  assert.equal(addr('pa1'), addr('pa2'));
  assert.notEqual(addr('pa1'), addr('solo'));
  // Each container is served on its own: exec into the second, delete the first.
  assert.equal(cd.ctr(['task', 'exec', '--exec-id', 'x', 'pa2', 'true']).status, 0);
  await removeTask('pa1');
  assert.equal(taskStatus('pa2'), 'RUNNING');
  assert.equal(shimPids().length, others + 2, 'the pod\'s shim stays while it serves a container');
  await removeTask('pa2');
  await removeTask('solo');
  await until('the shims to exit', () => shimPids().length === others);
});

test('containerd restarted: a running task is still managed through its shim', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  assert.equal(cd.ctr(['run', '-d', ...R, IMAGE, 'rs1', 'sleep', '1000']).status, 0);
  const before = shimPids();
  await cd.stop();
  const again = await cd.start();
  assert.equal(again, false, again || '');
  assert.deepEqual(shimPids(), before);
  assert.equal(taskStatus('rs1'), 'RUNNING');
  const e = cd.ctr(['task', 'exec', '--exec-id', 'after', 'rs1', 'echo', 'still here']);
  assert.equal(e.stdout, 'still here\n', describe(e, 'ctr task exec after the restart'));
  await removeTask('rs1');
});

test('the shim killed: containerd\'s cleanup (shim delete) leaves no process, mount, cgroup or state', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  assert.equal(cd.ctr(['run', '-d', ...R, IMAGE, 'k1', 'sleep', '1000']).status, 0);
  const init = Number(cd.ctr(['task', 'ls']).stdout.split('\n').find((l) => l.startsWith('k1 '))!.split(/\s+/)[1]);
  const cgroupLine = readFileSync(`/proc/${init}/cgroup`, 'utf8').split('\n').find((l) => /:memory:/.test(l));
  const [shim] = shimPids('k1 ');
  assert.ok(shim && init > 0);
  process.kill(shim, 'SIGKILL');
  await until('the task\'s processes to be gone', () => !running(init)).catch((err) => {
    throw new Error(`${err.message}; init ${readFileSync(`/proc/${init}/status`, 'utf8').split('\n').slice(0, 8).join(' ')}; containerd: ${cd.logTail(8)}`);
  });
  await until('containerd to forget the task', () => taskStatus('k1') === '');
  assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(cd.bundle('k1')), false, 'the rootfs is unmounted');
  if (cgroupLine) assert.equal(existsSync(`/sys/fs/cgroup/memory${cgroupLine.split(':')[2]}`), false, 'the cgroup is removed');
  assert.equal(existsSync(`/run/containerd/keel/${cd.ns}/k1`), false, 'keel\'s state is removed');
  assert.equal(cd.ctr(['container', 'delete', 'k1']).status, 0);
});

test('the shim\'s socket is root\'s only; a malformed request gets an error and the shim keeps serving (Update, State)', { skip }, async (t) => {
  if (startSkip) return t.skip(startSkip);
  assert.equal(cd.ctr(['run', '-d', ...R, IMAGE, 'm1', 'sleep', '1000']).status, 0);
  const path = readFileSync(`${cd.bundle('m1')}/address`, 'utf8').replace(/^unix:\/\//, '');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const { TtrpcClient, Code, frame, TYPE_REQUEST } = await import('../../src/shim/ttrpc.js');
  const { create, toBinary, fromBinary } = await import('@bufbuild/protobuf');
  const api = await import('../../src/shim/generated/runtime/task/v2/shim_pb.js');
  const sock = connect(path);
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  // A frame whose payload is no ttrpc.Request, sent raw before the client takes the socket.
  sock.write(frame(1, TYPE_REQUEST, Buffer.from([0xff, 0xff, 0xff, 0xff])));
  const client = new TtrpcClient(sock);
  (client as unknown as { next: number }).next = 3;
  const T = 'containerd.task.v2.Task';
  await assert.rejects(client.call(T, 'State', new Uint8Array([0x0a, 0xff])), (e: { code: number }) => e.code === Code.INVALID_ARGUMENT);
  await assert.rejects(client.call(T, 'NoSuchMethod', new Uint8Array()), (e: { code: number }) => e.code === Code.UNIMPLEMENTED);
  await assert.rejects(client.call(T, 'Checkpoint', new Uint8Array()), (e: { code: number }) => e.code === Code.UNIMPLEMENTED);
  await assert.rejects(client.call(T, 'State', toBinary(api.StateRequestSchema, create(api.StateRequestSchema, { id: 'nope' }))), (e: { code: number }) => e.code === Code.NOT_FOUND);
  const st = fromBinary(api.StateResponseSchema, await client.call(T, 'State', toBinary(api.StateRequestSchema, create(api.StateRequestSchema, { id: 'm1' }))));
  assert.equal(st.id, 'm1');
  assert.ok(st.pid > 0);
  // Update (ctr 1.6 has no command for it): runtime-spec LinuxResources as JSON, as containerd sends them.
  const resources = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify({ memory: { limit: 67108864 } })) };
  await client.call(T, 'Update', toBinary(api.UpdateTaskRequestSchema, create(api.UpdateTaskRequestSchema, { id: 'm1', resources })));
  assert.match(cd.ctr(['task', 'metrics', 'm1']).stdout, /^memory\.limit_in_bytes\s+67108864\s*$/m);
  client.close();
  assert.equal(taskStatus('m1'), 'RUNNING');
  await removeTask('m1');
});
