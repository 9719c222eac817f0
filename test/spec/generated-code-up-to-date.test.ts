import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { generate } from '../../scripts/gen-types.js';

test('generated types and validators match what scripts/gen-types.ts produces from spec/', async () => {
  const files = await generate();
  assert.ok(files.size >= 16);
  for (const [name, content] of files) {
    const path = new URL(`../../src/spec/generated/${name}`, import.meta.url);
    assert.equal(readFileSync(path, 'utf8'), content, `src/spec/generated/${name} is out of date: run npm run gen:types`);
  }
});
