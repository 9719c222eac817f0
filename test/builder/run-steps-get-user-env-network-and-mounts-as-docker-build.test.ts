import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, storeLayout, unpack, tempDir, which, mountsUnder } from './helpers.js';

const store = newStore();

function read(tag: string, path: string): string {
  return fs.readFileSync(join(unpack(storeLayout(store), tag), 'rootfs', path), 'utf8');
}

test('RUN sees the stage\'s environment, user, working directory and Docker\'s capabilities', { skip: skipReason }, async () => {
  await buildWith(store, context(`
FROM scratch
${BUSYBOX_BASE}
ENV E1=one
ARG A1=two
WORKDIR /srv/dir
RUN env | sort | grep -E '^(E1|A1|PATH|HOME)=' > /env.txt && pwd > /pwd.txt && grep CapEff /proc/self/status > /caps.txt
USER app
RUN id > /tmp/user.txt; touch /tmp/owned-by-app
USER app:staff
RUN id -G > /tmp/groups-explicit.txt
USER 0
RUN chown app /tmp/owned-by-app && echo chown-ok > /chown.txt
RUN --security=insecure grep CapEff /proc/self/status > /caps-insecure.txt
`), { tags: ['runenv'] });
  assert.equal(read('runenv:latest', 'env.txt'), 'A1=two\nE1=one\nHOME=/root\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n');
  assert.equal(read('runenv:latest', 'pwd.txt'), '/srv/dir\n');
  assert.equal(read('runenv:latest', 'tmp/user.txt'), 'uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n');
  // Supplementary groups as BuildKit sets them since CVE-2023-25173: the primary group always, the
  // user's /etc/group memberships only when USER names no group.
  assert.equal(read('runenv:latest', 'tmp/groups-explicit.txt'), '50\n');
  assert.equal(read('runenv:latest', 'chown.txt'), 'chown-ok\n');
  // CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_SYS_CHROOT CAP_MKNOD CAP_AUDIT_WRITE CAP_SETFCAP
  assert.equal(read('runenv:latest', 'caps.txt'), 'CapEff:\t00000000a80425fb\n');
  const own = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1];
  assert.equal(read('runenv:latest', 'caps-insecure.txt'), `CapEff:\t${own}\n`, '--security=insecure: every capability the builder has');
});

test('RUN --network=none has only a loopback interface; the default is the host\'s network', { skip: skipReason }, async () => {
  const hostIfaces = fs.readdirSync('/sys/class/net').sort().join(' ');
  await buildWith(store, context(`
FROM scratch
${BUSYBOX_BASE}
RUN --network=none ls /sys/class/net > /none.txt
RUN ls /sys/class/net | tr '\\n' ' ' > /host.txt
`), { tags: ['runnet'] });
  assert.equal(read('runnet:latest', 'none.txt'), 'lo\n');
  assert.equal(read('runnet:latest', 'host.txt').trim(), hostIfaces);
});

test('RUN --mount: cache directories persist between builds, binds read the context or a stage, tmpfs and secrets stay out of the image', { skip: skipReason }, async () => {
  const secret = join(tempDir('secret'), 's.txt');
  fs.writeFileSync(secret, 'top-secret\n');
  const df = (n: number) => `
FROM scratch AS tools
COPY tool.sh /tool.sh

FROM scratch
${BUSYBOX_BASE}
RUN --mount=type=cache,target=/var/cache/app echo run${n} >> /var/cache/app/log && cp /var/cache/app/log /cache-log.txt
RUN --mount=type=bind,source=ctxdir,target=/mnt/ctx cat /mnt/ctx/file.txt > /bind.txt && (touch /mnt/ctx/new 2>/dev/null && echo writable || echo read-only) >> /bind.txt
RUN --mount=type=bind,from=tools,source=/tool.sh,target=/usr/local/bin/tool.sh sh /usr/local/bin/tool.sh > /stage-bind.txt
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/x && grep -c tmpfs /proc/mounts > /tmpfs.txt
RUN --mount=type=secret,id=token cat /run/secrets/token > /dev/null && wc -c < /run/secrets/token > /secret-size.txt
RUN --mount=type=secret,id=absent,required=false test ! -e /run/secrets/absent && echo skipped > /optional.txt
`;
  const ctx = context(df(1), { 'ctxdir/file.txt': 'from-context\n', 'tool.sh': 'echo tool-ran\n' });
  await buildWith(store, ctx, { tags: ['runmounts'], secrets: { token: { src: secret } } });
  assert.equal(read('runmounts:latest', 'cache-log.txt'), 'run1\n');
  assert.equal(read('runmounts:latest', 'bind.txt'), 'from-context\nread-only\n');
  assert.equal(read('runmounts:latest', 'stage-bind.txt'), 'tool-ran\n');
  assert.ok(Number(read('runmounts:latest', 'tmpfs.txt')) >= 1);
  assert.equal(read('runmounts:latest', 'secret-size.txt'), '11\n');
  assert.equal(read('runmounts:latest', 'optional.txt'), 'skipped\n');
  const root = join(unpack(storeLayout(store), 'runmounts:latest'), 'rootfs');
  for (const p of ['var/cache/app', 'mnt/ctx', 'scratch', 'run/secrets', 'usr/local/bin/tool.sh']) assert.ok(!fs.existsSync(join(root, p)), `${p} is not in the image`);
  assert.ok(!fs.existsSync(join(ctx, 'ctxdir/new')), 'the context is never written');
  fs.writeFileSync(join(ctx, 'Dockerfile'), df(2));
  await buildWith(store, ctx, { tags: ['runmounts'], secrets: { token: { src: secret } } });
  assert.equal(read('runmounts:latest', 'cache-log.txt'), 'run1\nrun2\n', 'the cache mount kept what the first build wrote');
  await assert.rejects(buildWith(store, context(`FROM scratch\n${BUSYBOX_BASE}\nRUN --mount=type=secret,id=token,required=true true\n`)), /Dockerfile:5: RUN .*secret "token" is required but was not given/);
  assert.deepEqual(mountsUnder(store), []);
});

test('RUN with heredocs runs the script (with its own interpreter line when it has one)', { skip: skipReason }, async () => {
  await buildWith(store, context(`
FROM scratch
${BUSYBOX_BASE}
RUN <<EOF
echo heredoc-shell > /h1.txt
echo second line >> /h1.txt
EOF
RUN <<EOF
#!/bin/sh -e
echo "script \$0" > /h2.txt
EOF
`), { tags: ['heredoc'] });
  assert.equal(read('heredoc:latest', 'h1.txt'), 'heredoc-shell\nsecond line\n');
  assert.equal(read('heredoc:latest', 'h2.txt'), 'script /dev/pipes/EOF\n');
});

for (const runtime of ['runc', 'crun']) {
  test(`--runtime ${runtime}: the OCI runtime CLI runs the RUN steps and the layers are the same`, { skip: skipReason ?? (which(runtime) ? undefined : `${runtime} not installed`) }, async (t) => {
    const df = `FROM scratch\n${BUSYBOX_BASE}\nRUN echo "by $(cat /proc/1/comm)" > /who.txt && ls /sys/class/net > /dev/null\n`;
    // One context and pinned times: layers then depend on content only.
    const ctx = context(df);
    const own = await buildWith(newStore(), ctx, { sourceDateEpoch: 1000 });
    let path = which(runtime)!;
    if (runtime === 'crun' && fs.existsSync('/sys/fs/cgroup/unified') && fs.existsSync('/sys/fs/cgroup/cpu')) {
      // crun refuses hybrid cgroup hosts: run it where /sys/fs/cgroup/unified is hidden (DESIGN.md).
      path = join(tempDir('crun'), 'crun-private-ns');
      fs.writeFileSync(path, `#!/bin/sh\nexec unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec ${which('crun')} "$@"' crun "$@"\n`, { mode: 0o755 });
    }
    const theirStore = newStore();
    const r = await buildWith(theirStore, ctx, { runtime: path, tags: ['byruntime'], sourceDateEpoch: 1000 });
    void t;
    assert.deepEqual(r.config.rootfs.diff_ids.slice(0, 3), own.config.rootfs.diff_ids.slice(0, 3), 'the same layers from COPY and from the RUN steps that do not look at the runtime');
    const who = fs.readFileSync(join(unpack(storeLayout(theirStore), 'byruntime:latest'), 'rootfs/who.txt'), 'utf8');
    assert.equal(who, 'by sh\n', 'the step ran as PID 1 of its container');
  });
}

test('RUN mount points stay out of layers unless the step changed them; mounted-over files the image has are not copied into the layer', { skip: skipReason }, async () => {
  const layout = join(tempDir('mp'), 'l');
  const r = await buildWith(store, context(`
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "true"]
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox echo x > /etc/tmpfile && /bin/busybox rm /etc/tmpfile"]
RUN --network=none ["/bin/busybox", "touch", "/etc/hosts", "/etc/resolv.conf"]
RUN ["/bin/busybox", "mkdir", "/etc/sub"]
`), { outputs: [{ type: 'oci', dest: layout }] });
  assert.deepEqual(r.config.history!.map((e) => !!e.empty_layer), [false, true, false, false, false], 'RUN true makes no layer');
  const { readTar, decompress } = await import('../../src/layers/index.js');
  const index = JSON.parse(fs.readFileSync(join(layout, 'index.json'), 'utf8'));
  const m = JSON.parse(fs.readFileSync(join(layout, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  const names: string[][] = [];
  for (const l of m.layers) {
    const list: string[] = [];
    const src = (async function* () { yield fs.readFileSync(join(layout, 'blobs/sha256', l.digest.slice(7))); })();
    for await (const e of readTar(decompress(src))) list.push(e.header.path);
    names.push(list);
  }
  assert.deepEqual(names.slice(1), [['etc'], ['etc', 'etc/hosts', 'etc/resolv.conf'], ['etc', 'etc/sub']],
    'the changed /etc is kept; the last RUN\'s layer holds /etc/sub, not copies of /etc/hosts and /etc/resolv.conf');
});
