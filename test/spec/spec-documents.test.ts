import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkRuntimeConfig, checkRuntimeFeatures, checkRuntimeState, validateRuntimeConfig, SpecValidationError } from '../../src/spec/index.js';

const testDir = new URL('../../spec/runtime-spec/test/', import.meta.url).pathname;
const checkers = { config: checkRuntimeConfig, features: checkRuntimeFeatures, state: checkRuntimeState } as const;

function parseOrNull(text: string): unknown {
  try { return JSON.parse(text); } catch { return Symbol('invalid JSON'); }
}

for (const [kind, check] of Object.entries(checkers)) {
  for (const verdict of ['good', 'bad'] as const) {
    let names: string[] = [];
    try { names = readdirSync(join(testDir, kind, verdict)); } catch { /* no documents of this kind */ }
    for (const name of names) {
      test(`runtime-spec ${kind} test document ${verdict}/${name} is ${verdict === 'good' ? 'accepted' : 'refused'}`, () => {
        const doc = parseOrNull(readFileSync(join(testDir, kind, verdict, name), 'utf8'));
        const result = typeof doc === 'symbol' ? { ok: false as const, errors: [] } : check(doc);
        assert.equal(result.ok, verdict === 'good', JSON.stringify(result));
      });
    }
  }
}

test('a schema-invalid config names the JSON path and the rule broken', () => {
  const config = JSON.parse(readFileSync(join(testDir, 'config/good/minimal.json'), 'utf8'));
  config.process = { cwd: '/', args: 'sh' };
  assert.throws(() => validateRuntimeConfig(config), (err: unknown) => {
    assert.ok(err instanceof SpecValidationError);
    assert.match(err.message, /^config\.json: \/process\/args: must be array$/m);
    assert.deepEqual(err.problems.map((p) => p.path), ['/process/args']);
    return true;
  });
});

test('an unknown enum value is reported with the allowed values', () => {
  const r = checkRuntimeState({ ociVersion: '1.3.0', id: 'x', status: 'sleeping', bundle: '/b' });
  assert.equal(r.ok, false);
  if (!r.ok) assert.match(r.errors[0]!.message, /must be one of "creating", "created", "running", "stopped"/);
});
