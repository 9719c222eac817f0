import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, cli, mountsUnder, tempDir } from './helpers.js';

const store = newStore();

/** The store is as a clean build leaves it: nothing mounted, no work directory, no temporary file. */
function assertConsistent(): void {
  assert.deepEqual(mountsUnder(store), [], 'nothing left mounted');
  assert.deepEqual(fs.readdirSync(join(store, 'tmp')), [], 'no work directory left');
  for (const d of ['cache', 'layers', 's']) {
    assert.deepEqual(fs.readdirSync(join(store, d)).filter((n) => n.includes('.tmp-')), [], `no temporary file in ${d}/`);
  }
  const locks = fs.readdirSync(join(store, 'locks'));
  assert.deepEqual(locks, [], 'no lock left');
}

function lastLine(s: string): string {
  return s.trimEnd().split('\n').at(-1)!;
}

test('a failing RUN: its exit code and last output lines, the step and line named, exit status 1, and a later build reuses what succeeded', { skip: skipReason }, () => {
  const ctx = context(`FROM scratch\n${BUSYBOX_BASE}\nRUN echo prepared > /ok\nRUN for i in 1 2 3; do echo "line $i"; done; echo "oops" >&2; exit 3\n`);
  const r = cli(['build', '--store', store, '--progress', 'plain', ctx]);
  assert.equal(r.status, 1);
  assert.equal(lastLine(r.stderr), 'Dockerfile:6: RUN for i in 1 2 3; do echo "line $i"; done; echo "oops" >&2; exit 3: exit code 3; last output: line 1 | line 2 | line 3 | oops');
  assert.match(r.stderr, /#\d+ [\d.]+ line 2\n/, 'the step\'s output is shown as it runs');
  assert.equal(r.stdout, '');
  assertConsistent();
  fs.writeFileSync(join(ctx, 'Dockerfile'), `FROM scratch\n${BUSYBOX_BASE}\nRUN echo prepared > /ok\nRUN cat /ok\n`);
  const again = cli(['build', '--store', store, '--progress', 'plain', ctx]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal((again.stderr.match(/CACHED/g) ?? []).length, 4, 'the steps that had succeeded are cached');
  assertConsistent();
});

test('FROM an image whose registry cannot be reached: one line naming the image, the registry and how to give a local copy, and each way it names works', { skip: skipReason }, () => {
  const name = '127.0.0.1:1/team/base:1';
  const ctx = context(`FROM ${name}\nRUN cat /etc/base-marker\n`);
  const r = cli(['build', '--store', store, '-q', ctx]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.equal(r.stderr.trimEnd(), `Dockerfile:1: FROM ${name}: registry 127.0.0.1:1: GET /v2/team/base/manifests/1: connection refused (ECONNREFUSED); ` +
    `to build from a local copy of ${name} instead, give an OCI layout (--build-context ${name}=oci-layout://DIR[:TAG]; ` +
    'an OCI archive becomes one with tar -xf FILE -C DIR), an image of keel\'s store (keel-build build -t 127.0.0.1:1/team/base:1 ...), ' +
    'or a registry you can reach (e.g. docker-registry on localhost:5000)');
  assertConsistent();
  // The base, as an OCI layout and as an OCI archive.
  const base = context(`FROM scratch\n${BUSYBOX_BASE}\nRUN echo base > /etc/base-marker\n`);
  const out = tempDir('local-base');
  assert.equal(cli(['build', '--store', store, '-q', '-t', 'base:1', '-o', `type=oci,dest=${join(out, 'layout')}`, base]).status, 0);
  assert.equal(cli(['build', '--store', store, '-q', '-t', 'base:1', '-o', `type=oci-archive,dest=${join(out, 'base.tar')}`, base]).status, 0);
  fs.mkdirSync(join(out, 'from-archive'));
  assert.equal(spawnSync('tar', ['-xf', join(out, 'base.tar'), '-C', join(out, 'from-archive')]).status, 0);
  for (const dir of ['layout', 'from-archive']) {
    const b = cli(['build', '--store', store, '--progress', 'plain', '--no-cache', '--build-context', `${name}=oci-layout://${join(out, dir)}:1`, ctx]);
    assert.equal(b.status, 0, `${dir}: ${b.stderr}`);
    assert.match(b.stderr, /#\d+ [\d.]+ base\n/, `${dir}: RUN ran on the local base`);
  }
  // The base as an image of keel's store, tagged with the name the Dockerfile uses.
  assert.equal(cli(['build', '--store', store, '-q', '-t', name, base]).status, 0);
  const fromStore = cli(['build', '--store', store, '-q', ctx]);
  assert.equal(fromStore.status, 0, fromStore.stderr);
  assertConsistent();
});

test('missing context files, unknown stages and bad Dockerfiles are one clear line naming file and line', { skip: skipReason }, () => {
  const cases: [string, RegExp, string[]?][] = [
    ['FROM scratch\nCOPY nothere.txt /\n', /^Dockerfile:2: COPY nothere.txt \/: "nothere.txt": no such file or directory in the build context$/],
    ['FROM scratch AS a\nFROM scratch\nCOPY --from=a /x /\n', /^Dockerfile:3: COPY --from=a \/x \/: "\/x": no such file or directory in a$/],
    ['FROM scratch\nCOPY --from=5 /x /\n', /^Dockerfile:2: invalid stage index 5$/],
    ['FROM scratch AS a\n', /^Dockerfile: target stage "nope" could not be found$/, ['--target', 'nope']],
    ['FROM scratch\nRUN --bogus=1 true\n', /^Dockerfile:2: unknown flag: bogus/],
    ['FROM scratch\nCOPY --chmod=9z9 a /\n', /^Dockerfile:2: COPY --chmod=9z9 a \/: --chmod=9z9: expected an octal mode/],
    ['FROM scratch\nRUN true\n', /^Dockerfile:2: RUN true: the container did not start: exec: "\/bin\/sh": no such file/],
    ['FROM not-in-the-store:1\n', /^Dockerfile:1: FROM not-in-the-store:1: image "not-in-the-store:1": not in keel's store .* and registry pulls are off$/, ['--offline']],
    ['FROM 127.0.0.1:1/nothing:here\n', /^Dockerfile:1: FROM 127.0.0.1:1\/nothing:here: registry 127.0.0.1:1: GET \/v2\/nothing\/manifests\/here: connection refused \(ECONNREFUSED\); to build from a local copy/],
  ];
  for (const [df, re, extra] of cases) {
    const ctx = context(df);
    const r = cli(['build', '--store', store, '-q', ...(extra ?? []), ctx]);
    assert.equal(r.status, 1, `${df}: ${r.stderr}`);
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line for ${JSON.stringify(df)}: ${r.stderr}`);
    assert.match(r.stderr.trimEnd(), re);
    assertConsistent();
  }
  const noDockerfile = tempDir('nodf');
  const r = cli(['build', '--store', store, noDockerfile]);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, `Dockerfile ${join(noDockerfile, 'Dockerfile')}: no such file\n`);
  const noContext = cli(['build', '--store', store, '/nonexistent/ctx']);
  assert.equal(noContext.stderr, 'build context /nonexistent/ctx: no such directory\n');
});

test('an interrupted build (SIGTERM during a RUN) unmounts and removes its work, and the next build works', { skip: skipReason }, async () => {
  const ctx = context(`FROM scratch\n${BUSYBOX_BASE}\nRUN sleep 30\n`);
  const { spawn } = await import('node:child_process');
  const { keelBuild, cliEnv, ensureBuilt } = await import('./helpers.js');
  ensureBuilt();
  const child = spawn(keelBuild, ['build', '--store', store, '--progress', 'plain', ctx], { env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  for (let i = 0; i < 100 && !/RUN sleep 30/.test(err); i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  child.kill('SIGTERM');
  const status = await new Promise<number | null>((r) => child.on('close', (code, sig) => r(code ?? (sig ? 128 : null))));
  assert.notEqual(status, 0);
  // The container gets the signal too; the build is gone within a moment.
  assertConsistent();
  const again = await buildWith(store, context(`FROM scratch\n${BUSYBOX_BASE}\nRUN true\n`));
  assert.ok(again.manifestDigest);
  assertConsistent();
});
