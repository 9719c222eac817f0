// ttrpc framing (spec/ttrpc/PROTOCOL.md) and the server and client on a real unix socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { create, toBinary, fromBinary } from '@bufbuild/protobuf';
import { FrameReader, frame, serveTtrpc, TtrpcClient, TtrpcError, Code, MESSAGE_LENGTH_MAX, TYPE_REQUEST, TYPE_RESPONSE, type Frame } from '../../src/shim/ttrpc.js';
import { RequestSchema, ResponseSchema } from '../../src/shim/generated/request_pb.js';

test('a frame is a 10-byte header (length, stream id big-endian, type, flags) and its payload', () => {
  const f = frame(7, TYPE_RESPONSE, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...f], [0, 0, 0, 3, 0, 0, 0, 7, 2, 0, 1, 2, 3]);
});

test('frames are read back whatever the chunking, and an overlong one is skipped and reported', () => {
  const payload = toBinary(RequestSchema, create(RequestSchema, { service: 's', method: 'm', payload: new Uint8Array([9]) }));
  const stream = Buffer.concat([frame(1, TYPE_REQUEST, payload), frame(3, TYPE_REQUEST, new Uint8Array()), frame(5, TYPE_REQUEST, payload)]);
  for (const size of [1, 3, 10, 11, stream.length]) {
    const got: Frame[] = [];
    const r = new FrameReader();
    for (let i = 0; i < stream.length; i += size) r.push(stream.subarray(i, i + size), (f) => got.push(f));
    assert.deepEqual(got.map((f) => f.streamId), [1, 3, 5]);
    assert.equal(fromBinary(RequestSchema, got[2]!.payload).method, 'm');
    assert.equal(got[1]!.payload.length, 0);
  }
  const big = Buffer.alloc(10);
  big.writeUInt32BE(MESSAGE_LENGTH_MAX + 1, 0);
  big.writeUInt32BE(9, 4);
  big.writeUInt8(TYPE_REQUEST, 8);
  const got: Frame[] = [];
  const r = new FrameReader();
  r.push(big, (f) => got.push(f));
  r.push(Buffer.alloc(MESSAGE_LENGTH_MAX + 1), (f) => got.push(f));
  r.push(frame(11, TYPE_REQUEST, payload), (f) => got.push(f));
  assert.deepEqual(got.map((f) => [f.streamId, f.tooLong]), [[9, MESSAGE_LENGTH_MAX + 1], [11, undefined]]);
});

test('server and client: concurrent calls, error statuses, unknown methods, a connection that survives a bad request', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'keel-ttrpc-'));
  const server = createServer();
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  serveTtrpc(server, new Map([['svc', new Map([
    ['Echo', async (p: Uint8Array) => p],
    ['Slow', async (p: Uint8Array) => { await gate; return p; }],
    ['Missing', async () => { throw new TtrpcError(Code.NOT_FOUND, 'no such thing'); }],
    ['Broken', async () => { throw new Error('boom'); }],
  ])]]));
  try {
    const path = join(dir, 's.sock');
    await new Promise<void>((r) => server.listen(path, r));
    const sock = connect(path);
    await new Promise((r) => sock.once('connect', r));
    const c = new TtrpcClient(sock);
    const slow = c.call('svc', 'Slow', new Uint8Array([1]));
    assert.deepEqual([...await c.call('svc', 'Echo', new Uint8Array([2, 3]))], [2, 3], 'answered while an earlier call waits');
    release();
    assert.deepEqual([...await slow], [1]);
    await assert.rejects(c.call('svc', 'Missing', new Uint8Array()), (e: TtrpcError) => e.code === Code.NOT_FOUND && e.message === 'no such thing');
    await assert.rejects(c.call('svc', 'Broken', new Uint8Array()), (e: TtrpcError) => e.code === Code.UNKNOWN && /boom/.test(e.message));
    await assert.rejects(c.call('svc', 'Nope', new Uint8Array()), (e: TtrpcError) => e.code === Code.UNIMPLEMENTED);
    await assert.rejects(c.call('other', 'Echo', new Uint8Array()), (e: TtrpcError) => e.code === Code.UNIMPLEMENTED);
    // A request frame that is no ttrpc.Request: an error on its stream, then the connection goes on.
    const raw = connect(path);
    await new Promise((r) => raw.once('connect', r));
    const answer = new Promise<Frame>((resolve) => { const rd = new FrameReader(); raw.on('data', (b) => rd.push(b, resolve)); });
    raw.write(frame(41, TYPE_REQUEST, Buffer.from([0x0a, 0xff, 0x01])));
    const f = await answer;
    assert.equal(f.streamId, 41);
    assert.equal(fromBinary(ResponseSchema, f.payload).status?.code, Code.INVALID_ARGUMENT);
    raw.destroy();
    assert.deepEqual([...await c.call('svc', 'Echo', new Uint8Array([4]))], [4]);
    c.close();
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
