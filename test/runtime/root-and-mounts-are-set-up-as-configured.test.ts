// The container's root and mounts: root.readonly, --no-pivot, rootfsPropagation, bind and rbind
// options, tmpfs options, symlinks in the rootfs that point out of it, linux.devices, maskedPaths,
// readonlyPaths and the cgroup mount.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxPath, canRunContainers, skipReason, keelWithRoot, shBundle, spawnCaptured, tempDir, which, waitFor } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
const keel = keelWithRoot();
const runcRoot = tempDir('runc-root-');
const hostMounts: string[] = [];
after(() => {
  keel.cleanup();
  for (const m of hostMounts.reverse()) spawnCaptured('umount', ['-l', m]);
});

/** The lines of /proc/self/mountinfo inside as "mountpoint root opts optional... - fstype source superopts". */
function mounts(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!post) continue;
    const f = pre!.split(' ');
    if (f.length < 6 || !/^\d+$/.test(f[0]!)) continue;
    m.set(f[4]!, `${f[3]} ${f.slice(5).join(' ')} - ${post}`);
  }
  return m;
}

function run(id: string, bundle: string, args: string[] = []) {
  const r = keel(['run', ...args, '--bundle', bundle, id]);
  assert.equal(r.status, 0, `${id}: ${r.error ? `${r.error.message} ` : ''}${r.signal ? `killed by ${r.signal} ` : ''}${r.stderr}`);
  return r.stdout;
}

const CAP_SYS_ADMIN = (c: any) => {
  for (const set of ['bounding', 'effective', 'permitted']) c.process.capabilities[set].push('CAP_SYS_ADMIN');
};

test('root.readonly: / refuses writes; without it writes land in the bundle\'s rootfs', { skip }, () => {
  const ro = shBundle('touch /written 2>&1; echo rc=$?');
  assert.match(run('ro1', ro), /Read-only file system[\s\S]*rc=1/);
  assert.equal(existsSync(join(ro, 'rootfs/written')), false);
  const rw = shBundle('touch /written; echo rc=$?', (c) => { c.root.readonly = false; });
  assert.match(run('rw1', rw), /rc=0/);
  assert.equal(existsSync(join(rw, 'rootfs/written')), true, 'the write landed in the rootfs');
});

test('--no-pivot: the rootfs is moved to / and chrooted into; the process sees the same mounts', { skip }, () => {
  const b = shBundle('cat /marker; cat /proc/self/mountinfo');
  writeFileSync(join(b, 'rootfs/marker'), 'in the rootfs\n');
  const pivot = run('pivot1', b);
  const noPivot = run('nopivot1', b, ['--no-pivot']);
  assert.match(noPivot, /^in the rootfs$/m);
  assert.deepEqual([...mounts(noPivot).keys()].sort(), [...mounts(pivot).keys()].sort(), 'same mount points with and without pivot_root');
  if (which('runc')) {
    const r = spawnCaptured('runc', ['--root', runcRoot, 'run', '--no-pivot', '--bundle', b, 'nopivot1']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual([...mounts(noPivot).keys()].sort(), [...mounts(r.stdout).keys()].sort(), 'the mount points runc --no-pivot gives');
  }
});

test('rootfsPropagation shared + an rshared bind: a mount made inside shows on the host; rslave: host mounts show inside', { skip }, () => {
  const shared = tempDir('keel-prop-');
  spawnCaptured('mount', ['--bind', shared, shared]);
  hostMounts.push(shared);
  assert.equal(spawnCaptured('mount', ['--make-shared', shared]).status, 0);
  const inner = join(shared, 'inner');
  const hostSees = () => readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${inner} `);

  const out = (prop: string | undefined) => shBundle('mkdir -p /h/inner && mount -t tmpfs tmpfs /h/inner && grep " /h " /proc/self/mountinfo', (c) => {
    CAP_SYS_ADMIN(c);
    if (prop) c.linux.rootfsPropagation = prop;
    c.mounts.push({ destination: '/h', type: 'bind', source: shared, options: ['rbind', 'rshared'] });
  });
  const s = run('prop-shared', out('shared'));
  assert.match(s, / shared:\d+ /, 'the bind mount keeps its shared peer group');
  assert.equal(hostSees(), true, 'the container\'s mount propagated to the host');
  spawnCaptured('umount', [inner]);

  run('prop-default', out(undefined));
  assert.equal(hostSees(), false, 'by default the host\'s mounts are slaves in the container: nothing propagates out');

  const slave = shBundle('sleep 30', (c) => {
    c.mounts.push({ destination: '/h', type: 'bind', source: shared, options: ['rbind', 'rslave'] });
  });
  assert.equal(keel(['run', '-d', '--bundle', slave, 'prop-slave']).status, 0);
  const later = join(shared, 'later');
  mkdirSync(later, { recursive: true });
  spawnCaptured('mount', ['-t', 'tmpfs', 'tmpfs', later]);
  hostMounts.push(later);
  const pid = JSON.parse(keel(['state', 'prop-slave']).stdout).pid;
  assert.equal(waitFor(() => { try { return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').includes(' /h/later '); } catch { return false; } }, 3000), true, 'a host mount made after start shows inside an rslave bind');
  keel(['delete', '--force', 'prop-slave']);
});

test('rootfsPropagation private, slave and unbindable set / as asked', { skip }, () => {
  for (const [prop, re] of [['private', /^\S+ \S+ (?!.*(shared|master|unbindable))/], ['unbindable', / unbindable /]] as const) {
    const b = shBundle('awk \'$5 == "/"\' /proc/self/mountinfo', (c) => { c.linux.rootfsPropagation = prop; });
    assert.match(run(`prop-${prop}`, b), re, prop);
  }
  // runc 1.1 cannot make a container with rootfsPropagation unbindable at all (it binds the rootfs
  // from an unbindable /: EINVAL); keel makes / unbindable after pivot_root.
  const b = shBundle('true', (c) => { c.linux.rootfsPropagation = 'slave'; });
  run('prop-slave2', b);
});

test('bind and rbind: ro, nosuid, nodev, noexec apply; rbind brings submounts, bind does not', { skip }, () => {
  const src = tempDir('keel-bind-');
  mkdirSync(join(src, 'sub'));
  copyFileSync(busyboxPath!, join(src, 'busybox'));
  spawnCaptured('mount', ['-t', 'tmpfs', 'tmpfs', join(src, 'sub')]);
  hostMounts.push(join(src, 'sub'));
  writeFileSync(join(src, 'sub/in-submount'), 'x');
  const b = shBundle([
    'grep -E " /(ro|rb|plain)" /proc/self/mountinfo',
    'touch /ro/x 2>&1; echo touch-ro=$?',
    '/ro/busybox true 2>&1; echo exec-ro=$?',
    '/plain/busybox true; echo exec-plain=$?',
    'ls /rb/sub; echo ls-plain; ls /plain/sub',
  ].join('\n'), (c) => {
    c.mounts.push(
      { destination: '/ro', type: 'bind', source: src, options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'] },
      { destination: '/rb', type: 'bind', source: src, options: ['rbind', 'ro'] },
      { destination: '/plain', type: 'bind', source: src, options: ['bind'] },
    );
  });
  const out = run('bind1', b);
  const m = mounts(out);
  assert.match(m.get('/ro')!, /^\S+ ro,nosuid,nodev,noexec,/);
  assert.match(m.get('/rb')!, /^\S+ ro,/);
  assert.match(m.get('/rb/sub')!, / - tmpfs /, 'rbind brought the submount');
  assert.equal(m.has('/plain/sub'), false, 'bind did not');
  assert.match(out, /touch-ro=1/);
  assert.match(out, /exec-ro=126/, 'noexec: the binary cannot be run');
  assert.match(out, /exec-plain=0/);
  assert.match(out, /in-submount\nls-plain\n(?!in-submount)/);
  assert.equal(existsSync(join(src, 'x')), false);
});

test('tmpfs options: size, mode, uid, gid, nr_inodes and flags', { skip }, () => {
  const b = shBundle('grep " /scratch " /proc/self/mountinfo; stat -c "%a %u:%g" /scratch', (c) => {
    c.mounts.push({ destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'size=2m', 'mode=710', 'uid=12', 'gid=34', 'nr_inodes=100'] });
  });
  const out = run('tmpfs1', b);
  assert.match(mounts(out).get('/scratch')!, /^\/ rw,nosuid,nodev,noexec,\S* - tmpfs tmpfs rw,size=2048k,nr_inodes=100,mode=710,uid=12,gid=34$/);
  assert.match(out, /^710 12:34$/m);
});

test('a mount destination through a symlink that points out of the rootfs lands inside the rootfs', { skip }, () => {
  const marker = `keel-escape-${process.pid}`;
  const target = `/opt/${marker}-target`; // missing on the host, and must stay so
  const b = shBundle(`grep " /etc/${marker}" /proc/self/mountinfo; ls /etc/${marker}-file`, (c) => {
    c.mounts.push(
      { destination: `/evil/${marker}`, type: 'tmpfs', source: 'tmpfs' },
      { destination: `/evil/${marker}-file`, type: 'bind', source: '/etc/hostname', options: ['bind', 'ro'] },
      { destination: `/rel/${marker}-rel`, type: 'tmpfs', source: 'tmpfs' },
    );
    c.linux.devices = [{ path: `/evil/${marker}-dev`, type: 'c', major: 1, minor: 3 }];
  });
  symlinkSync('/etc', join(b, 'rootfs/evil'));
  symlinkSync(`../../../../../../../../../../..${target}`, join(b, 'rootfs/rel'));
  const out = run('escape1', b);
  for (const name of [marker, `${marker}-file`, `${marker}-dev`]) {
    assert.equal(existsSync(`/etc/${name}`), false, `nothing was made in the host's /etc (${name})`);
    assert.equal(existsSync(join(b, 'rootfs/etc', name)), true, `the mount point was made in the rootfs's /etc (${name})`);
  }
  assert.equal(existsSync(target), false, 'a relative symlink cannot climb out either');
  assert.equal(existsSync(join(b, 'rootfs', target, `${marker}-rel`)), true, 'it resolves inside the rootfs');
  assert.match(out, new RegExp(` /etc/${marker} `), 'inside, the tmpfs is at /etc/<name>');
  assert.match(out, new RegExp(`^/etc/${marker}-file$`, 'm'), 'and the bound file at /etc/<name>-file');
  assert.equal(lstatSync(join(b, 'rootfs/evil')).isSymbolicLink(), true, 'the symlink itself is untouched');
});

test('linux.devices: character, block and fifo nodes with their modes and owners, in subdirectories too', { skip }, () => {
  const b = shBundle('for f in /dev/fuse /dev/disk/loop9 /dev/myfifo /dev/null; do stat -c "%n %F %a %u:%g %t:%T" $f; done', (c) => {
    c.linux.devices = [
      { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o620, uid: 5, gid: 6 },
      { path: '/dev/disk/loop9', type: 'b', major: 7, minor: 9, fileMode: 0o600 },
      { path: '/dev/myfifo', type: 'p', fileMode: 0o644 },
    ];
  });
  const lines = run('dev1', b).trim().split('\n');
  assert.deepEqual(lines, [
    '/dev/fuse character special file 620 5:6 a:e5',
    '/dev/disk/loop9 block special file 600 0:0 7:9',
    '/dev/myfifo fifo 644 0:0 0:0',
    '/dev/null character special file 666 0:0 1:3',
  ]);
});

test('maskedPaths: a file reads as /dev/null, a directory as an empty read-only tmpfs, a missing path is skipped', { skip }, () => {
  const b = shBundle('wc -c < /proc/keys; ls -A /proc/acpi | wc -l; touch /proc/acpi/x 2>&1; cat /secret/file; ls -A /secret | wc -l; echo done', (c) => {
    c.linux.maskedPaths = ['/proc/keys', '/proc/acpi', '/does/not/exist', '/secret'];
  });
  mkdirSync(join(b, 'rootfs/secret'));
  writeFileSync(join(b, 'rootfs/secret/file'), 'password\n');
  const out = run('mask1', b);
  assert.doesNotMatch(out, /password/);
  const lines = out.trim().split('\n');
  assert.equal(lines[0]!.trim(), '0', '/proc/keys is empty');
  assert.equal(lines[1]!.trim(), '0', '/proc/acpi is empty');
  assert.match(lines[2]!, /Read-only file system/);
  assert.equal(lines.at(-2)!.trim(), '0', 'the masked directory of the rootfs is empty');
  assert.equal(lines.at(-1), 'done');
});

test('readonlyPaths: writes fail with EROFS, a missing path is skipped', { skip }, () => {
  const b = shBundle('echo x > /data/f 2>&1 || echo refused; (echo 1 > /proc/sys/kernel/domainname) 2>&1; echo done', (c) => {
    c.root.readonly = false;
    c.linux.readonlyPaths = ['/data', '/proc/sys', '/not/there'];
  });
  mkdirSync(join(b, 'rootfs/data'));
  const out = run('ro2', b);
  assert.match(out, /data\/f: Read-only file system|refused/);
  assert.match(out, /domainname: Read-only file system/);
  assert.match(out, /done/);
  assert.equal(existsSync(join(b, 'rootfs/data/f')), false);
});

test('a cgroup mount shows the container\'s own cgroups, read-only, where runc shows them', { skip }, () => {
  const b = shBundle('cat /proc/self/mountinfo; touch /sys/fs/cgroup/pids/x 2>&1; ls /sys/fs/cgroup/pids', (c) => {
    c.mounts.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] });
  });
  const out = run('cgmount', b);
  const m = mounts(out);
  const cg = [...m.entries()].filter(([mp]) => mp.startsWith('/sys/fs/cgroup/'));
  assert.notEqual(cg.length, 0, 'there are cgroup mounts');
  for (const [mp, line] of cg) {
    assert.match(line, /^\S+ ro,/, `${mp} is read-only`);
    if (/ - cgroup /.test(line)) assert.match(line, /^\/(\S+\/)?cgmount /, `${mp} shows the container's cgroup, not the host's root: ${line}`);
  }
  assert.match(out, /Read-only file system/);
  assert.doesNotMatch(out, /libpod_parent|system\.slice/, 'no host cgroups are listed');
  if (which('runc')) {
    const r = spawnCaptured('runc', ['--root', runcRoot, 'run', '--bundle', b, 'cgmount']);
    assert.equal(r.status, 0, r.stderr);
    const rm = mounts(r.stdout);
    for (const [mp, line] of rm) {
      if (!mp.startsWith('/sys/fs/cgroup/')) continue;
      assert.equal(m.get(mp), line, `${mp} as runc mounts it`);
    }
    // Two differences, both runc's: runc leaves the tmpfs at /sys/fs/cgroup writable although the
    // mount says ro (crun too), and on a hybrid host it does not mount the cgroup2 hierarchy at
    // /sys/fs/cgroup/unified; keel honours ro and mounts it (rooted at the container's cgroup).
    assert.match(rm.get('/sys/fs/cgroup')!, /^\/ rw,/);
    assert.match(m.get('/sys/fs/cgroup')!, /^\/ ro,/);
  }
});

test('rootfsPropagation rslave (as containerd writes it, outside the schema enum) is accepted as runc does', { skip }, () => {
  const b = shBundle("awk '$5 == \"/\"' /proc/self/mountinfo", (c) => { c.linux.rootfsPropagation = 'rslave'; });
  const r = keel(['run', '-b', b, 'rslave1']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, / \/ ro,/, 'the container ran and sees its read-only root');
  const bad = keel(['run', '-b', shBundle('true', (c) => { c.linux.rootfsPropagation = 'rsideways'; }), 'rslave2']);
  assert.equal(bad.status, 1, 'anything else stays refused by the schema');
});
