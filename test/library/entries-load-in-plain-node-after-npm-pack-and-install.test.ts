// The package's library entries as a user gets them: `npm pack`, `npm install` of the tarball in a
// fresh folder, then plain Node.js (no TypeScript loader) imports keel/runtime, keel/builder,
// keel/dockerfile, keel/layers and keel/spec and uses them; TypeScript finds their types.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { root, ensureBuilt, cliEnv } from '../foundation/cli.js';

const work = fs.mkdtempSync(join(tmpdir(), 'keel-pack-'));
const app = join(work, 'app');
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));

function sh(cmd: string, args: string[], cwd: string) {
  const r = spawnSync(cmd, args, { cwd, env: cliEnv(), encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/** Runs an ES module with plain node in the installed folder; returns its stdout. */
function plainNode(code: string): string {
  fs.writeFileSync(join(app, 'probe.mjs'), code);
  const r = spawnSync(process.execPath, ['probe.mjs'], { cwd: app, env: cliEnv(), encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

before(() => {
  ensureBuilt();
  // dist/ is built: pack it as it is (no prepack build), then install the tarball like a user.
  const out = sh('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], root);
  const tarball = join(work, (JSON.parse(out) as { filename: string }[])[0]!.filename);
  fs.mkdirSync(app);
  fs.writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  // Scripts off: zstd-napi's would compile its addon, which nothing here uses.
  sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', '--omit=dev', tarball], app);
});

test('the tarball holds the built libraries and their types, not TypeScript sources', () => {
  const pkg = join(app, 'node_modules', 'keel');
  for (const entry of ['runtime', 'builder', 'dockerfile', 'layers', 'spec']) {
    assert.ok(fs.existsSync(join(pkg, 'dist', 'lib', entry, 'index.js')), `${entry}/index.js`);
    assert.ok(fs.existsSync(join(pkg, 'dist', 'lib', entry, 'index.d.ts')), `${entry}/index.d.ts`);
  }
  assert.equal(fs.existsSync(join(pkg, 'src')), false, 'no sources in the package');
  const manifest = JSON.parse(fs.readFileSync(join(pkg, 'package.json'), 'utf8'));
  assert.equal(manifest.dependencies.tar, undefined, 'no dependency the code never imports');
});

test('plain node imports every entry and each works', () => {
  const out = plainNode(`
    const df = await import('keel/dockerfile');
    const parsed = df.parseDockerfile('FROM scratch AS base\\nARG TARGETARCH\\nCOPY a /a\\nRUN ["/a", "$TARGETARCH"]\\n', { file: 'Dockerfile' });
    const plan = df.resolveStages(parsed, { targetPlatform: 'linux/arm64' });
    console.log('dockerfile', parsed.instructions.length, plan.stages[0].name, plan.globalArgs.get('TARGETARCH'));

    const layers = await import('keel/layers');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/keel-pack-layout-');
    const store = await layers.OciLayout.create(dir);
    const layer = await layers.writeLayer(store, [{ header: { path: 'hello', type: 'file', mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 0 } }], { compression: 'gzip' });
    console.log('layers', layer.diffID.startsWith('sha256:'), layers.sha256(Buffer.from('')));
    rmSync(dir, { recursive: true });

    const builder = await import('keel/builder');
    console.log('builder', builder.familiarName(builder.parseReference('busybox')), typeof builder.build);

    const runtime = await import('keel/runtime');
    const spec = runtime.defaultSpec({ rootless: false, uid: 0, gid: 0 });
    console.log('runtime', spec.process.args.join(' '), typeof runtime.create);

    const s = await import('keel/spec');
    s.validateImageIndex({ schemaVersion: 2, manifests: [] }, 'index');
    let refused = false;
    try { s.validateImageIndex({ schemaVersion: 'x' }, 'index'); } catch { refused = true; }
    console.log('spec', refused);
  `);
  const lines = out.trim().split('\n');
  assert.deepEqual(lines, [
    'dockerfile 4 base arm64',
    'layers true sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    'builder busybox:latest function',
    'runtime sh function',
    'spec true',
  ]);
});

test('TypeScript resolves the entries to their declarations', () => {
  fs.writeFileSync(join(app, 'use.ts'), [
    "import { build, type BuildOptions } from 'keel/builder';",
    "import { parseDockerfile } from 'keel/dockerfile';",
    "import { OciLayout } from 'keel/layers';",
    "import { defaultSpec } from 'keel/runtime';",
    "import type { ImageConfig } from 'keel/spec';",
    "const o: BuildOptions = { context: '.', tags: ['app:1'] };",
    "const n: number = parseDockerfile('FROM scratch').instructions.length;",
    "const c: ImageConfig['architecture'] = 'amd64';",
    'export const all = [build, o, n, OciLayout, defaultSpec, c];',
    // A wrong use must be refused: the types are real, not `any`.
    "// @ts-expect-error context is a string",
    "export const bad: BuildOptions = { context: 1 };",
  ].join('\n'));
  fs.writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(root, 'node_modules', '@types')] },
    files: ['use.ts'],
  }));
  const r = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { cwd: app, env: cliEnv(), encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
