// A client of criu's RPC service: `criu swrk FD` serves one connection on a SOCK_SEQPACKET socket
// (FD in criu), one protobuf message a packet (spec/criu/rpc.proto). A request goes out; criu
// answers with NOTIFY messages (each acknowledged before it goes on) and then the response to the
// request. This is how runc and crun drive criu; nothing parses criu's command-line output.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync, mkdirSync, renameSync, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { create, toBinary, fromBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { KeelError } from '../../util/errors.js';
import {
  criu_reqSchema, criu_respSchema, criu_notifySchema, criu_req_type, type criu_resp, type criu_notify, type criu_opts, criu_optsSchema,
} from './generated/rpc_pb.js';

export { criu_req_type, criu_cg_mode } from './generated/rpc_pb.js';
export type CriuOptsInit = MessageInitShape<typeof criu_optsSchema>;
export type { criu_opts, criu_resp, criu_notify };

/** Large enough for any response criu sends (runc uses the same size). */
const MAX_PACKET = 10 * 4096;

/** The criu binary: PATH's `criu` unless given (runc's --criu). */
export function criuBinary(given?: string): string | undefined {
  const name = given || 'criu';
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of (process.env.PATH || '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    const p = join(dir || '.', name);
    try { if (statSync(p).isFile()) return p; } catch { /* not here */ }
  }
  // Engines may run the runtime with a PATH lacking the sbin folders where criu lives.
  for (const dir of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (existsSync(join(dir, name))) return join(dir, name);
  return undefined;
}

export interface CriuCheck {
  binary: string;
  /** major*10000 + minor*100 + sublevel, as runc compares versions. */
  version: number;
  versionText: string;
}

/**
 * Whether criu can work here: the binary exists and `criu check` passes on this kernel. A pass is
 * remembered in `cacheDir` for this boot and this criu binary (the check costs ~150 ms). Throws a
 * one-line KeelError saying what is missing otherwise. `what` names the command for the message.
 */
export async function criuReady(what: string, opts: { criu?: string; cacheDir?: string } = {}): Promise<CriuCheck> {
  const binary = criuBinary(opts.criu);
  if (!binary) throw new KeelError(`${what}: criu is not installed (no ${opts.criu || 'criu'} on PATH; apt-get install criu)`);
  let key = '';
  try {
    const st = statSync(binary);
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    key = `${realpathSync(binary)} ${st.size} ${st.mtimeMs} ${boot}`;
  } catch { /* no cache */ }
  const cacheFile = opts.cacheDir ? join(opts.cacheDir, '.criu-check') : undefined;
  if (cacheFile && key) {
    try {
      const c = JSON.parse(readFileSync(cacheFile, 'utf8')) as { key: string; version: number; versionText: string };
      if (c.key === key) return { binary, version: c.version, versionText: c.versionText };
    } catch { /* none yet */ }
  }
  const r = spawnSync(binary, ['check'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new KeelError(`${what}: cannot run ${binary}: ${r.error.message}`);
  if (r.status !== 0) {
    const lines = `${r.stderr}\n${r.stdout}`.split('\n').map((l) => l.trim()).filter(Boolean);
    const first = lines.find((l) => /^Error/.test(l)) ?? lines.at(-1) ?? `exit status ${r.status}`;
    throw new KeelError(`${what}: criu cannot work on this kernel (${kernelRelease()}): \`${binary} check\` failed: ${first.replace(/^Error \([^)]*\):\s*/, '')}`);
  }
  const v = await criuVersion(binary);
  if (cacheFile && key) {
    try {
      mkdirSync(opts.cacheDir!, { recursive: true, mode: 0o711 });
      const tmp = `${cacheFile}.${process.pid}`;
      writeFileSync(tmp, JSON.stringify({ key, version: v.version, versionText: v.versionText }));
      renameSync(tmp, cacheFile);
    } catch { /* only a cache */ }
  }
  return { binary, ...v };
}

function kernelRelease(): string {
  try { return `Linux ${readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}`; } catch { return 'Linux'; }
}

/** criu's version over RPC (the VERSION request, criu 3.0+). */
export async function criuVersion(binary: string): Promise<{ version: number; versionText: string }> {
  const resp = await call(binary, { type: criu_req_type.VERSION }, {});
  const v = resp.version;
  if (!v) throw new KeelError(`criu ${binary} did not say its version`);
  const sub = v.sublevel ?? 0;
  return { version: v.majorNumber * 10000 + v.minorNumber * 100 + sub, versionText: `${v.majorNumber}.${v.minorNumber}${sub ? `.${sub}` : ''}` };
}

/** Which of `features` (mem_track, lazy_pages) criu and the kernel support (FEATURE_CHECK). */
export async function criuFeatures(binary: string, features: { memTrack?: boolean; lazyPages?: boolean }): Promise<{ memTrack: boolean; lazyPages: boolean }> {
  const resp = await call(binary, { type: criu_req_type.FEATURE_CHECK, features }, { tolerateFailure: true });
  return { memTrack: !!resp.features?.memTrack, lazyPages: !!resp.features?.lazyPages };
}

export interface CallOptions {
  /** criu's stdin, stdout, stderr (default /dev/null). In a restore they are what the restored pipes attach to. */
  stdio?: [number | 'ignore', number | 'ignore', number | 'ignore'];
  /** More descriptors for criu, from fd 4 on (namespaces given with inherit_fd). */
  extraFds?: number[];
  /** Runs once criu's process exists, before the request is sent (cgroup placement). */
  beforeSend?: (pid: number) => void | Promise<void>;
  /** Handles a NOTIFY message; `fds` are descriptors it carried (the caller closes them). A throw fails the call. */
  onNotify?: (notify: criu_notify, fds: number[]) => void | Promise<void>;
  /** Where criu's log is, for the error message. */
  log?: string;
  /** Return a failed response instead of throwing (FEATURE_CHECK). */
  tolerateFailure?: boolean;
}

/** Runs one request through a new `criu swrk` and returns criu's response to it. */
export async function call(binary: string, req: MessageInitShape<typeof criu_reqSchema>, opts: CallOptions): Promise<criu_resp> {
  const { packetSys } = await import('../sys/packet.js');
  const sys = packetSys();
  const [client, server] = sys.seqpacketPair();
  let child: ChildProcess | undefined;
  let exited: Promise<{ code: number | null; signal: string | null }> | undefined;
  try {
    const stdio = opts.stdio ?? ['ignore', 'ignore', 'ignore'];
    child = spawn(binary, ['swrk', '3'], { stdio: [stdio[0], stdio[1], stdio[2], server, ...(opts.extraFds ?? [])] });
    exited = new Promise((res) => {
      child!.on('exit', (code, signal) => res({ code, signal }));
      child!.on('error', () => res({ code: -1, signal: null }));
    });
    sys.close(server);
    if (!child.pid) throw new KeelError(`cannot run ${binary} swrk`);
    await opts.beforeSend?.(child.pid);
    const request = create(criu_reqSchema, req);
    sys.send(client, toBinary(criu_reqSchema, request));
    for (;;) {
      const packet = sys.receive(client, MAX_PACKET);
      if (!packet) {
        const st = await exited;
        throw new KeelError(`criu ${reqName(request.type)} ended without an answer (${st.signal ? `killed by ${st.signal}` : `exit status ${st.code}`})${logHint(opts.log)}`);
      }
      const resp = fromBinary(criu_respSchema, packet.data);
      try {
        if (!resp.success) {
          if (opts.tolerateFailure) return resp;
          throw new KeelError(`criu ${reqName(resp.type)} failed${resp.crErrmsg ? `: ${resp.crErrmsg}` : resp.crErrno ? ` (errno ${resp.crErrno})` : ''}${logHint(opts.log)}`);
        }
        if (resp.type === criu_req_type.NOTIFY) {
          await opts.onNotify?.(resp.notify ?? create(criu_notifySchema), packet.fds);
          sys.send(client, toBinary(criu_reqSchema, create(criu_reqSchema, { type: criu_req_type.NOTIFY, notifySuccess: true })));
          continue;
        }
      } finally {
        for (const fd of packet.fds) sys.close(fd);
      }
      return resp;
    }
  } finally {
    // criu ends when its connection closes (a PRE_DUMP criu waits for more requests until then).
    sys.close(client);
    if (exited) await exited;
  }
}

function reqName(t: criu_req_type): string {
  return (criu_req_type[t] ?? String(t)).toLowerCase().replace(/_/g, '-');
}

/** " (criu's log: PATH: last error line)" when the log names an error. */
export function logHint(log?: string): string {
  if (!log) return '';
  let text = '';
  try { text = readFileSync(log, 'utf8'); } catch { return ` (criu's log: ${log})`; }
  const errors = text.split('\n').filter((l) => /Error \(/.test(l));
  const last = errors.at(-1)?.replace(/^\([\d.]+\)\s*/, '').replace(/^[\w ]*:?\s*Error \([^)]*\):\s*/, '').trim();
  return last ? `: ${last} (criu's log: ${log})` : ` (criu's log: ${log})`;
}
