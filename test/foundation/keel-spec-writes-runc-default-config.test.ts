import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, rmSync, statSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { defaultSpec, formatSpec } from '../../src/runtime/spec-default.js';
import { validateRuntimeConfig, RUNTIME_SPEC_VERSION } from '../../src/spec/index.js';
import { keel, run, which } from './cli.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'keel-spec-'));
}

/** runc's output with the two fields keel writes differently set to keel's values. */
function runcSpecAsKeel(args: string[]): string {
  const dir = tmp();
  try {
    const r = spawnSync('runc', ['spec', ...args], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(join(dir, 'config.json'), 'utf8')
      .replace(/^\t"ociVersion": "[^"]*",$/m, `\t"ociVersion": "${RUNTIME_SPEC_VERSION}",`)
      .replace(/^\t"hostname": "runc",$/m, '\t"hostname": "keel",');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('defaultSpec and its rootless form are valid runtime-spec configs', () => {
  for (const rootless of [false, true]) {
    const spec = validateRuntimeConfig(defaultSpec({ rootless, uid: 1000, gid: 1000 }), `defaultSpec(rootless=${rootless})`);
    assert.equal(spec.ociVersion, RUNTIME_SPEC_VERSION);
    assert.equal(spec.hostname, 'keel');
  }
});

test('defaultSpec rootless maps the given uid and gid to root and swaps the network namespace for a user namespace', () => {
  const spec = defaultSpec({ rootless: true, uid: 1234, gid: 5678 });
  assert.deepEqual(spec.linux?.uidMappings, [{ containerID: 0, hostID: 1234, size: 1 }]);
  assert.deepEqual(spec.linux?.gidMappings, [{ containerID: 0, hostID: 5678, size: 1 }]);
  const ns = spec.linux?.namespaces?.map((n) => n.type);
  assert.ok(ns?.includes('user') && !ns.includes('network'), String(ns));
  assert.equal(spec.linux?.resources, undefined);
  assert.ok(!JSON.stringify(spec.mounts).includes('gid=5'));
  // Each call is a fresh document: callers may change it freely.
  const a = defaultSpec(); a.process!.capabilities!.bounding!.push('CAP_SYS_ADMIN');
  assert.ok(!defaultSpec().process!.capabilities!.bounding!.includes('CAP_SYS_ADMIN'));
});

for (const args of [[], ['--rootless']]) {
  test(`keel spec${args.map((a) => ` ${a}`).join('')} writes the same config.json as runc spec${args.map((a) => ` ${a}`).join('')}, byte for byte but ociVersion and hostname`, (t) => {
    if (!which('runc')) { t.skip('runc not installed'); return; }
    const dir = tmp();
    try {
      const r = run(keel, ['spec', ...args], { cwd: dir });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout + r.stderr, '');
      const text = readFileSync(join(dir, 'config.json'), 'utf8');
      assert.equal(text, runcSpecAsKeel(args));
      assert.equal(text, formatSpec(defaultSpec({ rootless: args.length > 0 })));
      assert.equal(statSync(join(dir, 'config.json')).mode & 0o777, 0o666 & ~process.umask());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('keel spec --bundle DIR writes DIR/config.json', () => {
  const dir = tmp();
  try {
    const bundle = join(dir, 'bundle');
    mkdirSync(bundle);
    const r = run(keel, ['spec', '--bundle', bundle], { cwd: dir });
    assert.equal(r.status, 0, r.stderr);
    validateRuntimeConfig(JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')));
    assert.ok(!existsSync(join(dir, 'config.json')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('keel spec refuses to overwrite an existing config.json and leaves it as it was', () => {
  const dir = tmp();
  try {
    writeFileSync(join(dir, 'config.json'), 'mine');
    const r = run(keel, ['spec', '-b', dir]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'File config.json exists. Remove it first\n');
    assert.equal(readFileSync(join(dir, 'config.json'), 'utf8'), 'mine');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('keel spec --bundle on a missing directory fails on one line naming it and creates nothing', () => {
  const dir = tmp();
  try {
    const missing = join(dir, 'nope');
    const r = run(keel, ['spec', '--bundle', missing]);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `chdir ${missing}: no such file or directory\n`);
    assert.ok(!existsSync(missing));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
