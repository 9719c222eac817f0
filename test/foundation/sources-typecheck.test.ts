import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { root } from './cli.js';

test('every TypeScript source (src, test, conformance, scripts, bench) type-checks under tsconfig.json', () => {
  const r = spawnSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, '-p', root, '--noEmit'], { cwd: root, encoding: 'utf8' });
  const errors = (r.stdout + r.stderr).split('\n').filter((l) => /error TS\d+/.test(l));
  assert.deepEqual(errors, [], `${errors.length} type errors:\n${errors.slice(0, 30).join('\n')}`);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
