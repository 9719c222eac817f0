// Differential: the same Dockerfiles built by buildah (bud, runc, its own vfs storage in a
// temporary directory) and by keel-build give the same file trees (paths, types, modes, owners,
// contents, link targets) and the same image config fields.
//
// Known, deliberate differences, normalised here and nowhere else:
//  - buildah leaves the mount points of its RUN containers in the image when the base lacks them
//    (/dev, /proc, /sys, /run, /etc/hosts, /etc/hostname, /etc/resolv.conf, empty); keel-build, like
//    BuildKit, removes them. They are dropped from buildah's tree only when empty and absent in keel's.
//  - buildah adds the label io.buildah.version.
// buildah runs without --layers: with it, buildah 1.28 makes a WORKDIR only when a later step runs,
// as root whatever USER says (without it, as here and in keel-build and BuildKit, WORKDIR makes the
// directory at once, owned by USER).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { skipReason, context, newStore, buildWith, unpack, tree, tempDir, which, type Node, type FileSpec } from './helpers.js';

const skip = skipReason ?? (which('buildah') ? (which('runc') ? undefined : 'runc not installed (buildah runs RUN with it)') : 'buildah not installed');

const STUBS = new Set(['dev', 'proc', 'sys', 'run', 'etc/hosts', 'etc/hostname', 'etc/resolv.conf']);

function buildah(ctx: string, extra: string[] = []): string {
  const dir = tempDir('buildah');
  const g = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs'];
  const b = spawnSync('buildah', [...g, 'bud', '--runtime', which('runc')!, '-q', ...extra, '-t', 'difftest', ctx], { encoding: 'utf8' });
  if (b.status !== 0) throw new Error(`buildah bud failed: ${b.stderr}`);
  const out = join(dir, 'layout');
  const p = spawnSync('buildah', [...g, 'push', 'difftest', `oci:${out}:latest`], { encoding: 'utf8' });
  if (p.status !== 0) throw new Error(`buildah push failed: ${p.stderr}`);
  spawnSync('buildah', [...g, 'rmi', '-a', '-f'], { encoding: 'utf8' });
  return out;
}

function configOf(layout: string): Record<string, unknown> {
  const index = JSON.parse(fs.readFileSync(join(layout, 'index.json'), 'utf8'));
  const m = JSON.parse(fs.readFileSync(join(layout, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  return JSON.parse(fs.readFileSync(join(layout, 'blobs/sha256', m.config.digest.slice(7)), 'utf8'));
}

function compare(ctxFiles: Record<string, FileSpec>, dockerfile: string, extra: { buildArgs?: Record<string, string>; target?: string } = {}): Promise<void> {
  return (async () => {
    const ctx = context(dockerfile, ctxFiles);
    const args: string[] = [];
    for (const [k, v] of Object.entries(extra.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
    if (extra.target) args.push('--target', extra.target);
    const theirs = buildah(ctx, args);
    const ours = join(tempDir('keel'), 'layout');
    await buildWith(newStore(), ctx, { outputs: [{ type: 'oci', dest: ours }], buildArgs: extra.buildArgs, target: extra.target });
    const tk = tree(join(unpack(ours, 'latest'), 'rootfs'));
    const tb = tree(join(unpack(theirs, 'latest'), 'rootfs'));
    for (const [p, n] of [...tb]) {
      const top = p.split('/')[0]!;
      const stub = STUBS.has(p) || (STUBS.has(top) && p.split('/').length === 1);
      if (stub && !tk.has(p) && ((n.type === 'dir' && ![...tb.keys()].some((q) => q.startsWith(`${p}/`))) || (n.type === 'file' && n.size === 0))) tb.delete(p);
    }
    // /etc made only to hold buildah's stubs
    if (tb.get('etc')?.type === 'dir' && !tk.has('etc') && ![...tb.keys()].some((q) => q.startsWith('etc/'))) tb.delete('etc');
    const diff: string[] = [];
    const fmt = (n: Node | undefined) => (n ? JSON.stringify(n) : 'absent');
    for (const p of new Set([...tk.keys(), ...tb.keys()])) {
      const a = tk.get(p);
      const b = tb.get(p);
      if (fmt(a) !== fmt(b)) diff.push(`${p}: keel ${fmt(a)} / buildah ${fmt(b)}`);
    }
    assert.deepEqual(diff, [], 'file trees differ');
    assert.ok(tk.size > 250 && tk.get('bin/busybox')?.type === 'file', 'the trees compared are whole images');
    const ck = configOf(ours);
    const cb = configOf(theirs);
    const fields = ['Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts', 'Volumes', 'Labels', 'StopSignal'];
    const pick = (c: Record<string, unknown>) => {
      const cfg = (c.config ?? {}) as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const f of fields) {
        let v = cfg[f];
        if (f === 'Labels' && v) { v = { ...(v as object) }; delete (v as Record<string, unknown>)['io.buildah.version']; if (Object.keys(v as object).length === 0) v = undefined; }
        if (v === null || (Array.isArray(v) && v.length === 0) || v === '') v = undefined;
        if (v !== undefined) out[f] = v;
      }
      out.os = c.os;
      out.architecture = c.architecture;
      return out;
    };
    assert.deepEqual(pick(ck), pick(cb), 'image configs differ');
  })();
}

const base = [
  'COPY busybox /bin/busybox',
  'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
  'RUN mkdir -p /etc /tmp && printf "root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000:app:/home/app:/bin/sh\\n" > /etc/passwd && printf "root:x:0:\\napp:x:1000:\\nstaff:x:50:app\\n" > /etc/group',
].join('\n');

test('COPY of files, directories and symlinks with owners and modes; RUN that adds, deletes and links; config instructions', { skip }, async () => {
  await compare({
    'd/a': { data: 'a\n', mode: 0o600 }, 'd/link': { symlink: 'a' }, 'd/sub/s': 's\n', 'd/sub/x.sh': { data: '#!/bin/sh\n', mode: 0o755 },
    'f.txt': { data: 'f\n', mode: 0o755 }, 'g1.txt': '1', 'g2.txt': '2', 'skip.md': 'no',
  }, `FROM scratch
${base}
COPY d /copied/
COPY d/sub /sub-contents
COPY --chown=app:staff f.txt /owned/f.txt
COPY --chown=1234:5678 d /numeric/
COPY --chmod=700 f.txt /moded.txt
COPY g*.txt /globbed/
WORKDIR /srv/here
RUN echo hi > made.txt && rm /bin/vi && rm -r /copied/sub && ln -s /srv/here/made.txt /ml && mkdir -p /var/empty && chmod 1777 /tmp && touch /srv/here/.hidden
USER app
ENV A=1 B="two words"
LABEL l1=v1 "l 2"="v 2"
EXPOSE 80 53/udp 8000-8001
VOLUME /data
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/bin/sh"]
CMD ["-c", "echo"]
`);
});

test('multi-stage: COPY --from a stage, ARG defaults and build args, shell-form CMD, RUN as another user', { skip }, async () => {
  await compare({ 'src/main.txt': 'main\n' }, `ARG FLAVOUR=plain
FROM scratch AS build
${base}
ARG FLAVOUR
COPY src/ /src/
RUN mkdir -p /out && cat /src/main.txt > /out/result-$FLAVOUR && chmod 640 /out/result-$FLAVOUR && mkdir /out/empty

FROM scratch
${base}
COPY --from=build /out /opt/out
RUN mkdir -p /home/app && chown app:app /home/app
USER app
RUN echo "I am $(id -un)" > /home/app/who
WORKDIR /home/app
CMD echo "shell form"
`, { buildArgs: { FLAVOUR: 'special' } });
});

test('WORKDIR made under USER, COPY into an existing directory, --chown of made parents, ADD of a tar archive, .dockerignore', { skip }, async () => {
  const src = tempDir('pkg');
  fs.mkdirSync(join(src, 'pkg/bin'), { recursive: true });
  fs.writeFileSync(join(src, 'pkg/bin/tool'), 'tool\n');
  fs.chmodSync(join(src, 'pkg/bin/tool'), 0o750);
  fs.symlinkSync('bin/tool', join(src, 'pkg/tool-link'));
  const tgz = join(src, 'pkg.tgz');
  const t = spawnSync('tar', ['-C', src, '-czf', tgz, 'pkg']);
  assert.equal(t.status, 0);
  await compare({
    'pkg.tgz': fs.readFileSync(tgz), 'd/x': 'x\n', 'd/y.log': 'not ignored: *.log is for the top level only\n', 'top.log': 'ignored\n',
    'd/sub/keep.txt': 'k\n', '.dockerignore': '*.log\n**/skip-*\n', 'd/sub/skip-me': 'gone\n',
  }, `FROM scratch
${base}
RUN mkdir -p /existing && chmod 700 /existing
USER app
WORKDIR /made/by/workdir
USER root
COPY d /existing/
COPY --chown=app d /chowned/deep/
ADD pkg.tgz /opt/
COPY d/x /linked/
WORKDIR relative
`);
});
