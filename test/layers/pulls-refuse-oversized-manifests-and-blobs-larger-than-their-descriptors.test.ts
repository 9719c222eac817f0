// What a registry sends is bounded: a manifest larger than 4 MiB is refused while it is read, and
// a blob that goes on past the size its descriptor gives is cut off there (not stored whole, then
// refused). The registry is a small hostile HTTP server on 127.0.0.1; `keel-build build` pulls
// its FROM image from it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';
import { sha256 } from '../../src/layers/index.js';
import { tempDir, repoRoot } from './helpers.js';

const dir = tempDir('hostile-registry');
const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256('x')] } }));
const layer = Buffer.alloc(100, 1);
const manifest = (layerSize: number) => Buffer.from(JSON.stringify({
  schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
  layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layerSize }],
}));
let blobBytesSent = 0;

const server = createServer((req, res) => {
  const url = req.url ?? '';
  if (url === '/v2/') return void res.end('{}');
  const send = (body: Buffer, type: string) => { res.writeHead(200, { 'content-type': type, 'content-length': body.length }); res.end(body); };
  if (url === '/v2/x/huge/manifests/1') {
    // Over 4 MiB, without a Content-Length, so the cap must hold while reading.
    res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' });
    res.write('{"schemaVersion":2,"annotations":{"pad":"');
    for (let i = 0; i < 5; i++) res.write('p'.repeat(1 << 20));
    return void res.end('"}}');
  }
  if (url === '/v2/x/long/manifests/1') return send(manifest(10), 'application/vnd.oci.image.manifest.v1+json');
  if (url === `/v2/x/long/blobs/${sha256(config)}`) return send(config, 'application/octet-stream');
  if (url === `/v2/x/long/blobs/${sha256(layer)}`) {
    // Says nothing of its length and never stops: 64 MiB in 64 KiB chunks unless cut off.
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    let left = 1024;
    const more = () => {
      while (left-- > 0) {
        blobBytesSent += 64 << 10;
        if (!res.write(Buffer.alloc(64 << 10, 1))) return void res.once('drain', more);
      }
      res.end();
    };
    res.on('close', () => { left = 0; });
    return more();
  }
  res.writeHead(404).end();
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
after(() => server.close());
const reg = `127.0.0.1:${(server.address() as AddressInfo).port}`;

/** keel-build build, run without blocking this process (the registry answers from it). */
async function build(from: string): Promise<{ status: number | null; stderr: string }> {
  const ctx = join(dir, `ctx-${from.replace(/\W/g, '-')}`);
  fs.mkdirSync(ctx, { recursive: true });
  fs.writeFileSync(join(ctx, 'Dockerfile'), `FROM ${reg}/${from}\n`);
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/keel-build.ts'), 'build', '--store', join(dir, 'store'), '-q', ctx], { cwd: repoRoot, env: { ...process.env, NODE_EXTRA_CA_CERTS: '' }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const status = await new Promise<number | null>((r) => child.on('close', r));
  return { status, stderr };
}

test('a manifest larger than 4 MiB is refused with one line', async () => {
  const r = await build('x/huge:1');
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /manifest x\/huge:1 is larger than 4194304 bytes\n$/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});

test('a blob longer than its descriptor says is cut off at that size, and nothing of it is stored', async () => {
  const r = await build('x/long:1');
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /more than the 10 bytes its descriptor says\n$/);
  assert.ok(blobBytesSent < 16 << 20, `the registry sent ${blobBytesSent} bytes before keel stopped reading`);
  const blobs = join(dir, 'store', 'oci', 'blobs', 'sha256');
  assert.ok(!fs.existsSync(join(blobs, sha256(layer).slice(7))));
  assert.deepEqual(fs.existsSync(blobs) ? fs.readdirSync(blobs).filter((n) => n.startsWith('.tmp')) : [], []);
});
