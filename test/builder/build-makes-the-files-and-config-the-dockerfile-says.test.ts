import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, cli, storeLayout, unpack, tree, runBundle, mountsUnder } from './helpers.js';

const store = newStore();

const dockerfile = `
FROM scratch
${BUSYBOX_BASE}
LABEL org.example.name="hello app" version=1
ENV GREETING="hello world" EMPTY=
ARG WHO=builder
ENV WHO=$WHO
WORKDIR /app
COPY hello.txt data/
RUN echo "$GREETING from $WHO in $(pwd)" > out.txt && id -u > uid.txt && rm -f /bin/vi
USER app:staff
RUN id > /tmp/id.txt || true
EXPOSE 8080 53/udp
VOLUME ["/data", "/cache"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/out.txt; id -u; pwd"]
`;

test('a Dockerfile FROM scratch gives the files, owners, modes and config it describes, and the image runs', { skip: skipReason }, async () => {
  const ctx = context(dockerfile, { 'hello.txt': { data: 'hi\n', mode: 0o640 } });
  const r = await buildWith(store, ctx, { tags: ['hello:1'], buildArgs: { WHO: 'tester' } });
  assert.match(r.manifestDigest, /^sha256:[0-9a-f]{64}$/);
  const c = r.config.config!;
  assert.deepEqual(c.Env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'GREETING=hello world', 'EMPTY=', 'WHO=tester']);
  assert.equal(c.WorkingDir, '/app');
  assert.equal(c.User, 'app:staff');
  assert.deepEqual(c.ExposedPorts, { '8080/tcp': {}, '53/udp': {} });
  assert.deepEqual(c.Volumes, { '/data': {}, '/cache': {} });
  assert.deepEqual(c.Labels, { 'org.example.name': 'hello app', version: '1' });
  assert.equal(c.StopSignal, 'SIGINT');
  assert.deepEqual(c.Entrypoint, ['/bin/sh', '-c']);
  assert.deepEqual(c.Cmd, ['cat /app/out.txt; id -u; pwd']);
  const extra = c as Record<string, unknown>;
  assert.deepEqual(extra.Healthcheck, { Test: ['CMD', 'true'], Interval: 5_000_000_000, Retries: 2 });
  assert.deepEqual(extra.OnBuild, ['RUN echo triggered']);
  // history: one entry per instruction, config-only ones marked empty_layer
  const h = r.config.history!;
  assert.equal(h.filter((e) => !e.empty_layer).length, r.config.rootfs.diff_ids.length);
  assert.ok(h.some((e) => e.created_by === 'ENV GREETING=hello world EMPTY=' && e.empty_layer));
  assert.ok(h.some((e) => e.created_by?.startsWith('RUN /bin/sh -c echo') && !e.empty_layer));

  const bundle = unpack(storeLayout(store), 'hello:1');
  const t = tree(join(bundle, 'rootfs'));
  assert.deepEqual(t.get('app/data/hello.txt'), { type: 'file', mode: 0o640, uid: 0, gid: 0, size: 3, sha: t.get('app/data/hello.txt')!.sha });
  assert.equal(fs.readFileSync(join(bundle, 'rootfs/app/out.txt'), 'utf8'), 'hello world from tester in /app\n');
  assert.equal(fs.readFileSync(join(bundle, 'rootfs/app/uid.txt'), 'utf8'), '0\n');
  assert.equal(fs.readFileSync(join(bundle, 'rootfs/tmp/id.txt'), 'utf8'), 'uid=1000(app) gid=50(staff) groups=50(staff)\n');
  assert.equal(t.get('bin/vi'), undefined, 'a file deleted by RUN is gone (whiteout)');
  assert.equal(t.get('bin/sh')?.link, '/bin/busybox');
  // RUN mount points the runtime needed are not left in the image
  for (const p of ['proc', 'sys', 'dev', 'etc/resolv.conf', 'etc/hosts']) assert.equal(t.get(p), undefined, `${p} is not in the image`);

  const run = runBundle(bundle);
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, 'hello world from tester in /app\n1000\n/app\n');
  assert.deepEqual(mountsUnder(store), [], 'no mounts left under the store');
  assert.deepEqual(fs.readdirSync(join(store, 'tmp')), [], 'no work directories left');
});

test('ONBUILD triggers of the base run first in the child build; ENTRYPOINT resets an inherited CMD; SHELL changes RUN and CMD', { skip: skipReason }, async () => {
  await buildWith(store, context(`FROM scratch\n${BUSYBOX_BASE}\nCMD ["inherited"]\nONBUILD RUN echo from-trigger > /trigger.txt\n`), { tags: ['base-onbuild'] });
  const ctx = context(`FROM base-onbuild\nSHELL ["/bin/sh", "-ec"]\nRUN test -f /trigger.txt && echo shell-ok > /shell.txt\nENTRYPOINT ["/bin/echo"]\n`);
  const r = await buildWith(store, ctx, { tags: ['child-onbuild'] });
  const c = r.config.config as Record<string, unknown>;
  assert.equal(c.Cmd, null, 'ENTRYPOINT without CMD in the stage resets the inherited CMD');
  assert.deepEqual(c.Entrypoint, ['/bin/echo']);
  assert.equal(c.OnBuild, undefined, 'triggers are not inherited');
  assert.deepEqual(c.Shell, ['/bin/sh', '-ec']);
  const bundle = unpack(storeLayout(store), 'child-onbuild:latest');
  assert.equal(fs.readFileSync(join(bundle, 'rootfs/trigger.txt'), 'utf8'), 'from-trigger\n');
  assert.equal(fs.readFileSync(join(bundle, 'rootfs/shell.txt'), 'utf8'), 'shell-ok\n');
  assert.ok(r.config.history!.some((e) => e.created_by === 'RUN /bin/sh -ec test -f /trigger.txt && echo shell-ok > /shell.txt'));
});

test('--platform sets the image\'s platform and picks that platform\'s base from a multi-platform index', { skip: skipReason }, async () => {
  const { createHash } = await import('node:crypto');
  const { tempDir } = await import('./helpers.js');
  const layout = join(tempDir('multi'), 'oci');
  const ctx = context('FROM scratch\nCOPY hello.txt /\n', { 'hello.txt': 'hi\n' });
  const arm = await buildWith(store, ctx, { platform: 'linux/arm64', outputs: [{ type: 'oci', dest: layout }], tags: ['x:arm'] });
  const amd = await buildWith(store, ctx, { platform: 'linux/amd64', outputs: [{ type: 'oci', dest: layout }], tags: ['x:amd'] });
  assert.equal(arm.config.architecture, 'arm64');
  assert.equal(amd.config.architecture, 'amd64');
  const index = JSON.parse(fs.readFileSync(join(layout, 'index.json'), 'utf8'));
  const entries = index.manifests.map((m: Record<string, unknown>) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: m.platform }));
  const nested = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: entries }));
  const digest = createHash('sha256').update(nested).digest('hex');
  fs.writeFileSync(join(layout, 'blobs/sha256', digest), nested);
  index.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: `sha256:${digest}`, size: nested.length, annotations: { 'org.opencontainers.image.ref.name': 'multi' } });
  fs.writeFileSync(join(layout, 'index.json'), JSON.stringify(index));
  for (const [platform, arch] of [['linux/arm64', 'arm64'], ['linux/amd64', 'amd64']] as const) {
    const r = await buildWith(store, context(`FROM oci-layout://${layout}:multi\nLABEL picked=yes\n`), { platform });
    assert.equal(r.config.architecture, arch);
    assert.deepEqual(r.config.rootfs.diff_ids, (arch === 'arm64' ? arm : amd).config.rootfs.diff_ids);
  }
  // A RUN for a platform this machine cannot execute fails on its step.
  if (process.arch === 'x64') {
    await assert.rejects(buildWith(store, context(`FROM oci-layout://${layout}:multi\nRUN true\n`), { platform: 'linux/arm64' }), /Dockerfile:2: RUN true: /);
  }
});

test('RUN with an exec form cut short (`RUN ["echo", "hi"`) runs in shell form, as BuildKit and buildah run it, with a warning', { skip: skipReason }, () => {
  // The shell writes the command line it is given ($0 of `sh -c SCRIPT CMDLINE`) into the image.
  const ctx = context(`FROM scratch\n${BUSYBOX_BASE}\nSHELL ["/bin/sh", "-c", "printf %s \\"$0\\" > /cmdline"]\nRUN ["echo", "hi"\n`);
  const r = cli(['build', '--store', store, '--progress', 'plain', '-t', 'cutshort:1', ctx]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: Dockerfile:6: RUN: unterminated JSON array, so this is shell form \(as in BuildKit\): \["echo", "hi"/);
  const bundle = unpack(storeLayout(store), 'cutshort:1');
  assert.equal(fs.readFileSync(join(bundle, 'rootfs/cmdline'), 'utf8'), '["echo", "hi"');
});
