// What BuildKit users reach for in ADD and RUN: archives compressed with xz, bzip2 and zstd are
// extracted; a git repository (served by `git daemon` on 127.0.0.1) is checked out at a branch, tag
// or subdirectory, with --keep-git-dir; RUN --mount=type=ssh reaches a real ssh-agent (ssh-add of
// openssh-client runs in the step) given with --ssh.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join, dirname } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { killAtExit, killChild } from '../fixtures/cleanup.js';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, storeLayout, unpack, tempDir, which, cli } from './helpers.js';

const children: ChildProcess[] = [];
const groups: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const g of groups) killChild(g, true);
});

function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd, env: { ...process.env, ...opts.env } });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('ADD extracts tar archives compressed with xz, bzip2 and zstd (by their bytes, not their names)', { skip: skipReason ?? (!which('xz') || !which('bzip2') || !which('zstd') ? 'xz, bzip2 or zstd not installed' : undefined) }, async () => {
  const src = tempDir('archive-src');
  fs.mkdirSync(join(src, 'tree/sub'), { recursive: true });
  fs.writeFileSync(join(src, 'tree/hello.txt'), 'hello from an archive\n');
  fs.writeFileSync(join(src, 'tree/sub/run.sh'), '#!/bin/sh\necho run\n', { mode: 0o755 });
  const files: Record<string, Buffer> = {};
  const tar = spawnSync('tar', ['-C', src, '--owner=0', '--group=0', '-cf', '-', 'tree']).stdout;
  for (const [name, tool] of [['a.tar.xz', 'xz'], ['b.tar.bz2', 'bzip2'], ['c.tar.zst', 'zstd'], ['d.archive', 'xz']] as const) {
    files[name] = spawnSync(tool, ['-c'], { input: tar }).stdout;
  }
  files['plain.txt.xz'] = spawnSync('xz', ['-c'], { input: 'not a tar\n' }).stdout;
  const store = newStore();
  await buildWith(store, context(`FROM scratch
ADD a.tar.xz /xz/
ADD b.tar.bz2 /bz2/
ADD c.tar.zst /zst/
ADD d.archive /named-anyhow/
ADD plain.txt.xz /kept/
`, files), { tags: ['archives'] });
  const rootfs = join(unpack(storeLayout(store), 'archives:latest'), 'rootfs');
  for (const d of ['xz', 'bz2', 'zst', 'named-anyhow']) {
    assert.equal(fs.readFileSync(join(rootfs, d, 'tree/hello.txt'), 'utf8'), 'hello from an archive\n', d);
    assert.equal(fs.statSync(join(rootfs, d, 'tree/sub/run.sh')).mode & 0o777, 0o755, d);
  }
  // A compressed file that is not a tar archive is copied as it is.
  assert.deepEqual(fs.readFileSync(join(rootfs, 'kept/plain.txt.xz')), files['plain.txt.xz']);
});

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createNetServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** A repository with a tag v1 and a branch main one commit later, served by git daemon. */
async function gitServer(): Promise<{ url: string; work: string; commit: (msg: string, files: Record<string, string>) => string }> {
  const base = tempDir('git');
  const work = join(base, 'work');
  const env = { GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@example.com' };
  sh('git', ['init', '-q', '-b', 'main', work]);
  const commit = (msg: string, files: Record<string, string>) => {
    for (const [p, c] of Object.entries(files)) {
      fs.mkdirSync(dirname(join(work, p)), { recursive: true });
      fs.writeFileSync(join(work, p), c);
    }
    sh('git', ['add', '-A'], { cwd: work });
    sh('git', ['commit', '-q', '-m', msg], { cwd: work, env: { ...env, GIT_COMMITTER_DATE: '2024-01-02T03:04:05Z', GIT_AUTHOR_DATE: '2024-01-02T03:04:05Z' } });
    sh('git', ['push', '-q', '--tags', join(base, 'repo.git'), 'main'], { cwd: work });
    return sh('git', ['rev-parse', 'HEAD'], { cwd: work }).trim();
  };
  sh('git', ['init', '-q', '--bare', '-b', 'main', join(base, 'repo.git')]);
  commit('one', { 'README.md': 'v1\n', 'sub/inner.txt': 'inner v1\n' });
  sh('git', ['tag', 'v1'], { cwd: work });
  commit('two', { 'README.md': 'v2\n' });
  const port = await freePort();
  // `git daemon` runs git-daemon as its child: both go, as a process group, however the file ends.
  const d = spawn('git', ['daemon', '--reuseaddr', '--export-all', `--base-path=${base}`, '--listen=127.0.0.1', `--port=${port}`, base], { stdio: 'ignore', detached: true });
  killAtExit(d, true);
  groups.push(d);
  for (let i = 0; i < 200; i++) {
    if (spawnSync('git', ['ls-remote', `git://127.0.0.1:${port}/repo.git`], { stdio: 'ignore' }).status === 0) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  return { url: `git://127.0.0.1:${port}/repo.git`, work, commit };
}

test('ADD of a git repository checks out a branch, a tag or a subdirectory; --keep-git-dir keeps .git; a new commit re-runs the step', { skip: skipReason ?? (!which('git') ? 'git not installed' : undefined) }, async () => {
  const g = await gitServer();
  const store = newStore();
  const df = `FROM scratch
ADD ${g.url}#v1 /tag/
ADD ${g.url} /head/
ADD ${g.url}#main:sub /sub/
ADD --keep-git-dir=true ${g.url}#main /kept/
`;
  const ctx = context(df);
  const first = await buildWith(store, ctx, { tags: ['git:1'] });
  const rootfs = join(unpack(storeLayout(store), 'git:1'), 'rootfs');
  assert.equal(fs.readFileSync(join(rootfs, 'tag/README.md'), 'utf8'), 'v1\n');
  assert.equal(fs.readFileSync(join(rootfs, 'head/README.md'), 'utf8'), 'v2\n');
  assert.deepEqual(fs.readdirSync(join(rootfs, 'sub')), ['inner.txt']);
  assert.equal(fs.existsSync(join(rootfs, 'head/.git')), false, 'no .git without --keep-git-dir');
  assert.ok(fs.existsSync(join(rootfs, 'kept/.git/HEAD')));
  assert.equal(fs.statSync(join(rootfs, 'tag/README.md')).mtime.toISOString(), '2024-01-02T03:04:05.000Z', 'file times are the commit\'s');
  assert.equal(fs.statSync(join(rootfs, 'tag/README.md')).uid, 0);

  const again = await buildWith(store, ctx, { tags: ['git:1'] });
  assert.equal(again.cached, again.steps);
  assert.equal(again.manifestDigest, first.manifestDigest);
  // The branch moves: the steps that read it run again; the tag's stays a hit.
  g.commit('three', { 'README.md': 'v3\n' });
  const moved = await buildWith(store, ctx, { tags: ['git:2'] });
  assert.equal(moved.cached, 1);
  assert.equal(fs.readFileSync(join(unpack(storeLayout(store), 'git:2'), 'rootfs', 'head/README.md'), 'utf8'), 'v3\n');

  const missing = cli(['build', '--store', store, '-q', '-f', '-', ctx], { input: `FROM scratch\nADD ${g.url}#no-such-branch /x/\n` });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr.trim(), new RegExp(`^Dockerfile:2: ADD ${g.url.replace(/[.:/]/g, '\\$&')}#no-such-branch /x/: ${g.url.replace(/[.:/]/g, '\\$&')}: no branch, tag or commit "no-such-branch" there$`));
});

/** ssh-add and the libraries it links, laid out as in the host (for a context to COPY). */
function sshAddFiles(): Record<string, Buffer | { data: Buffer; mode: number }> {
  const out: Record<string, Buffer | { data: Buffer; mode: number }> = { 'sshroot/usr/bin/ssh-add': { data: fs.readFileSync('/usr/bin/ssh-add'), mode: 0o755 } };
  const ldd = sh('ldd', ['/usr/bin/ssh-add']);
  for (const m of ldd.matchAll(/(\/\S+\.so[.\d]*)/g)) {
    const real = fs.realpathSync(m[1]!);
    out[`sshroot${m[1]}`] = { data: fs.readFileSync(real), mode: 0o755 };
  }
  return out;
}

test('RUN --mount=type=ssh forwards an ssh-agent given with --ssh: SSH_AUTH_SOCK, uid/gid/mode, required, not in the image', { skip: skipReason ?? (!which('ssh-agent') || !which('ssh-keygen') ? 'openssh-client not installed' : undefined) }, async () => {
  const dir = tempDir('ssh');
  sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'keel-build-test-key', '-f', join(dir, 'id')]);
  const sock = join(dir, 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  children.push(agent);
  for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 10));
  sh('ssh-add', [join(dir, 'id')], { env: { SSH_AUTH_SOCK: sock } });
  const store = newStore();
  const ctx = context(`FROM scratch
${BUSYBOX_BASE}
COPY sshroot/ /
RUN --mount=type=ssh ssh-add -l > /root-list && echo "$SSH_AUTH_SOCK" > /sock-env && stat -c '%u:%g %a' "$SSH_AUTH_SOCK" > /sock-stat
USER app
RUN --mount=type=ssh,uid=1000,mode=0600,target=/tmp/agent ssh-add -l > /tmp/app-list && stat -c '%u %a' /tmp/agent > /tmp/app-stat
RUN --mount=type=ssh ssh-add -l > /tmp/denied 2>&1 || echo refused > /tmp/denied
`, sshAddFiles());
  await buildWith(store, ctx, { tags: ['ssh'], ssh: { default: [sock] } });
  const rootfs = join(unpack(storeLayout(store), 'ssh:latest'), 'rootfs');
  assert.match(fs.readFileSync(join(rootfs, 'root-list'), 'utf8'), /^256 SHA256:\S+ keel-build-test-key \(ED25519\)\n$/);
  assert.equal(fs.readFileSync(join(rootfs, 'sock-env'), 'utf8'), '/run/buildkit/ssh_agent.0\n');
  assert.equal(fs.readFileSync(join(rootfs, 'sock-stat'), 'utf8'), '0:0 600\n');
  assert.match(fs.readFileSync(join(rootfs, 'tmp/app-list'), 'utf8'), /keel-build-test-key/);
  assert.equal(fs.readFileSync(join(rootfs, 'tmp/app-stat'), 'utf8'), '1000 600\n');
  assert.equal(fs.readFileSync(join(rootfs, 'tmp/denied'), 'utf8'), 'refused\n', 'the socket is 0:0 0600 for a non-root user unless uid= says otherwise');
  assert.equal(fs.existsSync(join(rootfs, 'run/buildkit')), false, 'the mount point is not left in the image');

  // Without --ssh the mount is skipped, or refused when required.
  const skipped = await buildWith(newStore(), context('FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "test ! -e /run/buildkit/ssh_agent.0 && echo skipped > /s"]\nRUN --mount=type=ssh ["/bin/busybox", "true"]\n'), {});
  assert.ok(skipped.manifestDigest);
  const required = cli(['build', '--store', newStore(), '-q', '-f', '-', ctx], { input: 'FROM scratch\nCOPY busybox /bin/busybox\nRUN --mount=type=ssh,id=deploy,required=true ["/bin/busybox", "true"]\n' });
  assert.equal(required.status, 1);
  assert.equal(required.stderr.trim(), 'Dockerfile:3: RUN --mount=type=ssh,id=deploy,required=true ["/bin/busybox", "true"]: ssh agent "deploy" is required but was not given (--ssh deploy[=SOCKET|KEY])');
  // A key file instead of a socket: keel-build starts an agent holding it for the build.
  const withKey = cli(['build', '--store', newStore(), '--progress', 'plain', '--ssh', `default=${join(dir, 'id')}`, ctx]);
  assert.equal(withKey.status, 0, withKey.stderr);
});
