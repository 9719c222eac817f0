// The container's process: executable lookup in the container's PATH, env, cwd, user and groups,
// umask, hostname, domainname, rlimits, a terminal sent over --console-socket, --preserve-fds, and
// no other fd of the runtime leaking in.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canRunContainers, skipReason, keelWithRoot, keelBin, shBundle, argsBundle, tempDir, which, waitFor } from './helpers.js';
import { killAtExit, killChild } from '../fixtures/cleanup.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
after(() => keel.cleanup());

const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;

function run(id: string, bundle: string): string {
  const r = keel(['run', '--bundle', bundle, id]);
  assert.equal(r.status, 0, `${id}: ${r.error?.message ?? ''}${r.stderr}`);
  return r.stdout;
}

test('args[0] is looked up in the container\'s PATH, inside the rootfs', { skip }, () => {
  const b = argsBundle(['only-in-container', 'a b', '$HOME', '"q"'], (c) => { c.process.env = ['PATH=/opt/tools:/bin']; });
  mkdirSync(join(b, 'rootfs/opt/tools'), { recursive: true });
  const tool = join(b, 'rootfs/opt/tools/only-in-container');
  // A script whose interpreter is the container's sh: it prints its arguments one per line.
  writeFileSync(tool, '#!/bin/sh\nfor a in "$@"; do echo "[$a]"; done\n');
  chmodSync(tool, 0o755);
  assert.equal(run('path1', b), '[a b]\n[$HOME]\n["q"]\n', 'arguments arrive verbatim, unexpanded');

  // A directory earlier in PATH holding a non-executable file of that name is skipped.
  const b2 = argsBundle(['hello'], (c) => { c.process.env = ['PATH=/first:/second']; });
  mkdirSync(join(b2, 'rootfs/first')); mkdirSync(join(b2, 'rootfs/second'));
  writeFileSync(join(b2, 'rootfs/first/hello'), '#!/bin/sh\necho wrong\n');
  writeFileSync(join(b2, 'rootfs/second/hello'), '#!/bin/sh\necho right\n');
  chmodSync(join(b2, 'rootfs/second/hello'), 0o755);
  assert.equal(run('path2', b2), 'right\n');
});

test('env is exactly the config\'s, plus HOME from /etc/passwd', { skip }, () => {
  const b = argsBundle(['cat', '/proc/self/environ'], (c) => { c.process.env = ['PATH=/bin', 'A=1', 'WITH_EQ=x=y', 'EMPTY=', 'SPACES=a  b']; });
  assert.deepEqual(run('env1', b).split('\0').filter(Boolean), ['PATH=/bin', 'A=1', 'WITH_EQ=x=y', 'EMPTY=', 'SPACES=a  b', 'HOME=/root']);
});

test('cwd is entered, and made when missing', { skip }, () => {
  const b = argsBundle(['pwd'], (c) => { c.process.cwd = '/var/lib/app'; });
  assert.equal(run('cwd1', b), '/var/lib/app\n');
  assert.equal(statSync(join(b, 'rootfs/var/lib/app')).mode & 0o7777, 0o755);
});

test('user: uid, gid, additionalGids and umask', { skip }, () => {
  const b = shBundle('id; umask; touch /tmp/f; mkdir /tmp/d; stat -c "%a %u:%g" /tmp/f /tmp/d; grep -E "^(Uid|Gid|Groups):" /proc/self/status', (c) => {
    c.process.user = { uid: 1234, gid: 5678, additionalGids: [1, 2, 3000], umask: 0o077 };
  });
  const out = run('user1', b);
  assert.match(out, /^uid=1234 gid=5678 groups=1,2,3000$/m);
  assert.match(out, /^0077$/m);
  assert.match(out, /^600 1234:5678$/m, 'a new file gets the umask and the user');
  assert.match(out, /^700 1234:5678$/m);
  assert.match(out, /^Uid:\s+1234\s+1234\s+1234\s+1234$/m, 'real, effective, saved and fs uid');
  assert.match(out, /^Gid:\s+5678\s+5678\s+5678\s+5678$/m);
  assert.match(out, /^Groups:\s+1 2 3000\s*$/m);
});

test('hostname and domainname are set in the new uts namespace', { skip }, () => {
  const b = shBundle('hostname; cat /proc/sys/kernel/domainname', (c) => { c.hostname = 'box-1'; c.domainname = 'example.test'; });
  assert.equal(run('uts1', b), 'box-1\nexample.test\n');
  const host = readFileSync('/proc/sys/kernel/hostname', 'utf8').trim();
  assert.notEqual(host, 'box-1', 'the host keeps its name');
});

test('rlimits are set soft and hard', { skip }, () => {
  const b = argsBundle(['cat', '/proc/self/limits'], (c) => {
    c.process.rlimits = [
      { type: 'RLIMIT_NOFILE', soft: 123, hard: 456 },
      { type: 'RLIMIT_CORE', soft: 0, hard: 1048576 },
      { type: 'RLIMIT_STACK', soft: 1048576, hard: 2097152 },
      { type: 'RLIMIT_NPROC', soft: 50, hard: 60 },
    ];
  });
  const out = run('rlim1', b);
  assert.match(out, /^Max open files\s+123\s+456\s/m);
  assert.match(out, /^Max core file size\s+0\s+1048576\s/m);
  assert.match(out, /^Max stack size\s+1048576\s+2097152\s/m);
  assert.match(out, /^Max processes\s+50\s+60\s/m);
});

/** A --console-socket receiver (python3): takes the pty master and copies what it reads to `out`. */
const RECEIVER = `
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
msg, fds, _, _ = socket.recv_fds(c, 1024, 4)
data = b""
while True:
    try:
        chunk = os.read(fds[0], 4096)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
with open(out, "wb") as f:
    f.write(b"fds=%d\\n" % len(fds) + data)
`;

test('terminal: the pty master goes to --console-socket; the process has the pty as stdio and controlling terminal', { skip: skip || (!which('python3') && 'python3 not installed') }, async () => {
  const dir = tempDir('keel-console-');
  const sock = join(dir, 'console.sock');
  const out = join(dir, 'out');
  // Killed however the test ends: a receiver left waiting would keep the test process alive.
  const receiver = killAtExit(spawn('python3', ['-c', RECEIVER, sock, out], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const exited = new Promise<number | null>((res) => receiver.once('exit', res));
  try {
    const listening = await Promise.race([
      new Promise<boolean>((res) => receiver.stdout!.once('data', () => res(true))),
      exited.then(() => false),
    ]);
    assert.ok(listening, 'the console-socket receiver listens');
    const b = shBundle('tty; stty size; [ -t 0 ] && echo stdin-is-tty; echo ctty=$(cut -d" " -f7 /proc/$$/stat); echo done', (c) => {
      c.process.terminal = true;
      c.process.consoleSize = { height: 33, width: 111 };
    });
    const cr = keel(['create', '--console-socket', sock, '--bundle', b, 'tty1']);
    assert.equal(cr.status, 0, cr.stderr);
    assert.equal(keel(['start', 'tty1']).status, 0);
    assert.equal(await exited, 0, 'the receiver got the master and read to the end');
    const text = readFileSync(out, 'utf8').replace(/\r/g, '');
    assert.match(text, /^fds=1$/m, 'exactly one fd was sent');
    assert.match(text, /^\/dev\/pts\/0$/m, 'tty names the pty slave');
    assert.match(text, /^33 111$/m, 'consoleSize applied');
    assert.match(text, /^stdin-is-tty$/m);
    assert.match(text, /^ctty=(?!0$)\d+$/m, 'the pty is the controlling terminal (tty_nr of the shell is not 0)');
    assert.match(text, /^done$/m);
    assert.ok(waitFor(() => JSON.parse(keel(['state', 'tty1']).stdout).status === 'stopped'), 'the container stopped');
  } finally {
    killChild(receiver);
    keel(['delete', '--force', 'tty1']);
  }
});

test('terminal without --console-socket on create is refused with one line', { skip }, () => {
  const b = shBundle('true', (c) => { c.process.terminal = true; });
  const r = keel(['create', '--bundle', b, 'tty2']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /console-socket/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(keel(['list', '-q']).stdout.includes('tty2'), false, 'nothing is left behind');
});

test('--preserve-fds passes fds 3.. through; without it no runtime fd but stdio reaches the container', { skip }, () => {
  const dir = tempDir('keel-fds-');
  const extra = openSync(join(dir, 'extra'), 'w');
  const other = openSync(join(dir, 'other'), 'w');
  // The fds are read from the host once the shell has exec'd sleep: a listing from inside would
  // see the lister's own fds (busybox runs some applets inside the shell).
  const b = shBundle('echo through-fd3 >&3 2>/dev/null && echo wrote; exec sleep 20');
  const spawnKeel = (args: string[]) => {
    const outPath = join(dir, `out-${args.length}`);
    const o = openSync(outPath, 'w');
    let r = spawnSync(keelBin, ['--root', keel.root, ...args], { env, stdio: ['ignore', o, o, extra, other], timeout: 20_000 });
    for (let i = 0; i < 20 && r.error && waitFor(() => existsSync(keelBin), 2000); i++) {
      r = spawnSync(keelBin, ['--root', keel.root, ...args], { env, stdio: ['ignore', o, o, extra, other], timeout: 20_000 });
    }
    closeSync(o);
    return { status: r.status, out: () => readFileSync(outPath, 'utf8') + (r.error ? r.error.message : '') };
  };
  const fdsOf = (id: string) => {
    const pid = JSON.parse(keel(['state', id]).stdout).pid as number;
    assert.ok(waitFor(() => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep')), `${id} exec'd sleep`);
    return readdirSync(`/proc/${pid}/fd`).map(Number).sort((x, y) => x - y);
  };
  const with1 = spawnKeel(['run', '-d', '--preserve-fds', '1', '--bundle', b, 'fds1']);
  assert.equal(with1.status, 0, with1.out());
  assert.deepEqual(fdsOf('fds1'), [0, 1, 2, 3], 'fd 3 is passed, fd 4 is not');
  assert.ok(waitFor(() => /^wrote$/m.test(with1.out())), `the container wrote on fd 3: ${with1.out()}`);
  assert.equal(readFileSync(join(dir, 'extra'), 'utf8'), 'through-fd3\n', 'writes on fd 3 reach the runtime\'s fd 3');
  const with0 = spawnKeel(['run', '-d', '--bundle', b, 'fds0']);
  assert.equal(with0.status, 0, with0.out());
  assert.deepEqual(fdsOf('fds0'), [0, 1, 2], 'without --preserve-fds only stdio is open');
  keel(['delete', '--force', 'fds1']); keel(['delete', '--force', 'fds0']);
  closeSync(extra); closeSync(other);
});
