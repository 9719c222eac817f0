// Many keel processes at once: parallel creates, and state/kill/delete racing on the same
// containers. The state is never corrupt, every command either works or fails with one clear
// line, and nothing is left behind: no state, process, mount or cgroup.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkRuntimeState } from '../../src/spec/index.js';
import { canRunContainers, skipReason, keelWithRoot, keelBin, makeBundle, tempDir, waitFor } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => keel.cleanup());

const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const outDir = tempDir('keel-conc-');
let seq = 0;

interface Result { args: string[]; status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Starts `keel --root R ...args` now (its own process group) and resolves when it exits. */
function keelAsync(args: string[]): Promise<Result> {
  const n = seq++;
  const outPath = join(outDir, `${n}.out`), errPath = join(outDir, `${n}.err`);
  const out = openSync(outPath, 'w'), err = openSync(errPath, 'w');
  // Files, not pipes: a container made by create keeps the runtime's stdio open.
  const child = spawn(keelBin, ['--root', keel.root, ...args], { env, stdio: ['ignore', out, err], detached: true });
  closeSync(out); closeSync(err);
  return new Promise((res) => child.on('exit', (status, signal) => {
    res({ args, status, signal, stdout: readFileSync(outPath, 'utf8'), stderr: readFileSync(errPath, 'utf8') });
  }));
}

function oneLineError(r: Result): void {
  assert.equal(r.signal, null, `${r.args.join(' ')} was not killed (${r.signal})`);
  assert.equal(r.status, 1, `${r.args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `${r.args.join(' ')}: one error line: ${r.stderr}`);
}

/** Host processes whose root directory is `rootfs` (a container's processes after pivot_root show their root as it). */
function processesIn(pids: number[]): number[] {
  return pids.filter((pid) => {
    try { return !readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.startsWith('Z'); } catch { return false; }
  });
}

/** Whether a cgroup named `name` is anywhere under `dir` (cgroups of other work may come and go meanwhile). */
function hasCgroupNamed(dir: string, name: string): boolean {
  let entries: import('node:fs').Dirent[];
  try { entries = readdirSync(dir, { withFileTypes: true }); } catch { return false; }
  return entries.some((e) => e.isDirectory() && (e.name === name || hasCgroupNamed(join(dir, e.name), name)));
}

function assertNothingLeft(ids: string[], bundle: string, pids: number[]): void {
  assert.deepEqual(keel(['list', '-q']).stdout.split('\n').filter(Boolean).filter((id) => ids.includes(id)), [], 'no container is listed');
  for (const id of ids) {
    assert.equal(existsSync(join(keel.root, id)), false, `${id}: no state directory`);
    assert.equal(existsSync(`/sys/fs/cgroup/pids/${id}`), false, `${id}: no pids cgroup`);
    assert.equal(existsSync(`/sys/fs/cgroup/memory/${id}`) || hasCgroupNamed('/sys/fs/cgroup/memory', id), false, `${id}: no memory cgroup`);
  }
  assert.ok(waitFor(() => processesIn(pids).length === 0, 5000), `no container process is left: ${processesIn(pids)}`);
  assert.equal(readFileSync('/proc/self/mountinfo', 'utf8').includes(bundle), false, 'no mount of the bundle is left on the host');
  assert.deepEqual(readdirSync(keel.root), [], 'the state root holds nothing');
}

test('10 parallel creates, then state, kill and delete racing on each: state is never corrupt and nothing is left', { skip }, async () => {
  const bundle = makeBundle(['sleep', '60']);
  const ids = Array.from({ length: 10 }, (_, i) => `par${i}`);
  const created = await Promise.all(ids.map((id) => keelAsync(['create', '--bundle', bundle, id])));
  for (const r of created) assert.equal(r.status, 0, `${r.args.join(' ')}: ${r.stderr}`);
  const pids: number[] = [];
  for (const id of ids) {
    const s = JSON.parse(keel(['state', id]).stdout);
    assert.equal(s.status, 'created');
    pids.push(s.pid);
  }
  assert.equal(new Set(pids).size, 10, 'ten different inits');

  // Start half of them, then race everything on every id.
  await Promise.all(ids.slice(0, 5).map((id) => keelAsync(['start', id])));
  const ops: Promise<Result>[] = [];
  for (const id of ids) {
    ops.push(keelAsync(['state', id]), keelAsync(['kill', id, 'KILL']), keelAsync(['state', id]), keelAsync(['delete', '--force', id]), keelAsync(['state', id]), keelAsync(['list', '--format', 'json']));
  }
  const results = await Promise.all(ops);
  for (const r of results) {
    assert.equal(r.signal, null, `${r.args.join(' ')} was killed by ${r.signal}`);
    if (r.args[0] === 'state') {
      if (r.status === 0) {
        const doc = JSON.parse(r.stdout);
        assert.equal(checkRuntimeState(doc).ok, true, `state output is a valid state: ${r.stdout}`);
        assert.ok(['created', 'running', 'stopped'].includes(doc.status), `status ${doc.status}`);
      } else {
        oneLineError(r);
        assert.match(r.stderr, /^container par\d does not exist$/m, r.stderr);
      }
    } else if (r.args[0] === 'list') {
      assert.equal(r.status, 0, r.stderr);
      for (const e of JSON.parse(r.stdout) ?? []) assert.ok(['created', 'running', 'stopped'].includes(e.status), `list entry ${JSON.stringify(e)}`);
    } else if (r.args[0] === 'delete') {
      assert.equal(r.status, 0, `${r.args.join(' ')}: ${r.stderr}`);
    } else if (r.status !== 0) {
      // kill lost the race to delete (or found the init dead already).
      oneLineError(r);
      assert.match(r.stderr, /does not exist|is not running/, r.stderr);
    }
  }
  assert.doesNotMatch(results.map((r) => r.stderr).join(''), /corrupt/i);
  assertNothingLeft(ids, bundle, pids);
});

test('parallel creates of one id: exactly one wins, the others fail cleanly and leave the winner intact', { skip }, async () => {
  const bundle = makeBundle(['sleep', '60']);
  const results = await Promise.all(Array.from({ length: 6 }, () => keelAsync(['create', '--bundle', bundle, 'same'])));
  const won = results.filter((r) => r.status === 0);
  assert.equal(won.length, 1, `one create succeeded: ${results.map((r) => r.stderr).join(' | ')}`);
  for (const r of results.filter((x) => x.status !== 0)) {
    oneLineError(r);
    assert.match(r.stderr, /container with id same already exists/);
  }
  const s = JSON.parse(keel(['state', 'same']).stdout);
  assert.equal(s.status, 'created', 'the winner is untouched');
  assert.equal(keel(['delete', 'same']).status, 0);
  assertNothingLeft(['same'], bundle, [s.pid]);
});

test('delete --force racing a create of the same id never kills the caller and leaves nothing after a final delete', { skip }, async () => {
  const bundle = makeBundle(['sleep', '60']);
  const pids: number[] = [];
  for (let i = 0; i < 5; i++) {
    const id = `race${i}`;
    const create = keelAsync(['create', '--bundle', bundle, id]);
    const deletes = [0, 10, 25, 50].map((ms) => new Promise<Result>((res) => setTimeout(() => res(keelAsync(['delete', '--force', id])), ms)));
    const [c, ...ds] = await Promise.all([create, ...deletes]);
    for (const d of ds) assert.equal(d.signal, null, `delete --force was not killed (${d.signal}): a signal to pid 0 hits the caller's group`);
    assert.equal(c.signal, null, `create was not killed: ${c.signal}`);
    if (c.status === 0) {
      const st = keel(['state', id]);
      if (st.status === 0) pids.push(JSON.parse(st.stdout).pid);
    } else {
      assert.equal(c.stderr.trim().split('\n').length, 1, `a create that lost says so in one line: ${c.stderr}`);
    }
    assert.equal((await keelAsync(['delete', '--force', id])).status, 0);
  }
  assertNothingLeft(['race0', 'race1', 'race2', 'race3', 'race4'], bundle, pids);
  rmSync(outDir, { recursive: true, force: true });
  void readlinkSync;
});

test('a lock left by a killed command (a dead owner, or an empty file from a taker killed before it wrote) does not block delete --force', { skip }, () => {
  const bundle = makeBundle(['sleep', '60']);
  for (const [id, content] of [['dead-owner', '999999 12345'], ['empty-lock', '']] as const) {
    assert.equal(keel(['create', '--bundle', bundle, id]).status, 0);
    const lock = join(keel.root, id, '.lock');
    writeFileSync(lock, content);
    const old = new Date(Date.now() - 10_000);
    utimesSync(lock, old, old);
    const pid = JSON.parse(keel(['state', id]).stdout).pid as number;
    const d = keel(['delete', '--force', id]);
    assert.equal(d.status, 0, d.stderr);
    assertNothingLeft([id], bundle, [pid]);
  }
});
