// CVE-2019-5736 class: a container must never get hold of the runtime's own executable (node).
//
// keel runs from a copy of node placed in a temporary folder; the container's rootfs has a script
// `#!/proc/self/exe` and, as its dynamic loader, an attacker's program (fixtures/escape-probe.c):
// were the kernel ever to run node inside the container, the probe would keep an fd of it and
// append a marker once keel has exited. Through every path into a container (exec, run,
// create + start, hooks in the container's namespaces, an init joining a pid namespace) the script
// must fail with ENOEXEC and the copy of node must keep its checksum. Also: a not-yet-exec'd
// container process shows "keel init", not the host's command line, environment or binary; and a
// `keel create` killed at any instant leaves no process behind once `delete --force` ran.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { canRunContainers, skipReason, makeBundle, repo, spawnCaptured, tempDir, sleepMs, waitFor, which } from './helpers.js';
import { libc } from '../../src/runtime/sys/libc.js';

const skip = !canRunContainers ? skipReason : !which('gcc') ? 'gcc not installed (it builds the attacker\'s stand-in for ld.so)' : false;
const dirs: string[] = [];
let work = '', nodeCopy = '', launcher = '', root = '', probe = '', checksum = '';

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** keel through the copy of node, with its own --root. */
function keel(args: string[], opts: { timeout?: number } = {}) {
  return spawnCaptured(launcher, ['--root', root, ...args], { timeout: opts.timeout ?? 30_000 });
}

/** The ELF interpreter a dynamically linked program names (PT_INTERP). */
function interpreterOf(file: string): string {
  const b = readFileSync(file);
  const phoff = Number(b.readBigUInt64LE(0x20)), phentsize = b.readUInt16LE(0x36), phnum = b.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (b.readUInt32LE(ph) !== 3 /* PT_INTERP */) continue;
    const off = Number(b.readBigUInt64LE(ph + 8)), size = Number(b.readBigUInt64LE(ph + 32));
    return b.subarray(off, off + size - 1).toString();
  }
  throw new Error(`${file} names no interpreter`);
}

/** A busybox bundle whose rootfs holds the probe as node's interpreter and /x, a `#!/proc/self/exe` script. */
function attackBundle(args: string[], edit?: (config: any) => void): string {
  const bundle = makeBundle(args, edit);
  dirs.push(join(bundle, '..'));
  const ld = join(bundle, 'rootfs', interpreterOf(nodeCopy));
  mkdirSync(join(ld, '..'), { recursive: true });
  copyFileSync(probe, ld);
  chmodSync(ld, 0o755);
  writeFileSync(join(bundle, 'rootfs/x'), '#!/proc/self/exe\n', { mode: 0o755 });
  return bundle;
}

function assertNodeUntouched(outputs: string[]): void {
  // The probe's shell retries for 10 s once started: give a write the time it would need.
  sleepMs(1500);
  for (const o of outputs) assert.doesNotMatch(o, /keel-escape-probe/, 'the kernel never ran node in the container');
  assert.equal(sha256(nodeCopy), checksum, 'the copy of node keel ran from is unchanged');
}

const enoexec = /exec \/x: ENOEXEC: Exec format error$/;

before(() => {
  if (skip) return;
  work = tempDir('keel-escape-');
  dirs.push(work);
  root = join(work, 'root');
  nodeCopy = join(work, 'node');
  copyFileSync(process.execPath, nodeCopy);
  chmodSync(nodeCopy, 0o755);
  checksum = sha256(nodeCopy);
  // The launcher runs dist/keel.js as dist/keel does, with the copy of node as its interpreter.
  const file = join(repo, 'dist/keel.js');
  launcher = join(work, 'keel');
  writeFileSync(launcher, [
    `#!${nodeCopy}`,
    `const file = ${JSON.stringify(file)};`,
    `const src = require('node:fs').readFileSync(file, 'utf8');`,
    `const fn = new (require('node:vm').Script)('(function (exports, require, module, __filename, __dirname) {' + src + '\\n})', { filename: file }).runInThisContext();`,
    `fn(module.exports, require('node:module').createRequire(file), module, file, ${JSON.stringify(join(repo, 'dist'))});`,
  ].join('\n') + '\n', { mode: 0o755 });
  probe = join(work, 'probe');
  const cc = spawnSync('gcc', ['-nostdlib', '-static-pie', '-fPIE', '-O2', '-fno-stack-protector', '-mstackrealign', '-o', probe, join(repo, 'test/runtime/fixtures/escape-probe.c')], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
});

after(() => {
  if (root && existsSync(root)) {
    for (const id of keel(['list', '-q']).stdout.split('\n').filter(Boolean)) keel(['delete', '--force', id]);
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('exec of a #!/proc/self/exe script fails with ENOEXEC and leaves node unchanged (foreground, detached, with and without a pid namespace)', { skip }, () => {
  const outputs: string[] = [];
  const bundle = attackBundle(['sleep', '60']);
  assert.equal(keel(['run', '-d', '-b', bundle, 'esc-exec']).status, 0);
  for (const args of [['exec', 'esc-exec', '/x'], ['exec', '-d', 'esc-exec', '/x']]) {
    const r = keel(args);
    outputs.push(r.stdout, r.stderr);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr.trim(), enoexec);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  }
  // The container still works: exec of a real program.
  assert.equal(keel(['exec', 'esc-exec', 'true']).status, 0);
  const hostPid = attackBundle(['sleep', '60'], (c) => { c.linux.namespaces = c.linux.namespaces.filter((n: any) => n.type !== 'pid'); });
  assert.equal(keel(['run', '-d', '-b', hostPid, 'esc-exec-hostpid']).status, 0);
  const r = keel(['exec', 'esc-exec-hostpid', '/x']);
  outputs.push(r.stdout, r.stderr);
  assert.match(r.stderr.trim(), enoexec);
  assertNodeUntouched(outputs);
});

test('run, and create + start, of a #!/proc/self/exe script fail with ENOEXEC and leave node unchanged', { skip }, () => {
  const outputs: string[] = [];
  const bundle = attackBundle(['/x']);
  const r = keel(['run', '-b', bundle, 'esc-run']);
  outputs.push(r.stdout, r.stderr);
  assert.equal(r.status, 1);
  assert.match(r.stderr.trim(), /^run esc-run: exec \/x: ENOEXEC: Exec format error$/);
  assert.equal(keel(['list', '-q']).stdout.includes('esc-run'), false, 'the failed run is deleted');
  const c = keel(['create', '-b', bundle, 'esc-start']);
  outputs.push(c.stdout, c.stderr);
  assert.equal(c.status, 0, c.stderr);
  const s = keel(['start', 'esc-start']);
  outputs.push(s.stdout, s.stderr);
  assert.equal(s.status, 0, s.stderr);
  assert.ok(waitFor(() => JSON.parse(keel(['state', 'esc-start']).stdout).status === 'stopped'), 'the init exits when its execve fails');
  assert.equal(keel(['delete', 'esc-start']).status, 0);
  assertNodeUntouched(outputs);
});

test('an init that joins a pid namespace forks into it, and a #!/proc/self/exe script there fails with ENOEXEC', { skip }, () => {
  const outputs: string[] = [];
  const host = attackBundle(['sleep', '60']);
  assert.equal(keel(['run', '-d', '-b', host, 'esc-pidns']).status, 0);
  const hostPid = JSON.parse(keel(['state', 'esc-pidns']).stdout).pid;
  const nsPath = `/proc/${hostPid}/ns/pid`;
  const joined = attackBundle(['sleep', '60'], (c) => { c.linux.namespaces = c.linux.namespaces.map((n: any) => (n.type === 'pid' ? { type: 'pid', path: nsPath } : n)); });
  assert.equal(keel(['create', '-b', joined, 'esc-pidns-2']).status, 0);
  const pid = JSON.parse(keel(['state', 'esc-pidns-2']).stdout).pid;
  assert.equal(readlinkSync(`/proc/${pid}/ns/pid`), readlinkSync(nsPath), 'the init recorded in the state is in the joined pid namespace');
  assert.equal(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^PPid:\s+(\d+)/m)![1] !== '0', true);
  assert.equal(keel(['start', 'esc-pidns-2']).status, 0);
  const ps = keel(['exec', 'esc-pidns', 'ps', '-o', 'pid,args']).stdout;
  assert.match(ps, /sleep 60[\s\S]*sleep 60/, `both inits run in one pid namespace: ${ps}`);
  const run = attackBundle(['/x'], (c) => { c.linux.namespaces = c.linux.namespaces.map((n: any) => (n.type === 'pid' ? { type: 'pid', path: nsPath } : n)); });
  const r = keel(['run', '-b', run, 'esc-pidns-3']);
  outputs.push(r.stdout, r.stderr);
  assert.match(r.stderr.trim(), /^run esc-pidns-3: exec \/x: ENOEXEC: Exec format error$/);
  assertNodeUntouched(outputs);
});

test('createContainer and startContainer hooks that are #!/proc/self/exe scripts fail with ENOEXEC and leave node unchanged', { skip }, () => {
  const outputs: string[] = [];
  for (const kind of ['createContainer', 'startContainer']) {
    // createContainer hooks run before pivot_root (as runc's): their path is seen from the host's root.
    const bundle = attackBundle(['sleep', '60'], (c) => { c.hooks = { [kind]: [{ path: '/x' }] }; });
    const path = kind === 'createContainer' ? join(bundle, 'rootfs/x') : '/x';
    const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    config.hooks[kind][0].path = path;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
    const id = `esc-${kind}`;
    const r = keel(['run', '-d', '-b', bundle, id]);
    outputs.push(r.stdout, r.stderr);
    assert.equal(r.status, 1, `${kind}: ${r.stderr}`);
    assert.equal(r.stderr, `${kind} hook #0 (${path}) could not run: exec ${path}: ENOEXEC: Exec format error\n`);
  }
  assertNodeUntouched(outputs);
});

test('a created container\'s init shows "keel init", an empty environment and a sealed empty exe, not the host\'s', { skip }, () => {
  const bundle = attackBundle(['sleep', '60']);
  assert.equal(keel(['create', '-b', bundle, 'esc-created']).status, 0);
  const pid = JSON.parse(keel(['state', 'esc-created']).stdout).pid;
  assert.equal(readFileSync(`/proc/${pid}/cmdline`, 'utf8'), 'keel init\0');
  assert.equal(readFileSync(`/proc/${pid}/comm`, 'utf8'), 'keel init\n');
  assert.equal(readFileSync(`/proc/${pid}/environ`, 'utf8'), '');
  assert.match(readlinkSync(`/proc/${pid}/exe`), /^\/memfd:keel init \(deleted\)$/);
  assert.doesNotMatch(readFileSync(`/proc/${pid}/maps`, 'utf8'), new RegExp(nodeCopy.replaceAll('/', '\\/')), 'no mapping of node is left');
  // Its exe cannot be written through /proc, even by host root: the memfd is sealed.
  assert.throws(() => writeFileSync(`/proc/${pid}/exe`, 'x'), /EPERM|ETXTBSY|EACCES/);
  assert.equal(Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1]), 0);
  assert.equal(keel(['start', 'esc-created']).status, 0);
  // Once started, the container's process is its own program.
  assert.equal(keel(['exec', 'esc-created', 'cat', '/proc/1/cmdline']).stdout, 'sleep\x0060\x00');
  assert.equal(keel(['delete', '--force', 'esc-created']).status, 0);
});

test('a create killed at any instant leaves no process once delete --force has run', { skip }, async () => {
  // Orphans of the killed runtime come to this process (a subreaper) rather than to pid 1, where
  // they can be counted: alive ones are leftovers, dead ones show the kill hit a live child.
  const c = libc();
  const PR_SET_CHILD_SUBREAPER = 36;
  assert.equal(Number(c.syscall(157 /* prctl */, 'long', PR_SET_CHILD_SUBREAPER, 'long', 1, 'long', 0, 'long', 0, 'long', 0)), 0);
  const bundle = attackBundle(['sleep', '60']);
  const children = () => readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map((n) => {
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return { pid: Number(n), state: f[0]!, ppid: Number(f[1]) };
    } catch { return undefined; }
  }).filter((p): p is { pid: number; state: string; ppid: number } => !!p && p.ppid === process.pid);
  const before = new Set(children().map((p) => p.pid)); // tsx's esbuild service, for one
  let orphansSeen = 0;
  const leftovers: string[] = [];
  // The sweep spans a whole create on this machine, however loaded: timed first.
  let span = 0;
  for (const id of ['esc-kill-time-1', 'esc-kill-time-2']) {
    const t0 = Date.now();
    assert.equal(keel(['create', '-b', bundle, id]).status, 0);
    span = Math.max(span, Date.now() - t0);
    keel(['delete', '--force', id]);
  }
  // A sweep across the whole create, then kills aimed at the first milliseconds after the
  // container process appears (a child of the create), where the runtime has not recorded it yet.
  const steps = 30, aimed = 20;
  const childOf = (pid: number) => { try { return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim(); } catch { return ''; } };
  for (let i = 0; i <= steps + aimed; i++) {
    const id = `esc-kill-${i}`;
    const proc = spawn(launcher, ['--root', root, 'create', '-b', bundle, id], { stdio: 'ignore', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    const exited = new Promise((res) => proc.once('exit', res));
    if (i <= steps) {
      await new Promise((res) => setTimeout(res, Math.round((i * span * 1.1) / steps)));
    } else {
      const end = Date.now() + 10_000;
      while (!childOf(proc.pid!) && proc.exitCode === null && Date.now() < end) sleepMs(0.05);
      sleepMs(((i - steps) % 10) * 0.3);
    }
    proc.kill('SIGKILL');
    await exited;
    const d = keel(['delete', '--force', id]);
    assert.equal(d.status, 0, d.stderr);
    waitFor(() => children().every((p) => before.has(p.pid) || p.state === 'Z'), 2000);
    for (const p of children().filter((x) => !before.has(x.pid))) {
      if (p.state === 'Z') { c.waitpid(p.pid, new Int32Array(1), 1); orphansSeen++; continue; }
      leftovers.push(`${id} (${i <= steps ? 'sweep' : 'aimed'}): pid ${p.pid} ${readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`);
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
  assert.deepEqual(keel(['list', '-q']).stdout.split('\n').filter((id) => id.startsWith('esc-kill-')), [], 'every killed create is deleted');
  assert.deepEqual(leftovers, [], 'no process of a killed create outlives delete --force');
  assert.ok(orphansSeen > 0, 'some kills hit a create whose container process existed');
});
