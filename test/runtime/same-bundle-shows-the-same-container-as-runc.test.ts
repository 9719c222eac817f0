// Differential test: the same busybox bundle run by runc and by keel, with a probe script that
// prints what the container's process sees. Every difference is either fixed in keel or
// explained here as a runc quirk (and taken out of the comparison).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUNDLE_HOSTNAME, canRunContainers, skipReason, keelWithRoot, makeBundle, spawnCaptured, tempDir, which } from './helpers.js';

const skip = !canRunContainers ? skipReason : !which('runc') ? 'runc not installed' : false;
const keel = keelWithRoot();
const runcRoot = tempDir('runc-root-');
after(() => {
  keel.cleanup();
  spawnCaptured('runc', ['--root', runcRoot, 'list', '-q']).stdout.split('\n').filter(Boolean)
    .forEach((id) => spawnCaptured('runc', ['--root', runcRoot, 'delete', '--force', id]));
});

const MASKED = ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'];

/** What the process sees, one `== section` at a time (busybox sh). */
const PROBE = `
echo "== hostname"; hostname
echo "== id"; id
echo "== cwd"; pwd
echo "== umask"; umask
echo "== env"; env | sort
echo "== caps"; grep ^Cap /proc/self/status
echo "== limits"; cat /proc/self/limits
echo "== mountinfo"; cat /proc/self/mountinfo
echo "== ns"; for n in /proc/self/ns/*; do echo "$n $(readlink $n)"; done
echo "== fds"; ls /proc/$$/fd
echo "== masked"; for p in ${MASKED.join(' ')}; do if [ -e $p ]; then stat -c '%n %F %t:%T' $p; ls -A $p; fi; done
echo "== writes"; touch /newfile 2>&1; (echo x > /proc/sys/kernel/domainname) 2>&1; (echo x > /proc/sysrq-trigger) 2>&1; touch /tmp/newfile 2>&1 && echo tmp ok
echo "== dev"; for f in $(find /dev | sort); do stat -c '%n %F %a %u:%g %t:%T' $f; [ -L $f ] && readlink $f; done
echo "== end"
`;

type Sections = Record<string, string[]>;

function sections(out: string): Sections {
  const s: Sections = {};
  let cur = '';
  for (const line of out.split('\n')) {
    const m = /^== (\w+)$/.exec(line);
    if (m) { cur = m[1]!; s[cur] = []; continue; }
    if (cur && line !== '') s[cur]!.push(line);
  }
  return s;
}

const hostNs = (name: string) => { try { return readlinkSync(`/proc/self/ns/${name}`); } catch { return ''; } };

/**
 * Takes out what legitimately differs between two containers (ids, device numbers, inode numbers,
 * where stdio points) and what differs by a documented runc quirk.
 */
function normalise(s: Sections): Sections {
  const out: Sections = { ...s };
  // mountinfo: mount id, parent id and st_dev differ run to run; peer-group numbers too.
  // runc applies readonlyPaths before maskedPaths, keel (and crun) the other way round: the
  // resulting set of mounts is the same, so the comparison is of the sorted set.
  out.mountinfo = (s.mountinfo ?? []).map((line) => {
    const [pre, post] = line.split(' - ');
    const f = pre!.split(' ');
    const optional = f.slice(6).map((o) => o.replace(/:\d+$/, ''));
    return `${f[4]} root=${f[3]} opts=${f[5]} ${optional.join(' ')} - ${post}`;
  }).sort();
  // Namespaces: new (not the host's) or the host's; the inode numbers themselves differ.
  out.ns = (s.ns ?? []).map((line) => {
    const [path, link] = line.split(' ');
    const name = path!.split('/').pop()!;
    return `${name} ${link === hostNs(name) ? 'host' : 'new'}`;
  });
  return out;
}

function runBoth(bundle: string, id: string): { runc: Sections; keel: Sections; raw: { runc: string; keel: string } } {
  const r = spawnCaptured('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `${id}-runc`]);
  assert.equal(r.status, 0, `runc run: ${r.stderr}`);
  const k = keel(['run', '--bundle', bundle, `${id}-keel`]);
  assert.equal(k.status, 0, `keel run: ${k.stderr}`);
  assert.ok(k.stdout.includes('== end'), `the probe ran to the end under keel:\n${k.stdout}`);
  return { runc: normalise(sections(r.stdout)), keel: normalise(sections(k.stdout)), raw: { runc: r.stdout, keel: k.stdout } };
}

function probeBundle(edit?: (c: any, bundle: () => string) => void): string {
  let dir = '';
  dir = makeBundle(['true'], (c) => {
    c.process.args = ['sh', '-c', PROBE];
    edit?.(c, () => dir);
  });
  // runc chmods a tmpfs to the mode of the directory it covers, whatever its mode= option says
  // (rootfs_linux.go, "tmpfs" case); crun and keel honour mode=. With the mount point already
  // 1777 both give the same /tmp; the difference is checked on its own below.
  chmodSync(join(dir, 'rootfs/tmp'), 0o1777);
  return dir;
}

function compare(a: Sections, b: Sections): void {
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    assert.deepEqual(b[key], a[key], `section "${key}" differs between runc (expected) and keel (actual)`);
  }
}

test('the default busybox bundle: keel shows the process what runc shows it', { skip }, () => {
  const bundle = probeBundle();
  const { runc, keel: k } = runBoth(bundle, 'dflt');
  compare(runc, k);
  // And the absolute expectations, so a bug shared by both runtimes would show too.
  assert.deepEqual(k.hostname, [BUNDLE_HOSTNAME]);
  assert.deepEqual(k.id, ['uid=0(root) gid=0(root)'], 'root with no supplementary groups');
  assert.ok(k.env!.includes('HOME=/root'), 'HOME comes from /etc/passwd');
  assert.deepEqual(k.caps, ['CapInh:\t0000000000000000', 'CapPrm:\t0000000020000420', 'CapEff:\t0000000020000420', 'CapBnd:\t0000000020000420', 'CapAmb:\t0000000000000000']);
  assert.ok(k.limits!.some((l) => /^Max open files\s+1024\s+1024\s/.test(l)), 'k.limits!.some((l) => /^Max open files\\s+1024\\s+1024\\s/.test(l))');
  assert.deepEqual(k.ns!.filter((l) => l.endsWith(' new')).map((l) => l.split(' ')[0]).sort(), ['ipc', 'mnt', 'net', 'pid', 'pid_for_children', 'uts']);
  assert.deepEqual(k.fds, ['0', '1', '2'], 'no fd but stdio is open in the container');
  const root = k.mountinfo!.find((l) => l.startsWith('/ '))!;
  assert.match(root, /opts=ro,/, 'root.readonly: / is mounted read-only');
  assert.ok(k.writes!.some((l) => /\/newfile: Read-only file system/.test(l)), 'k.writes!.some((l) => /\\/newfile: Read-only file system/.test(l))');
  assert.ok(k.writes!.some((l) => /domainname/.test(l)), '/proc/sys is read-only');
  assert.ok(k.mountinfo!.some((l) => /^\/proc\/sys root=\/sys opts=ro,/.test(l)), 'k.mountinfo!.some((l) => /^\\/proc\\/sys root=\\/sys opts=ro,/.test(l))');
  assert.ok(k.mountinfo!.some((l) => /^\/proc\/acpi root=\/ opts=ro,.* - tmpfs /.test(l)), 'a masked directory is an empty read-only tmpfs');
  assert.ok(k.masked!.includes('/proc/keys character special file 1:3'), 'a masked file is /dev/null');
  const acpi = k.masked!.indexOf('/proc/acpi directory 0:0');
  assert.ok(acpi >= 0 && (k.masked![acpi + 1] ?? '/').startsWith('/'), '/proc/acpi is empty');
  for (const [name, mm] of [['null', '1:3'], ['zero', '1:5'], ['full', '1:7'], ['random', '1:8'], ['urandom', '1:9'], ['tty', '5:0']]) {
    assert.ok(k.dev!.includes(`/dev/${name} character special file 666 0:0 ${mm}`), `/dev/${name}`);
  }
});

test('a non-root user, groups, umask, cwd, env, rlimits, ambient caps, devices and bind mounts: same as runc', { skip }, () => {
  const shared = tempDir('keel-shared-');
  mkdirSync(join(shared, 'sub'));
  writeFileSync(join(shared, 'file'), 'hello\n');
  const bundle = probeBundle((c) => {
    c.process.user = { uid: 1000, gid: 1000, additionalGids: [10, 20], umask: 0o027 };
    c.process.cwd = '/tmp';
    c.process.env.push('FOO=bar baz', 'EMPTY=');
    c.process.rlimits.push({ type: 'RLIMIT_NPROC', soft: 100, hard: 200 }, { type: 'RLIMIT_CORE', soft: 0, hard: 0 }, { type: 'RLIMIT_MSGQUEUE', soft: 1000, hard: 2000 });
    c.process.capabilities.ambient = ['CAP_KILL'];
    c.process.capabilities.inheritable = ['CAP_KILL'];
    c.process.noNewPrivileges = false;
    c.linux.devices = [
      { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o600, uid: 0, gid: 0 },
      { path: '/dev/sub/loopx', type: 'b', major: 7, minor: 0, fileMode: 0o640, uid: 1000, gid: 1000 },
    ];
    c.linux.readonlyPaths.push('/tmp/missing', '/mnt/rw');
    c.mounts.push(
      { destination: '/mnt/ro', type: 'bind', source: shared, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] },
      { destination: '/mnt/rw', type: 'bind', source: join(shared, 'sub'), options: ['bind'] },
      { destination: '/mnt/file', type: 'bind', source: join(shared, 'file'), options: ['bind', 'ro'] },
      { destination: '/mnt/tmp', type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'mode=700', 'uid=1000', 'gid=1000', 'noexec'] },
    );
  });
  const { runc, keel: k } = runBoth(bundle, 'user');
  compare(runc, k);
  assert.deepEqual(k.id, ['uid=1000 gid=1000 groups=10,20']);
  assert.deepEqual(k.cwd, ['/tmp']);
  assert.deepEqual(k.umask, ['0027']);
  assert.ok(k.env!.includes('FOO=bar baz') && k.env!.includes('EMPTY=') && k.env!.includes('HOME=/'), 'k.env!.includes(\'FOO=bar baz\') && k.env!.includes(\'EMPTY=\') && k.env!.includes(\'HOME=/\')');
  assert.ok(k.caps!.includes('CapAmb:\t0000000000000020'), 'the ambient CAP_KILL survived the switch to uid 1000');
  assert.ok(k.limits!.some((l) => /^Max processes\s+100\s+200\s/.test(l)), 'k.limits!.some((l) => /^Max processes\\s+100\\s+200\\s/.test(l))');
  assert.ok(k.dev!.includes('/dev/sub/loopx block special file 640 1000:1000 7:0'), 'k.dev!.includes(\'/dev/sub/loopx block special file 640 1000:1000 7:0\')');
  assert.ok(k.dev!.includes('/dev/fuse character special file 600 0:0 a:e5'), 'k.dev!.includes(\'/dev/fuse character special file 600 0:0 a:e5\')');
  assert.ok(k.mountinfo!.some((l) => l.startsWith(`/mnt/ro root=${shared} opts=ro,nosuid,nodev,noexec,`)), 'k.mountinfo!.some((l) => l.startsWith(`/mnt/ro root=${shared} opts=ro,nosuid,nodev,noexec,`))');
  assert.ok(k.mountinfo!.some((l) => l.startsWith(`/mnt/rw root=${join(shared, 'sub')} opts=ro,`)), 'a readonlyPath on a bind mount');
  assert.ok(k.mountinfo!.some((l) => /^\/mnt\/tmp root=\/ opts=rw,noexec,.* - tmpfs tmpfs rw,size=1024k,mode=700,uid=1000,gid=1000/.test(l)), 'k.mountinfo!.some((l) => /^\\/mnt\\/tmp root=\\/ opts=rw,noexec,.* - tmpfs tmpfs rw,size=1024k,mode=700,uid=1000,gid=1000/.test(l))');
});

test('no rlimits in the config: the container gets the limits runc gives it, not Node\'s raised ones', { skip }, () => {
  const bundle = probeBundle((c) => { delete c.process.rlimits; c.process.env.push('HOME=/home/x'); });
  const { runc, keel: k } = runBoth(bundle, 'nolim');
  compare(runc, k);
  assert.ok(k.env!.includes('HOME=/home/x') && !k.env!.includes('HOME=/root'), 'a HOME in the config is kept');
});

test('runc quirk: a tmpfs takes the mode of the directory it covers; keel honours mode= as crun does', { skip }, () => {
  const bundle = makeBundle(['sh', '-c', 'stat -c %a /tmp']);
  chmodSync(join(bundle, 'rootfs/tmp'), 0o755); // the fixture's /tmp, with mode=1777 in the mount options
  const k = keel(['run', '--bundle', bundle, 'tmpmode']);
  assert.equal(k.stdout.trim(), '1777');
  const r = spawnCaptured('runc', ['--root', runcRoot, 'run', '--bundle', bundle, 'tmpmode']);
  assert.equal(r.stdout.trim(), '755', 'runc 1.1 chmods the tmpfs to the mount point\'s mode (if this changes, runc dropped the quirk)');
});
