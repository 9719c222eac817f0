import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { keel, keelBuild, root, run, ensureBuilt, cliEnv } from './cli.js';

const tmp = mkdtempSync(join(tmpdir(), 'keel-startup-'));
process.on('exit', () => rmSync(tmp, { recursive: true, force: true }));

/** Runs a CLI with a preload that records, at exit, the Node built-ins and the files the process loaded. */
function loaded(file: string, args: string[]): { builtins: string[]; files: string[]; status: number | null; stdout: string } {
  const preload = join(tmp, 'record-loaded.cjs');
  const out = join(tmp, 'loaded.json');
  writeFileSync(preload, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify({
    builtins: process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)),
    files: Object.keys(require.cache) })));\n`);
  rmSync(out, { force: true });
  const r = run(file, args, { env: { NODE_OPTIONS: `--require ${preload}` } });
  const rec = JSON.parse(readFileSync(out, 'utf8'));
  return { ...rec, status: r.status, stdout: r.stdout };
}

test('dist/keel and dist/keel-build are executable files that the kernel can exec directly', () => {
  ensureBuilt();
  for (const file of [keel, keelBuild]) {
    assert.ok(statSync(file).mode & 0o111, `${file} is not executable`);
    const interpreter = /^#!(\S+)( node)?\n/.exec(readFileSync(file, 'utf8'));
    assert.ok(interpreter, `${file} has no #! line`);
    assert.ok(statSync(interpreter[1]!).mode & 0o111, `${file}: ${interpreter[1]} is not executable`);
    const r = spawnSync(file, ['--help'], { env: cliEnv(), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\$ keel(-build)? <command>/);
  }
});

test('keel --version, -v and version print runc-style version lines, after global flags too', () => {
  const expected = /^keel version \d+\.\d+\.\d+\S*\ncommit: \S+\nspec: 1\.3\.0\nnode: v\d+\.\d+\.\d+\n$/;
  const first = run(keel, ['--version']);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout, expected);
  for (const args of [['-v'], ['version'], ['--root', join(tmp, 'state'), '--debug', '--version']]) {
    const r = run(keel, args);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, first.stdout, args.join(' '));
  }
});

test('the version printed without clipanion is the one the version command prints', async () => {
  const { Cli } = await import('clipanion');
  const { PassThrough } = await import('node:stream');
  const { VersionCommand } = await import('../../src/cli/runtime/version.js');
  const { versionText } = await import('../../src/cli/runtime/globals.js');
  const cli = new Cli({ binaryName: 'keel', enableColors: false });
  cli.register(VersionCommand);
  const stdout = new PassThrough();
  let text = '';
  stdout.on('data', (d) => { text += d; });
  assert.equal(await cli.run(['version'], { stdin: process.stdin, stdout, stderr: stdout }), 0);
  assert.equal(text, versionText());
});

test('keel help and keel help COMMAND work as runc\'s do; --help lists the commands', () => {
  const all = run(keel, ['--help']);
  assert.equal(all.status, 0, all.stderr);
  assert.match(all.stdout, /keel spec/);
  assert.equal(run(keel, ['help']).stdout, all.stdout);
  const one = run(keel, ['help', 'spec']);
  assert.equal(one.status, 0, one.stderr);
  assert.match(one.stdout, /\$ keel spec/);
  assert.equal(run(keel, ['spec', '--help']).stdout, one.stdout);
});

test('an unknown command or a global flag without its value is one line on stderr and exit code 1', () => {
  const bad = run(keel, ['no-such-command']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^keel: Command not found\n/);
  const flag = run(keel, ['--root']);
  assert.equal(flag.status, 1);
  assert.equal(flag.stderr, 'keel: flag needs an argument: --root\n');
});

test('keel --version and a command that prints nothing load no stdio streams, no tty/net and nothing from node_modules', () => {
  for (const args of [['--version'], ['spec', '--bundle', tmp]]) {
    const r = loaded(keel, args);
    assert.equal(r.status, 0, args.join(' '));
    for (const heavy of ['stream', 'tty', 'net']) assert.ok(!r.builtins.includes(heavy), `keel ${args.join(' ')} loaded ${heavy}`);
    assert.deepEqual(r.files.filter((f) => !f.endsWith('record-loaded.cjs')), [keel], `keel ${args.join(' ')}`);
  }
  assert.ok(existsSync(join(tmp, 'config.json')));
});

test('loading every command (--help) loads no native addon nor any other file: the CLIs are self-contained bundles', () => {
  for (const file of [keel, keelBuild]) {
    const r = loaded(file, ['--help']);
    assert.equal(r.status, 0);
    assert.deepEqual(r.files.filter((f) => !f.endsWith('record-loaded.cjs')), [file]);
  }
});

test('each CLI has a V8 code cache beside its bundle, and V8 accepts it', () => {
  ensureBuilt();
  for (const name of ['keel', 'keel-build']) {
    assert.ok(statSync(join(root, 'dist', `${name}.cache`)).size > 1000, `dist/${name}.cache`);
    // Compile the bundle as the launcher does, with the cache: a rejected cache means a stale or foreign build.
    const r = spawnSync(process.execPath, ['-e', `
      const { readFileSync } = require('fs'); const { Script } = require('vm');
      const file = ${JSON.stringify(join(root, 'dist', `${name}.js`))};
      const s = new Script('(function (exports, require, module, __filename, __dirname) {' + readFileSync(file, 'utf8') + '\\n})',
        { filename: file, cachedData: readFileSync(file.replace(/\\.js$/, '.cache')) });
      process.stdout.write(String(s.cachedDataRejected));`], { env: cliEnv(), encoding: 'utf8' });
    assert.equal(r.stdout, 'false', `dist/${name}.cache rejected: ${r.stderr}`);
  }
});

// How fast keel starts against `node -e 0` is a performance goal: bench/startup.sh measures it
// (timed tests fail on busy machines without telling anything about keel). The tests above check
// what makes the start fast: a self-contained bundle, a V8 code cache V8 accepts, nothing loaded
// that the command does not need.
