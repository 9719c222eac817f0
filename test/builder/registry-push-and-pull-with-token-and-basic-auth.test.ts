// Against Debian's docker-registry (the distribution project's registry) started on 127.0.0.1 by
// the test: one with basic auth (htpasswd, bcrypt from Python's crypt module), one with bearer
// tokens issued by a small token server here (RS256 JWTs the registry checks against our cert).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { createSign, randomUUID, X509Certificate } from 'node:crypto';
import { skipReason, context, BUSYBOX_BASE, newStore, buildWith, storeLayout, unpack, tempDir, which, cli, mountsUnder } from './helpers.js';
import { killAtExit } from '../fixtures/cleanup.js';

const USER = 'builder';
const PASS = 's3cret-pass';

const bcrypt = (() => {
  const r = spawnSync('python3', ['-W', 'ignore', '-c', `import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))`, PASS], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.startsWith('$2') ? r.stdout.trim() : undefined;
})();
const skip = skipReason ?? (!which('docker-registry') ? 'docker-registry not installed' : !which('openssl') ? 'openssl not installed' : undefined);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createNetServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

const children: ChildProcess[] = [];
const servers: Server[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const s of servers) s.close();
});

async function startRegistry(auth: string): Promise<string> {
  const dir = tempDir('registry');
  const port = await freePort();
  fs.writeFileSync(join(dir, 'config.yml'), `version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: ${dir}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${port}
${auth}`);
  const child = killAtExit(spawn('docker-registry', ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] }));
  children.push(child);
  let log = '';
  child.stderr!.on('data', (c: Buffer) => { log += c.toString(); });
  for (let i = 0; i < 200; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status === 200 || r.status === 401, () => false);
    if (ok) return `127.0.0.1:${port}`;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`docker-registry did not start: ${log}`);
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

/** A token server: checks basic credentials, grants what is asked for repositories under `allowed/`... everything here. */
async function startTokenServer(dir: string): Promise<{ realm: string; cert: string; requests: string[] }> {
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=keel-test-token'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  const der = new X509Certificate(fs.readFileSync(cert)).raw;
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const authz = req.headers.authorization ?? '';
    const creds = authz.startsWith('Basic ') ? Buffer.from(authz.slice(6), 'base64').toString() : '';
    const scopes = url.searchParams.getAll('scope');
    requests.push(`${scopes.join(' ')} ${creds ? 'with-creds' : 'anonymous'}`);
    if (creds !== `${USER}:${PASS}`) { res.writeHead(401); res.end('{"details":"bad credentials"}'); return; }
    const access = scopes.flatMap((s) => s.split(' ')).filter(Boolean).map((s) => { const [type, name, actions] = s.split(':'); return { type, name, actions: actions!.split(',') }; });
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [der.toString('base64')] };
    const claims = { iss: 'keel-test-issuer', sub: USER, aud: url.searchParams.get('service'), exp: now + 600, nbf: now - 10, iat: now, jti: randomUUID(), access };
    const signing = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const sig = createSign('RSA-SHA256').update(signing).sign(fs.readFileSync(key));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: `${signing}.${b64url(sig)}`, expires_in: 600 }));
  });
  servers.push(server);
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return { realm: `http://127.0.0.1:${(server.address() as { port: number }).port}/token`, cert, requests };
}

const df = `
FROM scratch
${BUSYBOX_BASE}
COPY big.bin /big.bin
RUN echo pushed > /marker
CMD ["cat", "/marker"]
`;

test('push and pull with basic auth: chunked and monolithic uploads, the image comes back the same', { skip: skip ?? (bcrypt ? undefined : 'no bcrypt (python3 crypt module) for the htpasswd file') }, async () => {
  const dir = tempDir('htpasswd');
  fs.writeFileSync(join(dir, 'htpasswd'), `${USER}:${bcrypt}\n`);
  const reg = await startRegistry(`auth:\n  htpasswd:\n    realm: keel-test\n    path: ${dir}/htpasswd\n`);
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
  const ctx = context(df, { 'big.bin': big });
  const store = newStore();
  const credentials = { username: USER, password: PASS };
  const r = await buildWith(store, ctx, { tags: [`${reg}/team/app:1`], outputs: [{ type: 'registry' }], registry: { credentials, chunkSize: 64 * 1024 } });
  assert.equal(r.pushes.length, 1);
  const how = new Set(r.pushes[0]!.uploaded.map((u) => u.how));
  assert.deepEqual([...how].sort(), ['chunked', 'monolithic'], 'big blobs in chunks, small ones in one request');
  assert.equal(r.pushes[0]!.digest, r.manifestDigest);

  // Wrong credentials: a clear error naming the registry.
  await assert.rejects(buildWith(newStore(), ctx, { tags: [`${reg}/team/app:2`], outputs: [{ type: 'registry' }], registry: { credentials: { username: USER, password: 'wrong' } } }), new RegExp(`registry ${reg}: .*HTTP 401`));

  // Pull it into an empty store as the base of another build.
  const store2 = newStore();
  const child = await buildWith(store2, context(`FROM ${reg}/team/app:1\nRUN cat /marker /big.bin | wc -c > /size\n`), { tags: ['pulled:1'], registry: { credentials } });
  assert.deepEqual(child.config.rootfs.diff_ids.slice(0, -1), r.config.rootfs.diff_ids);
  const bundle = unpack(storeLayout(store2), 'pulled:1');
  assert.equal(fs.readFileSync(join(bundle, 'rootfs/size'), 'utf8').trim(), String(7 + 300_000));
  if (which('skopeo')) {
    const s = spawnSync('skopeo', ['inspect', '--tls-verify=false', '--creds', `${USER}:${PASS}`, `docker://${reg}/team/app:1`], { encoding: 'utf8' });
    assert.equal(s.status, 0, s.stderr);
    assert.equal(JSON.parse(s.stdout).Digest, r.manifestDigest, 'skopeo sees the manifest keel-build pushed');
  }
  // A second push finds every blob there already.
  const again = await buildWith(store, ctx, { tags: [`${reg}/team/app:1`], outputs: [{ type: 'registry' }], registry: { credentials } });
  assert.equal(again.pushes[0]!.uploaded.length, 0);
});

test('push with bearer tokens: the token server is asked for the repository scope, and blobs are mounted across repositories', { skip }, async () => {
  const tok = await startTokenServer(tempDir('token'));
  const reg = await startRegistry(`auth:\n  token:\n    realm: ${tok.realm}\n    service: keel-test-registry\n    issuer: keel-test-issuer\n    rootcertbundle: ${tok.cert}\n`);
  const credentials = { username: USER, password: PASS };
  const store = newStore();
  const base = await buildWith(store, context(df, { 'big.bin': 'small' }), { tags: [`${reg}/base/image:1`], outputs: [{ type: 'registry' }], registry: { credentials } });
  assert.ok(tok.requests.some((q) => q === 'repository:base/image:pull,push with-creds'), tok.requests.join('\n'));
  assert.ok(base.pushes[0]!.uploaded.length > 0);
  // A child image in another repository: the base's layers are mounted, not uploaded again.
  const child = await buildWith(newStore(), context(`FROM ${reg}/base/image:1\nRUN echo child > /child\n`), { tags: [`${reg}/other/child:1`], outputs: [{ type: 'registry' }], registry: { credentials } });
  const pushed = child.pushes[0]!;
  const baseLayers = base.config.rootfs.diff_ids.length;
  assert.equal(pushed.mounted.length, baseLayers, `the base's layers are mounted from base/image: ${JSON.stringify(pushed)}`);
  for (const d of pushed.mounted) assert.ok(base.pushes[0]!.uploaded.some((u) => u.digest === d));
  assert.equal(pushed.uploaded.length, 2, 'only the new layer and the config are uploaded');
  // Without credentials the token server refuses: a clear error.
  await assert.rejects(buildWith(newStore(), context(`FROM ${reg}/base/image:1\n`), { registry: {} }), /token request to 127\.0\.0\.1:\d+ failed: HTTP 401/);
});

test('an unreachable registry fails the push with the registry named, exit status 1, nothing left behind', { skip: skipReason }, async () => {
  const store = newStore();
  const ctx = context(`FROM scratch\nCOPY busybox /bin/busybox\n`);
  const port = await freePort();
  const r = cli(['build', '--store', store, '-q', '-t', `127.0.0.1:${port}/x/y:1`, '--output', 'type=registry', ctx]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`^registry 127\\.0\\.0\\.1:${port}: HEAD /v2/x/y/blobs/sha256:[0-9a-f]{64}: connection refused \\(ECONNREFUSED\\)\\n$`));
  assert.deepEqual(mountsUnder(store), []);
  assert.deepEqual(fs.readdirSync(join(store, 'tmp')), []);
});
