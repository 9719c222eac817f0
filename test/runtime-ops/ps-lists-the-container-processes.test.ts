// keel ps: the host pids of the container's processes (json), and the host's ps output kept to those
// processes (table), as runc ps prints them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { canRunContainers, skipReason, keelWithRoot, makeBundle, waitFor, which, sh, tempDir, removeTemps } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => { keel.cleanup(); removeTemps(); });

const ARGS = ['sh', '-c', 'sleep 1000 & sleep 1001 & wait'];

/** Every host process in the pid namespace of `pid` (an independent account of the container's processes). */
function pidsInNamespaceOf(pid: number): number[] {
  const ns = readlinkSync(`/proc/${pid}/ns/pid`);
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try { if (readlinkSync(`/proc/${name}/ns/pid`) === ns) out.push(Number(name)); } catch { /* exited */ }
  }
  return out.sort((a, b) => a - b);
}

function jsonPids(id: string): number[] | null {
  const r = keel(['ps', '--format', 'json', id]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^(null|\[[\d,]*\])\n$/, 'one compact JSON line, as runc (Go json.Encoder)');
  return JSON.parse(r.stdout);
}

test('ps --format json prints the host pids of every process in the container', { skip }, () => {
  const bundle = makeBundle(ARGS);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ps1']).status, 0);
  const init = JSON.parse(keel(['state', 'ps1']).stdout).pid as number;
  assert.ok(waitFor(() => (jsonPids('ps1') ?? []).length === 3), 'the shell and its two sleeps');
  const pids = jsonPids('ps1')!;
  assert.deepEqual(pids, [...pids].sort((a, b) => a - b), 'ascending');
  assert.ok(pids.includes(init), 'the init is listed');
  assert.deepEqual(pids, pidsInNamespaceOf(init), 'exactly the processes of the container');
});

test('ps prints the host ps -ef header and the lines of the container processes only', { skip }, () => {
  const bundle = makeBundle(ARGS);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ps2']).status, 0);
  assert.ok(waitFor(() => (jsonPids('ps2') ?? []).length === 3));
  const pids = jsonPids('ps2')!;
  const r = keel(['ps', 'ps2']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  const hostHeader = sh('ps', ['-ef']).stdout.split('\n')[0];
  assert.equal(lines[0], hostHeader, 'the header of ps -ef');
  assert.equal(lines.length, 4, r.stdout);
  assert.deepEqual(lines.slice(1).map((l) => Number(l.trim().split(/\s+/)[1])).sort((a, b) => a - b), pids);
  assert.ok(lines.some((l) => / sleep 1000$/.test(l)) && lines.some((l) => / sleep 1001$/.test(l)), r.stdout);

  const custom = keel(['ps', 'ps2', '-o', 'pid,comm']);
  assert.equal(custom.status, 0, custom.stderr);
  const cl = custom.stdout.trimEnd().split('\n');
  assert.match(cl[0]!, /^\s*PID COMMAND$/, 'the ps options after the id go to ps');
  assert.deepEqual(cl.slice(1).map((l) => l.trim().split(/\s+/)[1]).sort(), ['sh', 'sleep', 'sleep']);
});

test('ps refuses an unknown format and ps output without a PID column; a stopped container has no processes', { skip }, () => {
  const bundle = makeBundle(['sleep', '1000']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ps3']).status, 0);
  const f = keel(['ps', '--format', 'yaml', 'ps3']);
  assert.equal(f.status, 1);
  assert.equal(f.stderr, 'invalid --format "yaml": must be table or json\n');
  const noPid = keel(['ps', 'ps3', '-o', 'comm']);
  assert.equal(noPid.status, 1);
  assert.match(noPid.stderr, /cannot find a PID column/);
  assert.equal(keel(['kill', 'ps3', 'KILL']).status, 0);
  assert.ok(waitFor(() => JSON.parse(keel(['state', 'ps3']).stdout).status === 'stopped'));
  assert.equal(jsonPids('ps3'), null, 'null, as runc prints for no processes');
  const table = keel(['ps', 'ps3']);
  assert.equal(table.status, 0);
  assert.equal(table.stdout.trimEnd().split('\n').length, 1, 'only the header');
  assert.match(keel(['ps', 'nosuch']).stderr, /container nosuch does not exist/);
});

test('ps prints what runc ps prints for the same bundle (same header, same commands)', { skip: skip || (!which('runc') && 'runc not installed') }, () => {
  const bundle = makeBundle(ARGS);
  const runcRoot = tempDir('keel-ops-runc-');
  const runc = (args: string[]) => sh('runc', ['--root', runcRoot, ...args]);
  assert.equal(keel(['run', '-d', '-b', bundle, 'ps4']).status, 0);
  // The container inherits runc's stdio: give it none, or spawnSync would wait for the container's end.
  const rr = spawnSync('runc', ['--root', runcRoot, 'run', '-d', '-b', bundle, 'ps4r'], { stdio: 'ignore' });
  assert.equal(rr.status, 0, 'runc run -d');
  try {
    assert.ok(waitFor(() => (jsonPids('ps4') ?? []).length === 3 && (JSON.parse(runc(['ps', '--format', 'json', 'ps4r']).stdout) ?? []).length === 3));
    for (const args of [[], ['-o', 'pid,ppid,comm,args'], ['-o', 'user,comm']]) {
      const k = keel(['ps', 'ps4', ...args]);
      const r = runc(['ps', 'ps4r', ...args]);
      assert.equal(k.status, r.status, `${args.join(' ')}: ${k.stderr} ${r.stderr}`);
      const shape = (out: string) => out.trimEnd().split('\n').map((l, i) => (i === 0 ? l : l.replace(/^\s*\S+\s+\d+\s+\d+\s+\S+\s+\S+/, '').trim())).sort();
      if (args.length === 0) assert.deepEqual(shape(k.stdout), shape(r.stdout), 'ps -ef: header and commands');
      else if (args[1] === 'user,comm') assert.equal(k.stdout, r.stdout, 'without pid columns, the same text');
      else assert.equal(k.stdout.split('\n')[0], r.stdout.split('\n')[0]);
      assert.equal(k.stdout.trimEnd().split('\n').length, r.stdout.trimEnd().split('\n').length);
    }
  } finally {
    runc(['delete', '--force', 'ps4r']);
  }
});
