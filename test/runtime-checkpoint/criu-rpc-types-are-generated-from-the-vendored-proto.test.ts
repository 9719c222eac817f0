import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { generate, criuModules, criuOutDir } from '../../scripts/gen-protos.js';
import { create, toBinary, fromBinary, isFieldSet } from '@bufbuild/protobuf';
import { criu_reqSchema, criu_req_type, criu_respSchema, criu_optsSchema } from '../../src/runtime/criu/generated/rpc_pb.js';

test('src/runtime/criu/generated is what buf and protoc-gen-es make from spec/criu/rpc.proto', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'keel-criu-protos-'));
  try {
    const files = generate(tmp, criuModules);
    assert.ok(files.has('rpc_pb.ts'));
    for (const [name, text] of files) {
      assert.equal(readFileSync(join(criuOutDir, name), 'utf8'), text, `src/runtime/criu/generated/${name} is out of date: run npm run gen:protos`);
    }
    assert.equal(readdirSync(criuOutDir, { recursive: true }).length, files.size, 'src/runtime/criu/generated holds files the generator no longer makes');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('criu requests encode as criu reads them: proto2 fields set are sent, unset ones are not', () => {
  // A DUMP request with images_dir_fd 5, pid 42, leave_running, an external mount and a cgroup root.
  const req = create(criu_reqSchema, {
    type: criu_req_type.DUMP,
    opts: { imagesDirFd: 5, pid: 42, leaveRunning: true, extMnt: [{ key: '/data', val: '/data' }], cgRoot: [{ ctrl: '', path: '/c' }] },
  });
  const bytes = Buffer.from(toBinary(criu_reqSchema, req));
  // field 1 (type) varint 1, then field 2 (opts) length-delimited holding images_dir_fd 5, pid 42, leave_running.
  assert.equal(bytes.subarray(0, 3).toString('hex'), '080112');
  const opts = bytes.subarray(4, 4 + bytes[3]!);
  for (const field of ['0805', '102a', '1801']) assert.ok(opts.includes(Buffer.from(field, 'hex')), field);
  const back = fromBinary(criu_reqSchema, bytes);
  assert.equal(back.opts?.pid, 42);
  assert.deepEqual(back.opts?.extMnt.map((m) => [m.key, m.val]), [['/data', '/data']]);
  // log_level (default 2) was not set: not on the wire, so criu's own default applies.
  assert.equal(isFieldSet(back.opts!, criu_optsSchema.field.logLevel), false);
  // A response as criu sends it: type NOTIFY, success, notify { script "post-restore", pid 7 }.
  const resp = fromBinary(criu_respSchema, Buffer.from('080610012a0e0a0c706f73742d726573746f7265', 'hex'));
  assert.equal(resp.type, criu_req_type.NOTIFY);
  assert.equal(resp.notify?.script, 'post-restore');
});
