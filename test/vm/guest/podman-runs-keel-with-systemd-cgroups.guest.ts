// podman (cgroup_manager = "systemd", as distributions set it) with keel as its OCI runtime: limits
// asked on podman's command line reach the container's cgroup, and stats, update, pause/unpause
// and top work.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { keelBin, notGuest, rootfs } from './helpers.js';

const image = 'localhost/keel-vm-busybox:1';

function podman(args: string[], input?: Buffer): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('podman', ['--runtime', keelBin, '--cgroup-manager', 'systemd', ...args], { input, encoding: 'utf8', timeout: 300_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? r.error?.message ?? '' };
}
function ok(args: string[], input?: Buffer): string {
  const r = podman(args, input);
  assert.equal(r.status, 0, `podman ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

describe('podman with keel as its runtime', { skip: notGuest }, () => {
  const name = `keel-vm-${process.pid}`;
  before(() => {
    const tar = spawnSync('tar', ['-C', rootfs(), '-c', '.'], { maxBuffer: 64 << 20 });
    ok(['import', '-', image], tar.stdout);
  });
  after(() => { podman(['rm', '-f', '-t', '0', name]); podman(['rmi', '-f', image]); });

  test('run --memory --cpus --pids-limit: the limits are read back inside the container', () => {
    const out = ok(['run', '--rm', '--memory', '64m', '--cpus', '0.5', '--pids-limit', '20', image,
      'sh', '-c', 'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max; cat /proc/self/cgroup']);
    const lines = out.split('\n');
    assert.equal(lines[0], String(64 * 1024 * 1024));
    assert.equal(lines[1], '50000 100000');
    assert.equal(lines[2], '20');
  });

  test('a detached container is in a libpod scope of machine.slice, and stats --no-stream reports its limit', () => {
    ok(['run', '-d', '--name', name, '--memory', '96m', '--pids-limit', '30', image, 'sleep', '100000']);
    const cgroup = ok(['inspect', '-f', '{{.State.CgroupPath}}', name]);
    assert.match(cgroup, /^\/machine\.slice\/libpod-[0-9a-f]+\.scope$/);
    const stats = JSON.parse(ok(['stats', '--no-stream', '--format', 'json', name]));
    const s = Array.isArray(stats) ? stats[0] : stats;
    assert.match(String(s.mem_usage ?? s.MemUsage), /96(\.\d+)?\s*MiB|100\.\d+\s*MB/);
    assert.match(String(s.pids ?? s.PIDs), /^[1-9]/);
  });

  test('update changes the limits of the running container', () => {
    ok(['update', '--memory', '128m', '--cpus', '0.25', name]);
    const cgroup = ok(['inspect', '-f', '{{.State.CgroupPath}}', name]);
    const read = (f: string) => spawnSync('cat', [`/sys/fs/cgroup${cgroup}/${f}`], { encoding: 'utf8' }).stdout.trim();
    assert.equal(read('memory.max'), String(128 * 1024 * 1024));
    assert.equal(read('cpu.max'), '25000 100000');
  });

  test('pause and unpause', () => {
    ok(['pause', name]);
    assert.equal(ok(['inspect', '-f', '{{.State.Status}}', name]), 'paused');
    ok(['unpause', name]);
    assert.equal(ok(['inspect', '-f', '{{.State.Status}}', name]), 'running');
  });

  test('top lists the container process', () => {
    const out = ok(['top', name]);
    assert.match(out, /sleep 100000/);
  });
});
