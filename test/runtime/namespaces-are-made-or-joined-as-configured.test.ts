// Namespaces: each type listed without a path is new, each type not listed is the host's, a path
// joins that namespace (of another container here), user namespaces map ids, time namespaces
// take offsets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { BUNDLE_HOSTNAME, canRunContainers, skipReason, keelWithRoot, makeBundle, argsBundle, tempDir, waitFor, which, spawnCaptured } from './helpers.js';

const skip = canRunContainers ? false : skipReason;
/** Time namespaces (Linux 5.6) are there when a process can be made in one. */
const timeNs = skip ? undefined : spawnCaptured('unshare', ['--time', 'true']);
const skipTime = skip || (timeNs!.status !== 0 && `no time namespaces here (unshare --time: ${timeNs!.error?.message ?? timeNs!.stderr.trim()})`);
const keel = keelWithRoot();
after(() => keel.cleanup());

const ALL = ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup', 'user', 'time'];
const FILE: Record<string, string> = { pid: 'pid', network: 'net', ipc: 'ipc', uts: 'uts', mount: 'mnt', cgroup: 'cgroup', user: 'user', time: 'time' };
const hostNs = (file: string) => readlinkSync(`/proc/self/ns/${file}`);

const NS_PROBE = 'for n in cgroup ipc mnt net pid time user uts; do echo "ns $n $(readlink /proc/self/ns/$n)"; done';

function nsOf(out: string): Record<string, string> {
  const m: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const f = line.split(' ');
    if (f[0] === 'ns' && f[1] && f[2]) m[f[1]] = f[2];
  }
  return m;
}

/** A world-traversable bundle (a user namespace's root must reach its rootfs). */
function openBundle(args: string[], edit: (c: any) => void): string {
  const b = argsBundle(args, edit);
  chmodSync(dirname(b), 0o755);
  return b;
}

const USERNS = (c: any) => {
  c.linux.uidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
  c.linux.gidMappings = [{ containerID: 0, hostID: 100000, size: 65536 }];
};

test('every namespace type listed is new and every type not listed is the host\'s', { skip }, () => {
  for (const listed of [['pid', 'network', 'ipc', 'uts', 'mount'], ALL, ['mount']]) {
    const b = openBundle(['sh', '-c', `${NS_PROBE}; echo "pid $$"; echo "host $(hostname)"; cat /proc/net/dev`], (c) => {
      c.linux.namespaces = listed.map((type) => ({ type }));
      if (listed.includes('user')) USERNS(c);
      if (!listed.includes('uts')) delete c.hostname;
      if (!listed.includes('network')) c.mounts = c.mounts.filter((m: any) => m.type !== 'sysfs');
    });
    const r = keel(['run', '-b', b, `ns-${listed.length}`]);
    assert.equal(r.status, 0, r.stderr);
    const ns = nsOf(r.stdout);
    for (const type of ALL) {
      const file = FILE[type]!;
      if (listed.includes(type)) assert.notEqual(ns[file], hostNs(file), `${type} is a new namespace (listed: ${listed})`);
      else assert.equal(ns[file], hostNs(file), `${type} is the host's namespace (listed: ${listed})`);
    }
    if (listed.includes('pid')) assert.match(r.stdout, /^pid 1$/m, 'the process is pid 1 of its pid namespace');
    if (listed.includes('uts')) assert.match(r.stdout, new RegExp(`^host ${BUNDLE_HOSTNAME}$`, 'm'));
    if (listed.includes('network')) {
      const ifaces = r.stdout.split('\n').filter((l) => /^\s*\w+:/.test(l) && !/Inter-|face/.test(l)).map((l) => l.trim().split(':')[0]);
      assert.deepEqual(ifaces, ['lo'], 'a new network namespace has only lo');
    }
  }
});

test('a new cgroup namespace is rooted at the container\'s cgroup', { skip }, () => {
  const b = argsBundle(['sh', '-c', 'cat /proc/self/cgroup; sleep 30'], (c) => { c.linux.namespaces.push({ type: 'cgroup' }); });
  assert.equal(keel(['run', '-d', '-b', b, 'cgns']).status, 0);
  const pid = JSON.parse(keel(['state', 'cgns']).stdout).pid;
  const host = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  assert.match(host, /^\d+:pids:\/.+/m, 'seen from the host, the container is in a cgroup of its own');
  keel(['delete', '--force', 'cgns']);
  const r = keel(['run', '-b', makeBundle(['cat', '/proc/self/cgroup'], (c) => { c.linux.namespaces.push({ type: 'cgroup' }); }), 'cgns2']);
  assert.equal(r.status, 0, r.stderr);
  for (const line of r.stdout.trim().split('\n')) assert.match(line, /^\d+:[^:]*:\/$/, `inside, every hierarchy is rooted at / (${line})`);
});

test('a user namespace maps container root to host uid 100000', { skip }, () => {
  const shared = tempDir('keel-userns-');
  chmodSync(shared, 0o777);
  const b = openBundle(['sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c "%u:%g" /bin/busybox; touch /shared/made-inside; mkdir /shared/dir'], (c) => {
    c.linux.namespaces.push({ type: 'user' });
    USERNS(c);
    c.mounts.push({ destination: '/shared', type: 'bind', source: shared, options: ['rbind', 'rw'] });
  });
  // The rootfs belongs to host root, unmapped: container root cannot make the mount point (runc neither).
  mkdirSync(join(b, 'rootfs/shared'));
  const r = keel(['run', '-b', b, 'userns1']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
  assert.deepEqual(lines.slice(0, 2), ['0 100000 65536', '0 100000 65536'], 'uid_map and gid_map inside');
  assert.equal(lines[2], '0', 'the process is root inside');
  assert.equal(lines[3], '65534:65534', 'files of host root (unmapped) show as the overflow id');
  const st = statSync(join(shared, 'made-inside'));
  assert.deepEqual([st.uid, st.gid], [100000, 100000], 'a file made by container root belongs to host uid 100000');
  assert.equal(statSync(join(shared, 'dir')).uid, 100000);
});

test('a user namespace needs uidMappings and gidMappings', { skip }, () => {
  const b = makeBundle(['true'], (c) => { c.linux.namespaces.push({ type: 'user' }); });
  const r = keel(['run', '-b', b, 'userns2']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /uidMappings/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.equal(keel(['list', '-q']).stdout.includes('userns2'), false);
});

test('a time namespace takes linux.timeOffsets', { skip: skipTime }, () => {
  const b = argsBundle(['sh', '-c', 'cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime'], (c) => {
    c.linux.namespaces.push({ type: 'time' });
    c.linux.timeOffsets = { monotonic: { secs: 86400, nanosecs: 0 }, boottime: { secs: 7 * 86400, nanosecs: 0 } };
  });
  const r = keel(['run', '-b', b, 'timens1']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => l.trim().split(/\s+/).join(' '));
  assert.deepEqual(lines.slice(0, 2).sort(), ['boottime 604800 0', 'monotonic 86400 0']);
  const hostUptime = Number(readFileSync('/proc/uptime', 'utf8').split('.')[0]);
  assert.ok(Number(lines[2]) >= hostUptime + 7 * 86400 - 5, `uptime inside (${lines[2]}) is a week ahead of the host's (${hostUptime})`);
});

test('time offsets apply in a user namespace too', { skip: skipTime }, () => {
  const b = openBundle(['cat', '/proc/self/timens_offsets'], (c) => {
    c.linux.namespaces.push({ type: 'time' }, { type: 'user' });
    USERNS(c);
    c.linux.timeOffsets = { monotonic: { secs: -5, nanosecs: 500 } };
  });
  const r = keel(['run', '-b', b, 'timens3']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^monotonic\s+-5\s+500$/m);
});

test('timeOffsets without a new time namespace are refused', { skip }, () => {
  const b = makeBundle(['true'], (c) => { c.linux.timeOffsets = { monotonic: { secs: 1 } }; });
  const r = keel(['run', '-b', b, 'timens2']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /timeOffsets/);
});

test('namespaces given by path are joined: network, ipc, uts, time and pid of another container', { skip: skipTime }, () => {
  const a = makeBundle(['sleep', '60'], (c) => { c.linux.namespaces.push({ type: 'time' }); });
  assert.equal(keel(['run', '-d', '-b', a, 'host-a']).status, 0);
  const apid = JSON.parse(keel(['state', 'host-a']).stdout).pid as number;
  const aNs = (file: string) => readlinkSync(`/proc/${apid}/ns/${file}`);
  for (const type of ['network', 'ipc', 'uts', 'time', 'pid']) {
    const b = argsBundle(['sh', '-c', `${NS_PROBE}; echo "pid $$"; ps -o pid,args`], (c) => {
      c.linux.namespaces = c.linux.namespaces.filter((n: any) => n.type !== type);
      c.linux.namespaces.push({ type, path: `/proc/${apid}/ns/${FILE[type]}` });
      if (type === 'uts') delete c.hostname;
    });
    const r = keel(['run', '-b', b, `join-${type}`]);
    assert.equal(r.status, 0, `${type}: ${r.stderr}`);
    const ns = nsOf(r.stdout);
    assert.equal(ns[FILE[type]!], aNs(FILE[type]!), `the ${type} namespace is the other container's`);
    for (const other of ['network', 'ipc', 'uts', 'pid'].filter((t) => t !== type)) {
      assert.notEqual(ns[FILE[other]!], aNs(FILE[other]!), `the ${other} namespace is still a new one`);
    }
    if (type === 'pid') {
      assert.doesNotMatch(r.stdout, /^pid 1$/m, 'the process is not the init of the joined pid namespace');
      assert.match(r.stdout, /^\s*1 sleep 60$/m, 'it sees the other container\'s init as pid 1');
    }
  }
  assert.equal(JSON.parse(keel(['state', 'host-a']).stdout).status, 'running', 'the joined container is unharmed');
  assert.equal(keel(['delete', '--force', 'host-a']).status, 0);
});

test('a container in another container\'s pid namespace is created, started, killed and deleted on its own', { skip }, () => {
  const a = makeBundle(['sleep', '60']);
  assert.equal(keel(['run', '-d', '-b', a, 'pidhost']).status, 0);
  const apid = JSON.parse(keel(['state', 'pidhost']).stdout).pid as number;
  const b = makeBundle(['sleep', '61'], (c) => {
    c.linux.namespaces = c.linux.namespaces.filter((n: any) => n.type !== 'pid');
    c.linux.namespaces.push({ type: 'pid', path: `/proc/${apid}/ns/pid` });
  });
  const cr = keel(['create', '-b', b, 'pidguest']);
  assert.equal(cr.status, 0, cr.stderr);
  const bpid = JSON.parse(keel(['state', 'pidguest']).stdout).pid as number;
  assert.equal(readlinkSync(`/proc/${bpid}/ns/pid`), readlinkSync(`/proc/${apid}/ns/pid`));
  assert.equal(keel(['start', 'pidguest']).status, 0);
  assert.equal(keel(['kill', 'pidguest', 'KILL']).status, 0);
  assert.ok(waitFor(() => JSON.parse(keel(['state', 'pidguest']).stdout).status === 'stopped'), 'waitFor(() => JSON.parse(keel([\'state\', \'pidguest\']).stdout).status === \'stopped\')');
  assert.equal(keel(['delete', 'pidguest']).status, 0);
  assert.equal(JSON.parse(keel(['state', 'pidhost']).stdout).status, 'running', 'the host container survives its guest');
  keel(['delete', '--force', 'pidhost']);
});

test('library use: a container in another pid namespace; the runtime\'s own children are born in its own again; inits are reaped', { skip }, async () => {
  const { create, run, remove } = await import('../../src/runtime/index.js');
  const ctx = { root: keel.root };
  const a = makeBundle(['sleep', '60']);
  await run(ctx, 'lib-host', { bundle: a, detach: true, stdio: [0, 1, 2] });
  const apid = JSON.parse(keel(['state', 'lib-host']).stdout).pid as number;
  const b = makeBundle(['sleep', '61'], (c) => {
    c.linux.namespaces = c.linux.namespaces.filter((n: any) => n.type !== 'pid');
    c.linux.namespaces.push({ type: 'pid', path: `/proc/${apid}/ns/pid` });
  });
  await create(ctx, 'lib-guest', { bundle: b, stdio: [0, 1, 2] });
  assert.equal(readlinkSync('/proc/self/ns/pid_for_children'), readlinkSync('/proc/self/ns/pid'), 'pid_for_children is restored');
  const gpid = JSON.parse(keel(['state', 'lib-guest']).stdout).pid as number;
  assert.equal(readlinkSync(`/proc/${gpid}/ns/pid`), readlinkSync(`/proc/${apid}/ns/pid`));
  await remove(ctx, 'lib-guest', { force: true });
  assert.equal(existsSync(`/proc/${gpid}`), false, 'the guest\'s init, a child of this process, was reaped');
  // The host's init can only finish dying once every pid of its namespace is gone.
  await remove(ctx, 'lib-host', { force: true });
  assert.equal(existsSync(`/proc/${apid}`), false, 'the host\'s init was reaped');
});

test('exec and in-container hooks join a container\'s own time namespace', { skip: skipTime }, () => {
  const b = makeBundle(['sleep', '30'], (c) => {
    c.linux.namespaces.push({ type: 'time' });
    c.linux.timeOffsets = { boottime: { secs: 1000, nanosecs: 0 } };
  });
  assert.equal(keel(['run', '-d', '-b', b, 'exec-time']).status, 0);
  const r = keel(['exec', 'exec-time', 'cat', '/proc/self/timens_offsets']);
  keel(['delete', '--force', 'exec-time']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^boottime\s+1000\s+0$/m, 'exec runs in the container\'s time namespace');
});

test('a user-namespaced container looks as it does under runc (ids, caps, mounts, /dev owners)', { skip: skip || (!which('runc') && 'runc not installed') }, () => {
  const probe = 'id; grep ^Cap /proc/self/status; cut -d" " -f4- /proc/self/mountinfo | sort; for f in /dev/* /dev/mqueue /dev/shm /dev/pts; do stat -c "%n %u:%g %a" $f; done';
  const b = openBundle(['sh', '-c', probe], (c) => {
    c.linux.namespaces.push({ type: 'user' }, { type: 'cgroup' });
    USERNS(c);
  });
  // As engines do for user namespaces: the rootfs belongs to the mapped root.
  spawnCaptured('chown', ['-R', '100000:100000', join(b, 'rootfs')]);
  const runcRoot = tempDir('runc-root-');
  const r = spawnCaptured('runc', ['--root', runcRoot, 'run', '--bundle', b, 'userns-diff']);
  assert.equal(r.status, 0, r.stderr);
  const k = keel(['run', '--bundle', b, 'userns-diff']);
  assert.equal(k.status, 0, k.stderr);
  // runc makes the ipc namespace (so /dev/mqueue's superblock) as uid 0 but before its setresgid:
  // the group is the overflow id there; keel makes it as root:root of the namespace.
  const norm = (out: string) => out.split('\n').map((l) => l.replace(/^\/dev\/mqueue 0:65534 /, '/dev/mqueue 0:0 ')).sort();
  assert.deepEqual(norm(k.stdout), norm(r.stdout));
  assert.match(k.stdout, /^\/dev\/mqueue 0:0 1777$/m);
});
