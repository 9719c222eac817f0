import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkRuntimeState } from '../../src/spec/index.js';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, waitFor } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => keel.cleanup());

function state(id: string) {
  const r = keel(['state', id]);
  assert.equal(r.status, 0, r.stderr);
  const doc = JSON.parse(r.stdout);
  const v = checkRuntimeState(doc);
  assert.ok(v.ok, `state JSON is valid against state-schema.json: ${JSON.stringify(v)}`);
  return doc;
}

test('create leaves the process waiting, start runs it, state follows created → running → stopped', { skip }, () => {
  const bundle = makeBundle(['sh', '-c', 'echo started > /tmp/marker; sleep 30'], (c) => {
    c.mounts.push({ destination: '/tmp', type: 'bind', source: join(bundle0(), 'out'), options: ['rbind', 'rw'] });
  });
  const r = keel(['create', '--bundle', bundle, '--pid-file', join(bundle, 'pid'), 'life1']);
  assert.equal(r.status, 0, r.stderr);
  const s1 = state('life1');
  assert.equal(s1.status, 'created');
  assert.equal(s1.id, 'life1');
  assert.equal(s1.bundle, bundle);
  assert.ok(s1.pid > 0);
  assert.equal(readFileSync(join(bundle, 'pid'), 'utf8'), String(s1.pid));
  // The init exists, in new namespaces, but the user program has not run.
  assert.ok(existsSync(`/proc/${s1.pid}`));
  assert.notEqual(readFileSync(`/proc/${s1.pid}/cmdline`, 'utf8').split('\0')[0], 'sh');
  assert.equal(existsSync(join(bundle0(), 'out/marker')), false);

  assert.equal(keel(['start', 'life1']).status, 0);
  assert.ok(waitFor(() => existsSync(join(bundle0(), 'out/marker'))), 'the user process ran after start');
  const s2 = state('life1');
  assert.equal(s2.status, 'running');
  assert.equal(s2.pid, s1.pid, 'the user process replaced the init (same pid)');

  const again = keel(['start', 'life1']);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /cannot start an already running container/);

  const del = keel(['delete', 'life1']);
  assert.equal(del.status, 1, 'delete refuses a running container');
  assert.match(del.stderr, /not stopped: running/);

  assert.equal(keel(['kill', 'life1', 'KILL']).status, 0);
  assert.ok(waitFor(() => state('life1').status === 'stopped'));
  assert.equal(state('life1').pid, 0);
  assert.equal(keel(['kill', 'life1']).status, 1, 'kill of a stopped container is an error');
  assert.equal(keel(['delete', 'life1']).status, 0);
  assert.equal(existsSync(join(keel.root, 'life1')), false, 'delete removed the state directory');
  const gone = keel(['state', 'life1']);
  assert.equal(gone.status, 1);
  assert.match(gone.stderr, /container life1 does not exist/);
});

let bundleZero: string | undefined;
/** A host directory the containers of these tests can write to (bound at /tmp). */
function bundle0(): string {
  if (!bundleZero) {
    bundleZero = makeBundle(['true']);
    mkdirSync(join(bundleZero, 'out'), { recursive: true });
  }
  return bundleZero;
}

test('an id in use, an unknown id and a bad id are refused', { skip }, () => {
  const bundle = makeBundle(['sleep', '30']);
  assert.equal(keel(['create', '-b', bundle, 'dup1']).status, 0);
  const dup = keel(['create', '-b', bundle, 'dup1']);
  assert.equal(dup.status, 1);
  assert.match(dup.stderr, /container with id dup1 already exists/);
  assert.equal(state('dup1').status, 'created', 'the first container is untouched');
  for (const cmd of [['start', 'nope'], ['state', 'nope'], ['kill', 'nope'], ['delete', 'nope']]) {
    const r = keel(cmd);
    assert.equal(r.status, 1, cmd.join(' '));
    assert.match(r.stderr, /container nope does not exist/);
  }
  for (const bad of ['../x', '', 'a/b']) {
    const r = keel(['create', '-b', bundle, bad]);
    assert.equal(r.status, 1, `id ${JSON.stringify(bad)}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one error line');
  }
  assert.equal(keel(['delete', '--force', 'nope']).status, 0, 'delete --force of a missing container succeeds, as runc');
  assert.equal(keel(['delete', 'dup1']).status, 0, 'a created container can be deleted');
});

test('kill takes signal names with or without SIG and numbers; --all reaches every process', { skip }, () => {
  const bundle = makeBundle(['sh', '-c', "trap 'exit 42' USR1; sleep 100 & sleep 100 & while true; do sleep 0.05; done"]);
  assert.equal(keel(['run', '-d', '-b', bundle, 'sig1']).status, 0);
  const pid = state('sig1').pid;
  // Signals without a handler do not reach a pid namespace's init: wait until the trap is set.
  const caught = () => BigInt('0x' + (/SigCgt:\s*([0-9a-f]+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '0'));
  assert.ok(waitFor(() => (caught() & (1n << 9n)) !== 0n), 'the shell installed its USR1 trap');
  assert.equal(keel(['kill', 'sig1', 'SIGUSR1']).status, 0);
  assert.ok(waitFor(() => state('sig1').status === 'stopped'), 'SIGUSR1 reached the trap');
  assert.equal(keel(['delete', 'sig1']).status, 0);

  assert.equal(keel(['run', '-d', '-b', bundle, 'sig2']).status, 0);
  const bad = keel(['kill', 'sig2', 'NOPE']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown signal/);
  assert.equal(keel(['kill', '--all', 'sig2', '9']).status, 0);
  assert.ok(waitFor(() => state('sig2').status === 'stopped'));
  assert.equal(keel(['delete', 'sig2']).status, 0);

  // An init without handlers ignores TERM inside its pid namespace: kill a process that is no init.
  const plain = makeBundle(['sleep', '100'], (c) => { c.linux.namespaces = c.linux.namespaces.filter((n: any) => n.type !== 'pid'); });
  assert.equal(keel(['run', '-d', '-b', plain, 'sig3']).status, 0);
  assert.equal(keel(['kill', 'sig3']).status, 0, 'the default signal is SIGTERM');
  assert.ok(waitFor(() => state('sig3').status === 'stopped'), 'SIGTERM stops sleep');
  assert.equal(keel(['delete', 'sig3']).status, 0);
});

test('delete --force kills a running container and removes it', { skip }, () => {
  const bundle = makeBundle(['sleep', '100']);
  assert.equal(keel(['run', '--detach', '-b', bundle, 'force1']).status, 0);
  const pid = state('force1').pid;
  assert.equal(keel(['delete', '--force', 'force1']).status, 0);
  assert.ok(waitFor(() => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z')));
  assert.equal(keel(['list', '-q']).stdout.includes('force1'), false);
});

test('list prints a table and --format json', { skip }, () => {
  const bundle = makeBundle(['sleep', '30']);
  assert.equal(keel(['create', '-b', bundle, 'list1']).status, 0);
  const table = keel(['list']);
  assert.equal(table.status, 0);
  const lines = table.stdout.trim().split('\n');
  assert.match(lines[0]!, /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER$/);
  assert.ok(lines.some((l) => /^list1\s+\d+\s+created\s+/.test(l)));
  const json = JSON.parse(keel(['list', '--format', 'json']).stdout);
  const entry = json.find((e: any) => e.id === 'list1');
  assert.equal(entry.status, 'created');
  assert.equal(entry.bundle, bundle);
  assert.equal(keel(['delete', '--force', 'list1']).status, 0);
});

test('run exits with the container process exit code, 128+n when killed by signal n', { skip }, () => {
  const b7 = makeBundle(['sh', '-c', 'exit 7']);
  assert.equal(keel(['run', '-b', b7, 'exit7']).status, 7);
  // Without a pid namespace the shell is not an init, so it can be killed by its own signal.
  const bsig = makeBundle(['sh', '-c', 'kill -9 $$'], (c) => { c.linux.namespaces = c.linux.namespaces.filter((n: any) => n.type !== 'pid'); });
  assert.equal(keel(['run', '-b', bsig, 'exit137']).status, 137);
  const out = makeBundle(['echo', 'hello', 'world']);
  const r = keel(['run', '-b', out, 'echo1']);
  assert.equal(r.status, 0);
  assert.equal(r.stdout, 'hello world\n', 'stdio passes straight through');
  assert.equal(keel(['list', '-q']).stdout.includes('echo1'), false, 'run deletes the container after it exits');
});
