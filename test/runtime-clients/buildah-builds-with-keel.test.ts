// buildah bud --runtime keel --isolation oci: every RUN step of a Dockerfile runs in a keel
// container and its changes land in the image. buildah gets its own storage, runtime root and TMPDIR.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseSkip, describe, deleteKeelContainers, env, keel, makeBusyboxLayout, run, tempDir, which } from './helpers.js';

const skip = baseSkip() || (!which('buildah') && 'buildah not installed');
const dir = skip ? '' : tempDir('keel-buildah-');
const keelRoot = join(dir, 'keel');
const BASE = 'localhost/keel-test/busybox:1';

function buildah(args: string[], opts: { timeout?: number } = {}) {
  const global = ['--root', join(dir, 'storage'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs'];
  // buildah puts the bundles of RUN containers under TMPDIR (default /var/tmp).
  return run('buildah', [...global, ...args], { ...opts, env: { ...env, TMPDIR: join(dir, 'tmp') } });
}

before(async () => {
  if (skip) return;
  mkdirSync(join(dir, 'tmp'));
  await makeBusyboxLayout(join(dir, 'layout'), 'bb');
  const pull = buildah(['pull', '-q', `oci:${join(dir, 'layout')}:bb`]);
  assert.equal(pull.status, 0, describe(pull, 'buildah pull'));
  const tag = buildah(['tag', pull.stdout.trim(), BASE]);
  assert.equal(tag.status, 0, describe(tag, 'buildah tag'));
});

after(() => {
  if (skip) return;
  buildah(['rm', '--all']);
  deleteKeelContainers(keelRoot);
  rmSync(dir, { recursive: true, force: true });
});

test('buildah bud runs each RUN step with keel and commits its changes', { skip }, () => {
  const ctx = join(dir, 'ctx');
  mkdirSync(ctx);
  writeFileSync(join(ctx, 'input.txt'), 'from the context\n');
  writeFileSync(join(ctx, 'Dockerfile'), [
    `FROM ${BASE}`,
    'RUN echo "hello from RUN" > /greeting && cat /greeting',
    'COPY input.txt /input.txt',
    'RUN ["/bin/sh", "-c", "mkdir -p /data && echo $((6*7)) > /data/answer && cat /input.txt >> /data/answer"]',
    'ENV WHO=keel',
    'WORKDIR /work',
    'RUN echo "built by $WHO in $(pwd) as $(id -u)" >> /greeting && test -s /data/answer && rm /input.txt',
    'USER nobody',
    'RUN id -u > /tmp/uid',
    '',
  ].join('\n'));
  const r = buildah(['bud', '--isolation', 'oci', '--runtime', keel, '--runtime-flag', `root=${keelRoot}`, '--layers=false', '-t', 'localhost/keel-test/out:1', ctx], { timeout: 120_000 });
  assert.equal(r.status, 0, describe(r, 'buildah bud'));
  assert.match(r.stdout, /^hello from RUN$/m, 'the first RUN printed its output');
  assert.ok(existsSync(keelRoot), 'keel made its state root: keel ran the steps');

  // Read the result back from the committed image.
  const from = buildah(['from', '--pull-never', 'localhost/keel-test/out:1']);
  assert.equal(from.status, 0, describe(from, 'buildah from'));
  const mount = buildah(['mount', from.stdout.trim()]);
  assert.equal(mount.status, 0, describe(mount, 'buildah mount'));
  const root = mount.stdout.trim();
  try {
    assert.equal(readFileSync(join(root, 'greeting'), 'utf8'), 'hello from RUN\nbuilt by keel in /work as 0\n');
    assert.equal(readFileSync(join(root, 'data/answer'), 'utf8'), '42\nfrom the context\n');
    assert.equal(existsSync(join(root, 'input.txt')), false, 'a RUN step removed a file of an earlier layer');
    assert.equal(readFileSync(join(root, 'tmp/uid'), 'utf8'), '65534\n', 'USER applies to RUN');
  } finally {
    buildah(['umount', from.stdout.trim()]);
  }
});

test('a failing RUN step fails the build with its exit status', { skip }, () => {
  const ctx = join(dir, 'ctx-fail');
  mkdirSync(ctx);
  writeFileSync(join(ctx, 'Dockerfile'), `FROM ${BASE}\nRUN echo before && exit 3\nRUN echo never\n`);
  const r = buildah(['bud', '--isolation', 'oci', '--runtime', keel, '--runtime-flag', `root=${keelRoot}`, '-t', 'localhost/keel-test/fail:1', ctx], { timeout: 120_000 });
  assert.notEqual(r.status, 0, 'the build fails');
  assert.match(r.stdout, /^before$/m);
  assert.doesNotMatch(r.stdout, /^never$/m);
  assert.match(r.stderr, /exit status 3/);
});
