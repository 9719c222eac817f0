// The shim's command line as containerd writes it (Go's flag syntax), and its one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DELETE_RESPONSE_FILE, SOCKET_DIR, keelRoot, parseFlags } from '../../src/shim/flags.js';
import { SHIM } from './containerd-env.js';

test('flags: -name value, -name=value, --name, bools alone, the action after them', () => {
  const f = parseFlags(['-namespace', 'k8s.io', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'abc', '-debug', 'start']);
  assert.deepEqual([f.namespace, f.address, f.publishBinary, f.id, f.debug, f.action], ['k8s.io', '/run/containerd/containerd.sock', '/usr/bin/containerd', 'abc', true, 'start']);
  const g = parseFlags(['--namespace=default', '-id=x', '-bundle', '/b', '-debug=false', 'delete']);
  assert.deepEqual([g.namespace, g.id, g.bundle, g.debug, g.action], ['default', 'x', '/b', false, 'delete']);
  assert.equal(parseFlags(['-namespace', 'n']).action, '');
  assert.throws(() => parseFlags(['-nope', 'x']), /flag provided but not defined: -nope/);
  assert.throws(() => parseFlags(['-id']), /flag needs an argument: -id/);
});

test('containerd-shim-keel-v2: -v prints its version; a missing namespace or unknown action is one line, exit 1', { skip: !existsSync(SHIM) && 'dist/containerd-shim-keel-v2 not built' }, () => {
  const v = spawnSync(SHIM, ['-v'], { encoding: 'utf8' });
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^containerd-shim-keel-v2:\n  Version: +\S+/);
  const noNs = spawnSync(SHIM, ['-id', 'x', 'start'], { encoding: 'utf8' });
  assert.equal(noNs.status, 1);
  assert.equal(noNs.stderr, 'containerd-shim-keel-v2: shim namespace cannot be empty\n');
  const bad = spawnSync(SHIM, ['-namespace', 'n', 'frobnicate'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^containerd-shim-keel-v2: unknown action "frobnicate"[^\n]*\n$/);
});

// dist/containerd-shim-keel-v2 answers a pod's later `start` and a clean `delete` in the shell
// (src/shim/launcher.sh), and hands everything else to Node.js. A copy of it alone in a folder —
// without the Node.js launcher beside it — shows which is which: the shell's answers work there,
// and a case it hands on fails.
test('the shell front answers a pod\'s later start and a clean delete without Node.js, as main.ts would; anything else goes to Node.js', { skip: (!existsSync(SHIM) && 'dist/containerd-shim-keel-v2 not built') || (process.getuid?.() !== 0 && 'needs root (/run/containerd/s)') }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-shim-front-'));
  const server = createServer();
  const fake: ChildProcess[] = [];
  t.after(() => { server.close(); for (const p of fake) p.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });
  const alone = join(dir, 'bin', 'containerd-shim-keel-v2');
  mkdirSync(dirname(alone));
  copyFileSync(SHIM, alone);
  const ns = `front-${process.pid}`;
  const address = '/run/containerd/containerd.sock';
  const bundle = join(dir, 'bundle');
  mkdirSync(bundle);
  const shim = (args: string[], cwd = bundle) => spawnSync(alone, ['-namespace', ns, '-address', address, '-publish-binary', '/usr/bin/containerd', ...args], { cwd, encoding: 'utf8' });

  // A pod whose shim daemon runs: a listening socket where main.ts would put it, and a process
  // serving it (its command line names the daemon and the socket), recorded in the pid file.
  writeFileSync(join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', annotations: { 'io.kubernetes.cri.sandbox-id': 'pod1abc', other: 'x' } }));
  const sock = join(SOCKET_DIR, `keel-${createHash('sha256').update(join(address, ns, 'pod1abc')).digest('hex')}`);
  mkdirSync(SOCKET_DIR, { recursive: true });
  await new Promise<void>((r) => server.listen(sock, r));
  const daemon = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'containerd-shim-keel-v2-daemon', '-namespace', ns, '-socket', `unix://${sock}`], { stdio: 'ignore' });
  fake.push(daemon);
  await once(daemon, 'spawn');
  writeFileSync(`${sock}.pid`, String(daemon.pid));
  t.after(() => rmSync(`${sock}.pid`, { force: true }));
  const start = shim(['-id', 'c2', 'start']);
  assert.equal(start.status, 0, start.stderr);
  assert.equal(start.stdout, `unix://${sock}`);
  assert.equal(readFileSync(join(bundle, 'address'), 'utf8'), `unix://${sock}`);

  // Handed on (and failing here, with no Node.js launcher beside the copy): a pid file whose
  // process serves another socket, a container of no pod, a flag the shell does not know.
  writeFileSync(`${sock}.pid`, String(process.pid));
  assert.notEqual(shim(['-id', 'c2', 'start']).status, 0, 'a pid file of another process is not a live daemon');
  writeFileSync(`${sock}.pid`, String(daemon.pid));
  assert.notEqual(shim(['-id', 'c2', '-debug', 'start']).status, 0, '-debug goes to Node.js');
  writeFileSync(join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2' }));
  assert.notEqual(shim(['-id', 'c3', 'start']).status, 0, 'a container of no pod starts a daemon: Node.js');

  // delete after a task the shim deleted: the DeleteResponse it left in the bundle, byte for byte.
  const response = Buffer.from([0x08, 0x2a, 0x10, 0x03, 0x1a, 0x00]);
  writeFileSync(join(bundle, DELETE_RESPONSE_FILE), response);
  const del = spawnSync(alone, ['-namespace', ns, '-address', address, '-publish-binary', '/usr/bin/containerd', '-id', 'c2', '-bundle', bundle, 'delete']);
  assert.equal(del.status, 0, String(del.stderr));
  assert.deepEqual(del.stdout, response);
  // ...but a container keel still has (the shim died) is cleaned up by Node.js.
  mkdirSync(join(keelRoot(ns), 'c2'), { recursive: true });
  t.after(() => rmSync(keelRoot(ns), { recursive: true, force: true }));
  assert.notEqual(spawnSync(alone, ['-namespace', ns, '-id', 'c2', '-bundle', bundle, 'delete']).status, 0);
});
