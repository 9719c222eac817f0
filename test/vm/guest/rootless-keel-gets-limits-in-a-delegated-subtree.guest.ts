// Rootless keel on cgroup v2: an unprivileged user inside the cgroup subtree systemd delegates to
// its user manager (user@UID.service) gets memory and pids limits; outside a delegated subtree, a
// limit is one clear error line and nothing is left behind.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { config, keelBin, notGuest, tempDir } from './helpers.js';

const UID = 1500;
const MiB = 1024 * 1024;

function rootlessBundle(script: string, resources: any): string {
  const dir = tempDir('keel-vm-rootless-');
  const c = config(script);
  c.linux.namespaces = [{ type: 'user' }, { type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }];
  c.linux.uidMappings = [{ containerID: 0, hostID: UID, size: 1 }];
  c.linux.gidMappings = [{ containerID: 0, hostID: UID, size: 1 }];
  c.mounts = c.mounts.filter((m: any) => m.destination !== '/sys');
  c.mounts.push({ destination: '/sys/fs/cgroup', type: 'cgroup2', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev'] });
  c.linux.resources = resources;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(c));
  chmodSync(dir, 0o755);
  return dir;
}

/** Runs keel as the test user; `delegated`: inside a transient scope of its systemd user manager. */
function asUser(args: string[], delegated: boolean): { status: number | null; stdout: string; stderr: string } {
  const env = ['XDG_RUNTIME_DIR=/run/user/1500', 'DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1500/bus', 'HOME=/tmp'];
  const cmd = delegated
    ? ['systemd-run', '--user', '--scope', '--quiet', '-p', 'Delegate=yes', keelBin, ...args]
    : [keelBin, ...args];
  const r = spawnSync('setpriv', [`--reuid=${UID}`, `--regid=${UID}`, '--clear-groups', 'env', ...env, ...cmd], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('rootless keel on cgroup v2', { skip: notGuest }, () => {
  let root = '';
  before(() => {
    root = tempDir('keel-vm-rootless-root-');
    chownSync(root, UID, UID);
  });
  after(() => {
    for (const id of asUser(['--root', root, 'list', '-q'], false).stdout.split('\n').filter(Boolean)) asUser(['--root', root, 'delete', '-f', id], false);
  });

  test('in a delegated subtree, memory and pids limits are set in the container cgroup', () => {
    const b = rootlessBundle('cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; id -u', { memory: { limit: 40 * MiB }, pids: { limit: 12 } });
    const r = asUser(['--root', root, 'run', '--bundle', b, `rl-${process.pid}`], true);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), [String(40 * MiB), '12', '0']);
  });

  test('outside a delegated subtree, a limit is one clear error line and no state is left', () => {
    const b = rootlessBundle('true', { memory: { limit: 40 * MiB } });
    const r = asUser(['--root', root, 'run', '--bundle', b, `rl2-${process.pid}`], false);
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /cannot set linux\.resources\.memory.*rootless/);
    assert.equal(asUser(['--root', root, 'list', '-q'], false).stdout.trim(), '');
  });
});
