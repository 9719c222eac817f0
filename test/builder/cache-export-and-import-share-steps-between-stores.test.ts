// --cache-to / --cache-from: a build on store A exports its cache (a local OCI layout, or a push to
// Debian's docker-registry on 127.0.0.1); the same context built on an empty store B with the cache
// runs no step and gives the same image; an edited file re-runs only the steps that depend on it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createNetServer } from 'node:net';
import { Writable } from 'node:stream';
import { skipReason, context, newStore, buildWith, storeLayout, unpack, tempDir, which, cli, mountsUnder } from './helpers.js';
import type { BuildOptions } from '../../src/builder/index.js';

const DOCKERFILE = `FROM scratch AS base
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /etc /out && cat /proc/sys/kernel/random/uuid > /out/base-run
WORKDIR /work

FROM base AS tool
COPY tool.txt /tool.txt
RUN cat /proc/sys/kernel/random/uuid > /out/tool-run && cp /tool.txt /out/tool-out

FROM base
COPY --from=tool /out/tool-out /out/tool-run /from-tool/
COPY app.txt /app.txt
RUN cat /proc/sys/kernel/random/uuid > /out/app-run && cat /app.txt /from-tool/tool-out > /out/both
RUN true
ENV DONE=1
`;

/** Builds with plain progress collected: the result and the steps that ran (not CACHED), by instruction. */
async function buildLogged(store: string, ctx: string, opts: Partial<BuildOptions>) {
  let log = '';
  const stream = new Writable({ write(c, _e, cb) { log += c.toString(); cb(); } });
  const r = await buildWith(store, ctx, { progress: 'plain', progressStream: stream as never, ...opts });
  const titles = new Map<string, string>();
  for (const m of log.matchAll(/^#(\d+) \[[^\]]+\] (.*)$/gm)) titles.set(m[1]!, m[2]!);
  const cached = new Set([...log.matchAll(/^#(\d+) CACHED$/gm)].map((m) => m[1]!));
  const ran = [...titles].filter(([id, t]) => !cached.has(id) && !t.startsWith('FROM')).map(([, t]) => t);
  return { r, ran, log };
}

function readFromImage(store: string, ref: string, file: string): string {
  const bundle = unpack(storeLayout(store), ref);
  return fs.readFileSync(join(bundle, 'rootfs', file), 'utf8');
}

test('a cache exported to a local directory makes every step of an empty store a hit: same image, no RUN', { skip: skipReason }, async () => {
  const ctx = context(DOCKERFILE, { 'tool.txt': 'tool v1\n', 'app.txt': 'app v1\n' });
  const cacheDir = join(tempDir('cache'), 'c');
  const a = newStore();
  const built = await buildLogged(a, ctx, { tags: ['cached:1'], cacheTo: [{ type: 'local', dest: cacheDir, mode: 'max' }] });
  assert.equal(built.r.cached, 0);
  assert.equal(built.r.cacheExports.length, 1);

  // The directory is an OCI layout tagging BuildKit's cache manifest.
  const index = JSON.parse(fs.readFileSync(join(cacheDir, 'index.json'), 'utf8'));
  const entry = index.manifests.find((m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === 'latest');
  assert.equal(entry.digest, built.r.cacheExports[0]!.digest);
  const blob = (d: string) => fs.readFileSync(join(cacheDir, 'blobs', ...d.split(':')), 'utf8');
  const manifest = JSON.parse(blob(entry.digest));
  assert.equal(manifest.config.mediaType, 'application/vnd.buildkit.cacheconfig.v0');
  const config = JSON.parse(blob(manifest.config.digest));
  // Every file-system step of every stage (mode=max): 4 in base, 2 in tool, 4 in the last stage.
  assert.equal(config.records.length, 10);
  for (const l of manifest.layers) {
    assert.match(l.annotations['containerd.io/uncompressed'], /^sha256:/);
    assert.ok(l.annotations['buildkit/createdat']);
    assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
  }
  assert.ok(config.records.some((r: any) => r.inputs?.[0]?.[0]?.link !== undefined), 'records link to their parent step');

  // Store B starts empty: every step comes from the cache, the image is the same.
  const b = newStore();
  const again = await buildLogged(b, ctx, { tags: ['cached:1'], cacheFrom: [{ type: 'local', src: cacheDir }] });
  assert.deepEqual(again.ran, [], again.log);
  assert.equal(again.r.cached, again.r.steps);
  assert.equal(again.r.manifestDigest, built.r.manifestDigest);
  assert.equal(readFromImage(b, 'cached:1', 'out/app-run'), readFromImage(a, 'cached:1', 'out/app-run'));
  assert.deepEqual(mountsUnder(b), []);
  // The hits whose layers B fetched (the image's) are its own now: without --cache-from only the
  // tool stage, whose layers it never needed, runs again, and the image stays the same.
  const third = await buildLogged(b, ctx, { tags: ['cached:1'] });
  assert.deepEqual(third.ran, ['COPY tool.txt /tool.txt', 'RUN cat /proc/sys/kernel/random/uuid > /out/tool-run && cp /tool.txt /out/tool-out']);
  assert.equal(third.r.manifestDigest, built.r.manifestDigest);

  // One edited file: only its COPY and the steps after it in its stage run again.
  fs.writeFileSync(join(ctx, 'app.txt'), 'app v2\n');
  const c = newStore();
  const edited = await buildLogged(c, ctx, { tags: ['cached:2'], cacheFrom: [{ type: 'local', src: cacheDir }] });
  assert.deepEqual(edited.ran, ['COPY app.txt /app.txt', 'RUN cat /proc/sys/kernel/random/uuid > /out/app-run && cat /app.txt /from-tool/tool-out > /out/both', 'RUN true']);
  assert.equal(readFromImage(c, 'cached:2', 'out/both'), 'app v2\ntool v1\n');
  assert.equal(readFromImage(c, 'cached:2', 'out/base-run'), readFromImage(a, 'cached:1', 'out/base-run'), 'base steps came from the cache');
  assert.notEqual(readFromImage(c, 'cached:2', 'out/app-run'), readFromImage(a, 'cached:1', 'out/app-run'));
});

test('mode=min exports the steps of the image\'s stages only; an intermediate stage then runs again, the image\'s steps stay hits', { skip: skipReason }, async () => {
  const ctx = context(DOCKERFILE, { 'tool.txt': 'tool\n', 'app.txt': 'app\n' });
  const cacheDir = join(tempDir('cache'), 'min');
  await buildWith(newStore(), ctx, { cacheTo: [{ type: 'local', dest: cacheDir }] });
  const index = JSON.parse(fs.readFileSync(join(cacheDir, 'index.json'), 'utf8'));
  const blob = (d: string) => fs.readFileSync(join(cacheDir, 'blobs', ...d.split(':')), 'utf8');
  const config = JSON.parse(blob(JSON.parse(blob(index.manifests[0].digest)).config.digest));
  assert.equal(config.records.length, 8, 'base and the last stage, not tool');
  const again = await buildLogged(newStore(), ctx, { cacheFrom: [{ type: 'local', src: cacheDir }] });
  // (COPY --from=tool is keyed by the tool stage's steps, which are the same: it stays a hit.)
  assert.deepEqual(again.ran, ['COPY tool.txt /tool.txt', 'RUN cat /proc/sys/kernel/random/uuid > /out/tool-run && cp /tool.txt /out/tool-out']);
});

const children: ChildProcess[] = [];
after(() => { for (const c of children) c.kill('SIGKILL'); });

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createNetServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function startRegistry(): Promise<string> {
  const dir = tempDir('registry');
  const port = await freePort();
  fs.writeFileSync(join(dir, 'config.yml'), `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  const child = spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let log = '';
  child.stderr!.on('data', (c: Buffer) => { log += c.toString(); });
  for (let i = 0; i < 200; i++) {
    if (await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status === 200, () => false)) return `127.0.0.1:${port}`;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`docker-registry did not start: ${log}`);
}

const registrySkip = skipReason ?? (!which('docker-registry') ? 'docker-registry not installed' : undefined);

test('a cache pushed to a registry serves another store; the CLI takes --cache-to and --cache-from', { skip: registrySkip }, async () => {
  const host = await startRegistry();
  const ctx = context(DOCKERFILE, { 'tool.txt': 'tool\n', 'app.txt': 'app\n' });
  const ref = `${host}/keel/cache:main`;
  const a = newStore();
  const first = cli(['build', '--store', a, '-q', '--cache-to', `type=registry,ref=${ref},mode=max`, ctx]);
  assert.equal(first.status, 0, first.stderr);
  const digest = first.stdout.trim();

  const m = await fetch(`http://${host}/v2/keel/cache/manifests/main`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(m.status, 200);
  const manifest = await m.json() as any;
  assert.equal(manifest.config.mediaType, 'application/vnd.buildkit.cacheconfig.v0');
  assert.ok(manifest.layers.length >= 5);

  const b = newStore();
  const second = cli(['build', '--store', b, '--progress', 'plain', '--cache-from', `type=registry,ref=${ref}`, ctx]);
  assert.equal(second.status, 0, second.stderr);
  assert.equal(second.stdout.trim(), digest);
  const steps = [...second.stderr.matchAll(/^#(\d+) \[[^\]]+\] (RUN|COPY|WORKDIR)/gm)].map((x) => x[1]);
  const cached = new Set([...second.stderr.matchAll(/^#(\d+) CACHED$/gm)].map((x) => x[1]));
  assert.equal(steps.length, 10);
  assert.deepEqual(steps.filter((s) => !cached.has(s)), [], second.stderr);

  // buildx's short form: a bare reference is type=registry.
  const third = cli(['build', '--store', newStore(), '-q', '--cache-from', ref, ctx]);
  assert.equal(third.status, 0, third.stderr);
  assert.equal(third.stdout.trim(), digest);
});

test('bad cache options are one clear line; a cache not there yet is a warning; an unreachable one an error', { skip: registrySkip }, async () => {
  const ctx = context('FROM scratch\nCOPY busybox /busybox\n');
  const store = newStore();
  const unknown = cli(['build', '--store', store, '--cache-to', 'type=s3,bucket=x', ctx]);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr.trim(), /^--cache-to type=s3,bucket=x: unknown cache type "s3" \(keel-build has type=local and type=registry\)$/);
  const noDest = cli(['build', '--store', store, '--cache-to', 'type=local', ctx]);
  assert.match(noDest.stderr.trim(), /type=local needs dest=DIR$/);
  const badMode = cli(['build', '--store', store, '--cache-to', 'type=local,dest=/tmp/x,mode=all', ctx]);
  assert.match(badMode.stderr.trim(), /mode must be min or max$/);

  const missing = cli(['build', '--store', store, '--progress', 'plain', '--cache-from', `type=local,src=${join(tempDir('none'), 'nothing')}`, ctx]);
  assert.equal(missing.status, 0, missing.stderr);
  assert.match(missing.stderr, /warning: --cache-from type=local,src=.*: no cache there yet/);

  const port = await freePort();
  const unreachable = cli(['build', '--store', store, '--cache-from', `type=registry,ref=127.0.0.1:${port}/cache:x`, ctx]);
  assert.equal(unreachable.status, 1);
  assert.equal(unreachable.stderr.trim().split('\n').length, 1, unreachable.stderr);
  assert.match(unreachable.stderr, new RegExp(`--cache-from type=registry,ref=127.0.0.1:${port}/cache:x: .*ECONNREFUSED`));
  const pushFails = cli(['build', '--store', store, '-q', '--cache-to', `type=registry,ref=127.0.0.1:${port}/cache:x`, ctx]);
  assert.equal(pushFails.status, 1);
  assert.match(pushFails.stderr.trim().split('\n').at(-1)!, new RegExp(`^--cache-to type=registry,ref=127.0.0.1:${port}/cache:x: .*ECONNREFUSED`));
  assert.deepEqual(fs.readdirSync(join(store, 'tmp')), [], 'no work directory left');
  assert.deepEqual(mountsUnder(store), []);
  // The store still builds.
  const ok = cli(['build', '--store', store, '-q', ctx]);
  assert.equal(ok.status, 0, ok.stderr);
});
