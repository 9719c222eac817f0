// The shim's command line as containerd writes it (Go's flag syntax), and its one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { parseFlags } from '../../src/shim/flags.js';
import { SHIM } from './containerd-env.js';

test('flags: -name value, -name=value, --name, bools alone, the action after them', () => {
  const f = parseFlags(['-namespace', 'k8s.io', '-address', '/run/containerd/containerd.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'abc', '-debug', 'start']);
  assert.deepEqual([f.namespace, f.address, f.publishBinary, f.id, f.debug, f.action], ['k8s.io', '/run/containerd/containerd.sock', '/usr/bin/containerd', 'abc', true, 'start']);
  const g = parseFlags(['--namespace=default', '-id=x', '-bundle', '/b', '-debug=false', 'delete']);
  assert.deepEqual([g.namespace, g.id, g.bundle, g.debug, g.action], ['default', 'x', '/b', false, 'delete']);
  assert.equal(parseFlags(['-namespace', 'n']).action, '');
  assert.throws(() => parseFlags(['-nope', 'x']), /flag provided but not defined: -nope/);
  assert.throws(() => parseFlags(['-id']), /flag needs an argument: -id/);
});

test('containerd-shim-keel-v2: -v prints its version; a missing namespace or unknown action is one line, exit 1', { skip: !existsSync(SHIM) && 'dist/containerd-shim-keel-v2 not built' }, () => {
  const v = spawnSync(SHIM, ['-v'], { encoding: 'utf8' });
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^containerd-shim-keel-v2:\n  Version: +\S+/);
  const noNs = spawnSync(SHIM, ['-id', 'x', 'start'], { encoding: 'utf8' });
  assert.equal(noNs.status, 1);
  assert.equal(noNs.stderr, 'containerd-shim-keel-v2: shim namespace cannot be empty\n');
  const bad = spawnSync(SHIM, ['-namespace', 'n', 'frobnicate'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /^containerd-shim-keel-v2: unknown action "frobnicate"[^\n]*\n$/);
});
