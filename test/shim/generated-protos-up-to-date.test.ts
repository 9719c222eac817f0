import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { generate, outDir } from '../../scripts/gen-protos.js';

test('src/shim/generated is what buf and protoc-gen-es make from the vendored .proto files', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'keel-protos-'));
  try {
    const files = generate(tmp);
    assert.ok(files.has('runtime/task/v2/shim_pb.ts') && files.has('request_pb.ts') && files.has('cgroup1/stats/metrics_pb.ts'));
    for (const [name, text] of files) {
      assert.equal(readFileSync(join(outDir, name), 'utf8'), text, `src/shim/generated/${name} is out of date: run npm run gen:protos`);
    }
    const committed = readdirSync(outDir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).length;
    assert.equal(committed, files.size, 'src/shim/generated holds files the generator no longer makes: run npm run gen:protos');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
