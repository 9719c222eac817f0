// ttrpc, containerd's RPC protocol for shims (spec/ttrpc/PROTOCOL.md): over a stream socket, each
// message is a 10-byte header (payload length uint32 BE, stream id uint32 BE, type uint8: 1 request,
// 2 response, 3 data; flags uint8) and a protobuf payload, ttrpc.Request {service, method, payload,
// timeout_nano, metadata} or ttrpc.Response {status, payload}. Clients open odd stream ids. Only
// unary calls are served and made, which is all the task and events services use.
import type { Socket, Server } from 'node:net';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { RequestSchema, ResponseSchema, type Request } from './generated/request_pb.js';
import { StatusSchema } from './generated/google/rpc/status_pb.js';
import { Code } from './generated/google/rpc/code_pb.js';

export { Code };

export const HEADER_LENGTH = 10;
/** ttrpc's limit on one message (messageLengthMax in its Go implementation). */
export const MESSAGE_LENGTH_MAX = 4 << 20;
export const TYPE_REQUEST = 1;
export const TYPE_RESPONSE = 2;

/** An error answered with a gRPC status code (containerd maps NotFound, AlreadyExists ... to its errdefs). */
export class TtrpcError extends Error {
  constructor(readonly code: Code, message: string) { super(message); }
}

export function frame(streamId: number, type: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LENGTH + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt32BE(streamId, 4);
  out.writeUInt8(type, 8);
  out.writeUInt8(0, 9);
  out.set(payload, HEADER_LENGTH);
  return out;
}

export interface Frame { streamId: number; type: number; flags: number; payload: Buffer; tooLong?: number }

/**
 * Splits a byte stream into frames. A frame longer than MESSAGE_LENGTH_MAX is skipped (its bytes
 * are discarded as they come) and reported with `tooLong`, so the connection stays usable.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  private skip = 0;

  push(chunk: Buffer, onFrame: (f: Frame) => void): void {
    if (this.skip) {
      const n = Math.min(this.skip, chunk.length);
      this.skip -= n;
      chunk = chunk.subarray(n);
    }
    if (chunk.length) { this.chunks.push(chunk); this.size += chunk.length; }
    while (this.size >= HEADER_LENGTH) {
      const head = this.take(HEADER_LENGTH, false);
      const length = head.readUInt32BE(0);
      const streamId = head.readUInt32BE(4), type = head.readUInt8(8), flags = head.readUInt8(9);
      if (length > MESSAGE_LENGTH_MAX) {
        this.take(HEADER_LENGTH, true);
        const n = Math.min(length, this.size);
        this.take(n, true);
        this.skip = length - n;
        onFrame({ streamId, type, flags, payload: Buffer.alloc(0), tooLong: length });
        continue;
      }
      if (this.size < HEADER_LENGTH + length) return;
      this.take(HEADER_LENGTH, true);
      onFrame({ streamId, type, flags, payload: this.take(length, true) });
    }
  }

  private take(n: number, consume: boolean): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    const out = all.subarray(0, n);
    if (consume) {
      const rest = all.subarray(n);
      this.chunks = rest.length ? [rest] : [];
      this.size = rest.length;
    } else {
      this.chunks = [all];
    }
    return consume ? Buffer.from(out) : out;
  }
}

export interface CallContext {
  metadata: Map<string, string[]>;
  /** The deadline the client set (ms since the epoch), if any. */
  deadline?: number;
}

/** A method: request payload in, response payload out (or a TtrpcError). */
export type Method = (payload: Uint8Array, ctx: CallContext) => Promise<Uint8Array> | Uint8Array;
export type Services = Map<string, Map<string, Method>>;

function responseFrame(streamId: number, payload: Uint8Array, code: Code = Code.OK, message = ''): Buffer {
  const res = create(ResponseSchema, code === Code.OK ? { payload } : { status: create(StatusSchema, { code, message }) });
  return frame(streamId, TYPE_RESPONSE, toBinary(ResponseSchema, res));
}

/**
 * Serves `services` on every connection `server` accepts. A request that cannot be decoded, names
 * no known method, or fails answers an error status on its stream; the connection keeps serving.
 */
export function serveTtrpc(server: Server, services: Services, log: (msg: string) => void = () => undefined): void {
  server.on('connection', (sock: Socket) => {
    const reader = new FrameReader();
    sock.on('error', (err) => log(`ttrpc connection: ${err.message}`));
    const reply = (buf: Buffer) => { if (!sock.destroyed) sock.write(buf); };
    sock.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk, (f) => {
          if (f.tooLong !== undefined) {
            reply(responseFrame(f.streamId, new Uint8Array(), Code.RESOURCE_EXHAUSTED, `message length ${f.tooLong} exceeds maximum message size of ${MESSAGE_LENGTH_MAX}`));
            return;
          }
          if (f.type !== TYPE_REQUEST) return; // data frames: no streaming methods here
          void handle(f, services, log).then(reply);
        });
      } catch (err) {
        log(`ttrpc: ${(err as Error).message}`);
        sock.destroy();
      }
    });
  });
}

async function handle(f: Frame, services: Services, log: (msg: string) => void): Promise<Buffer> {
  let req: Request;
  try {
    req = fromBinary(RequestSchema, f.payload);
  } catch (err) {
    return responseFrame(f.streamId, new Uint8Array(), Code.INVALID_ARGUMENT, `ttrpc: cannot decode the request: ${(err as Error).message}`);
  }
  const method = services.get(req.service)?.get(req.method);
  if (!method) {
    const what = services.has(req.service) ? `method ${req.method}` : `service ${req.service}`;
    return responseFrame(f.streamId, new Uint8Array(), Code.UNIMPLEMENTED, `${what} is not implemented`);
  }
  const metadata = new Map<string, string[]>();
  for (const kv of req.metadata) metadata.set(kv.key, [...(metadata.get(kv.key) ?? []), kv.value]);
  const ctx: CallContext = { metadata };
  if (req.timeoutNano > 0n) ctx.deadline = Date.now() + Number(req.timeoutNano / 1_000_000n);
  try {
    return responseFrame(f.streamId, await method(req.payload, ctx));
  } catch (err) {
    if (err instanceof TtrpcError) return responseFrame(f.streamId, new Uint8Array(), err.code, err.message);
    const message = (err as Error)?.message ?? String(err);
    log(`${req.service}/${req.method}: ${message}`);
    // A protobuf that does not decode is the caller's mistake.
    const code = /premature EOF|invalid wire type|cannot (read|decode)|illegal tag/i.test(message) ? Code.INVALID_ARGUMENT : Code.UNKNOWN;
    return responseFrame(f.streamId, new Uint8Array(), code, message);
  }
}

/** A ttrpc client on one connection: unary calls, answered in any order. */
export class TtrpcClient {
  private next = 1;
  private pending = new Map<number, { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>();
  private reader = new FrameReader();
  private closedError: Error | undefined;

  constructor(private readonly sock: Socket) {
    sock.on('data', (chunk: Buffer) => this.reader.push(chunk, (f) => this.onFrame(f)));
    const fail = (err?: Error) => {
      this.closedError = err ?? new Error('ttrpc: connection closed');
      for (const p of this.pending.values()) p.reject(this.closedError);
      this.pending.clear();
    };
    sock.on('error', fail);
    sock.on('close', () => fail());
  }

  private onFrame(f: Frame): void {
    if (f.type !== TYPE_RESPONSE) return;
    const p = this.pending.get(f.streamId);
    if (!p) return;
    this.pending.delete(f.streamId);
    try {
      const res = fromBinary(ResponseSchema, f.payload);
      if (res.status && res.status.code !== Code.OK) p.reject(new TtrpcError(res.status.code, res.status.message));
      else p.resolve(res.payload);
    } catch (err) { p.reject(err as Error); }
  }

  call(service: string, method: string, payload: Uint8Array, metadata: Record<string, string> = {}, timeoutMs = 0): Promise<Uint8Array> {
    if (this.closedError) return Promise.reject(this.closedError);
    const streamId = this.next;
    this.next += 2;
    const req = create(RequestSchema, {
      service, method, payload, timeoutNano: BigInt(timeoutMs) * 1_000_000n,
      metadata: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    });
    return new Promise((resolve, reject) => {
      this.pending.set(streamId, { resolve, reject });
      this.sock.write(frame(streamId, TYPE_REQUEST, toBinary(RequestSchema, req)));
    });
  }

  close(): void { this.sock.destroy(); }
}
