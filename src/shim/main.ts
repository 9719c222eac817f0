// containerd-shim-keel-v2: containerd's runtime v2 shim for keel (runtime io.containerd.keel.v2).
//
// containerd runs it with its own flags (Go's flag syntax) and an action:
//   containerd-shim-keel-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
//     in the bundle directory: starts (or, for a container of a pod that already has one, reuses)
//     the shim daemon and prints its socket address, which containerd connects to;
//   containerd-shim-keel-v2 -namespace NS -address ADDR -publish-binary BIN -id ID -bundle DIR delete
//     cleans up after a shim that died: kills and deletes the container, unmounts its rootfs, and
//     prints a DeleteResponse (protobuf) on stdout;
//   without an action it is the daemon: it serves the task API over ttrpc on the socket it got as
//     fd 3 (`-socket` names it) until containerd shuts it down.
//
// Start-up matters for `start` (once per container, in the path of `ctr run`): it loads no
// protobuf code and no runtime, only what it needs to find or spawn the daemon.
import { existsSync, readFileSync, writeFileSync, renameSync, rmSync, mkdirSync, openSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';

const NAME = 'containerd-shim-keel-v2';
/** Annotations that put containers in one shim (runc's shim reads the same, in this order). */
const GROUP_LABELS = ['io.containerd.runc.v2.group', 'io.kubernetes.cri.sandbox-id'];
/** Where containerd's shims put their sockets (its default state directory). */
const SOCKET_DIR = '/run/containerd/s';

export interface ShimFlags {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  socket: string;
  debug: boolean;
  version: boolean;
  help: boolean;
  action: string;
}

declare const __KEEL_VERSION__: string | undefined;
declare const __KEEL_COMMIT__: string | undefined;
const VERSION = typeof __KEEL_VERSION__ === 'string' ? __KEEL_VERSION__ : '0.0.0-dev';

class UsageError extends Error {}

/** Parses flags as Go's flag package does: -name value, -name=value, --name; bools alone; stops at the first argument. */
export function parseFlags(argv: string[]): ShimFlags {
  const f: ShimFlags = { namespace: '', address: '', publishBinary: 'containerd', id: '', bundle: '', socket: '', debug: false, version: false, help: false, action: '' };
  const strings: Record<string, keyof ShimFlags> = { namespace: 'namespace', address: 'address', 'publish-binary': 'publishBinary', id: 'id', bundle: 'bundle', socket: 'socket' };
  const bools: Record<string, keyof ShimFlags> = { debug: 'debug', v: 'version', h: 'help', help: 'help' };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') { i++; break; }
    if (!arg.startsWith('-') || arg === '-') break;
    const body = arg.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq < 0 ? body : body.slice(0, eq);
    if (name in bools) {
      const v = eq < 0 ? 'true' : body.slice(eq + 1);
      if (!/^(true|false|1|0|t|f)$/i.test(v)) throw new UsageError(`invalid boolean value ${JSON.stringify(v)} for -${name}`);
      (f as unknown as Record<string, unknown>)[bools[name]!] = /^(true|1|t)$/i.test(v);
    } else if (name in strings) {
      let v: string;
      if (eq >= 0) v = body.slice(eq + 1);
      else {
        if (i + 1 >= argv.length) throw new UsageError(`flag needs an argument: -${name}`);
        v = argv[++i]!;
      }
      (f as unknown as Record<string, unknown>)[strings[name]!] = v;
    } else {
      throw new UsageError(`flag provided but not defined: -${name}`);
    }
  }
  f.action = argv[i] ?? '';
  return f;
}

const USAGE = `Usage: ${NAME} [flags] [start|delete]
containerd's runtime v2 shim for keel (runtime name io.containerd.keel.v2); containerd runs it.
  -namespace NS        namespace that owns the shim
  -id ID               id of the task
  -address ADDR        containerd's gRPC address
  -publish-binary BIN  containerd's binary (events go over ttrpc to TTRPC_ADDRESS)
  -bundle DIR          the bundle when it is not the working directory (delete)
  -socket ADDR         the socket the daemon serves (given as fd 3)
  -debug               log debug messages too
  -v                   print the version
`;

/** keel's state directory for the containers of a containerd namespace (runc's shim: /run/containerd/runc/NS). */
export function keelRoot(namespace: string): string {
  return join('/run/containerd/keel', namespace);
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

/** The address of the shim that serves `grouping` (a container id or a pod's sandbox id). */
async function socketAddress(f: ShimFlags, grouping: string): Promise<string> {
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256').update(join(f.address, f.namespace, grouping)).digest('hex');
  return `unix://${SOCKET_DIR}/keel-${hash}`;
}

const socketPath = (address: string) => address.replace(/^unix:\/\//, '');

async function canConnect(path: string): Promise<boolean> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.connect(path);
    const done = (ok: boolean) => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), 200);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Listens on a new socket at `path` (mode 0600), or returns undefined when one is there already
 * and answers. The socket is bound at a temporary name and linked to `path`: link() fails when
 * `path` exists, so two starts never both take it, and Node's unlinking of a listening socket's
 * path when the process exits removes only the temporary name.
 */
async function claimSocket(path: string): Promise<import('node:net').Server | undefined> {
  const net = await import('node:net');
  const { linkSync, unlinkSync } = await import('node:fs');
  const tmp = `${path}.${process.pid}`;
  const server = net.createServer();
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(tmp, () => { server.off('error', reject); resolve(); });
    });
  } finally { process.umask(old); }
  for (let attempt = 0; ; attempt++) {
    try {
      linkSync(tmp, path);
      unlinkSync(tmp);
      return server;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) { server.close(); throw err; }
    }
    if (await canConnect(path)) { server.close(); return undefined; }
    rmSync(path, { force: true }); // a stale socket: its shim is gone
  }
}

/** `start`: spawn the daemon on a new socket, or reuse the pod's; print the address. */
async function start(f: ShimFlags): Promise<void> {
  let grouping = f.id;
  try {
    const spec = JSON.parse(readFileSync('config.json', 'utf8')) as { annotations?: Record<string, string> };
    for (const label of GROUP_LABELS) {
      const g = spec.annotations?.[label];
      if (g) { grouping = g; break; }
    }
  } catch (err) {
    throw new Error(`read config.json of bundle ${process.cwd()}: ${(err as Error).message}`);
  }
  const address = await socketAddress(f, grouping);
  const path = socketPath(address);
  mkdirSync(SOCKET_DIR, { recursive: true, mode: 0o700 });
  let server: import('node:net').Server | undefined;
  try {
    server = await claimSocket(path);
  } catch (err) {
    throw new Error(`create the shim socket ${path}: ${(err as Error).message}`);
  }
  if (!server) {
    // Another container of the pod: its shim serves this one too.
    writeAtomic('address', address);
    process.stdout.write(address);
    return;
  }
  try {
    writeAtomic('address', address);
    const { spawn } = await import('node:child_process');
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    const args = [...process.execArgv, process.argv[1]!, '-namespace', f.namespace, '-id', f.id, '-address', f.address,
      '-publish-binary', f.publishBinary, '-socket', address, ...(f.debug ? ['-debug'] : [])];
    const child = spawn(process.execPath, args, { cwd: process.cwd(), detached: true, stdio: ['ignore', 'ignore', 'ignore', fd], env: process.env });
    await new Promise<void>((resolve, reject) => { child.once('spawn', resolve); child.once('error', reject); });
    child.unref();
    // The shim is killed before containerd when memory runs out (runc's shim: its parent's score + 1).
    try {
      const parent = Number(readFileSync(`/proc/${process.ppid}/oom_score_adj`, 'utf8'));
      writeFileSync(`/proc/${child.pid}/oom_score_adj`, String(Math.min(parent + 1, 1000)));
    } catch { /* best effort */ }
  } catch (err) {
    server.close();
    rmSync(path, { force: true });
    throw err;
  }
  server.close();
  process.stdout.write(address);
}

/** Whether anything is mounted at or under `dir` (from /proc/self/mountinfo). */
function mountedUnder(dir: string): boolean {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point && (point === dir || point.startsWith(`${dir}/`))) return true;
  }
  return false;
}

/**
 * `delete`: containerd cleans up after a shim that is gone, and also after every task the shim
 * deleted itself (it waits for this command before it removes the bundle), so when the shim left
 * nothing behind (no container in keel's state, no mount) the runtime is not even loaded.
 */
async function cleanup(f: ShimFlags): Promise<void> {
  const bundle = f.bundle || process.cwd();
  const root = keelRoot(f.namespace);
  const rootfs = join(bundle, 'rootfs');
  if (existsSync(join(root, f.id)) || mountedUnder(rootfs)) {
    const runtime = await import('../runtime/index.js');
    const ctx = { root, warn: (m: string) => process.stderr.write(`${m}\n`) };
    try { await runtime.remove(ctx, f.id, { force: true }); } catch (err) { process.stderr.write(`delete container ${f.id}: ${(err as Error).message}\n`); }
    await runtime.unmountRootfs(rootfs);
  }
  let pid = 0;
  try { pid = Number(readFileSync(join(bundle, 'init.pid'), 'utf8')) || 0; } catch { /* never created */ }
  try {
    const path = socketPath(readFileSync(join(bundle, 'address'), 'utf8').trim());
    if (path.startsWith(`${SOCKET_DIR}/keel-`) && existsSync(path) && !(await canConnect(path))) rmSync(path, { force: true });
  } catch { /* no address */ }
  const [{ create, toBinary }, { timestampNow }, { DeleteResponseSchema }] = await Promise.all([
    import('@bufbuild/protobuf'), import('@bufbuild/protobuf/wkt'), import('./generated/runtime/task/v2/shim_pb.js'),
  ]);
  process.stdout.write(toBinary(DeleteResponseSchema, create(DeleteResponseSchema, { pid, exitStatus: 128 + 9, exitedAt: timestampNow() })));
}

/** A logger writing logrus-style lines to the bundle's `log` fifo, which containerd copies to its own log. */
async function openLog(debug: boolean): Promise<{ info: (m: string) => void; debug: (m: string) => void }> {
  let write: (line: string) => void = () => undefined;
  try {
    const fd = openSync('log', fsc.O_WRONLY | fsc.O_NONBLOCK);
    const { Socket } = await import('node:net');
    const s = new Socket({ fd, readable: false, writable: true });
    s.on('error', () => { write = () => undefined; });
    s.unref();
    write = (line) => s.write(line);
  } catch { /* no log fifo: containerd is not reading one */ }
  const line = (level: string, m: string) => write(`time="${new Date().toISOString()}" level=${level} msg=${JSON.stringify(m)} runtime=io.containerd.keel.v2 pid=${process.pid}\n`);
  return { info: (m) => line('info', m), debug: debug ? (m) => line('debug', m) : () => undefined };
}

/** The daemon: serves the task API on fd 3 until Shutdown. */
async function serve(f: ShimFlags): Promise<void> {
  const [net, { TaskService }, { Publisher }, { serveTtrpc }] = await Promise.all([
    import('node:net'), import('./service.js'), import('./events.js'), import('./ttrpc.js'),
  ]);
  const log = await openLog(f.debug);
  const publisher = new Publisher(process.env.TTRPC_ADDRESS ?? '', f.namespace, log.info);
  const server = net.createServer();
  let exiting = false;
  const exit = async (code = 0) => {
    if (exiting) return;
    exiting = true;
    server.close();
    if (f.socket) rmSync(socketPath(f.socket), { force: true });
    await Promise.race([publisher.flush(), new Promise((r) => setTimeout(r, 2000))]);
    process.exit(code);
  };
  const service = new TaskService({ root: keelRoot(f.namespace), publisher, log: log.info, debug: f.debug ? log.debug : undefined, exit: () => void exit() });
  log.debug(`ready ${(performance.now()).toFixed(1)} ms after the process started`);
  serveTtrpc(server, service.services(), log.info);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ fd: 3 }, resolve);
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => void exit(0));
  // A write to a fifo or socket whose reader went away must not end the shim.
  process.on('SIGPIPE', () => undefined);
  log.debug(`serving ${f.socket || 'fd 3'} for ${f.namespace}/${f.id}`);
}

/** Runs the daemon's start-up code and a request's decoding and encoding, without serving. */
async function warmUp(): Promise<void> {
  const [{ TaskService }, { Publisher }, { serveTtrpc }, { create, toBinary, fromBinary }, api, net] = await Promise.all([
    import('./service.js'), import('./events.js'), import('./ttrpc.js'), import('@bufbuild/protobuf'), import('./generated/runtime/task/v2/shim_pb.js'), import('node:net'),
  ]);
  const service = new TaskService({ root: '/nonexistent', publisher: new Publisher('', 'warm-up', () => undefined), log: () => undefined, exit: () => undefined });
  serveTtrpc(net.createServer(), service.services());
  fromBinary(api.CreateTaskRequestSchema, toBinary(api.CreateTaskRequestSchema, create(api.CreateTaskRequestSchema, { id: 'x', rootfs: [{ type: 'overlay' }] })));
}

async function main(argv: string[]): Promise<number> {
  let f: ShimFlags;
  try { f = parseFlags(argv); } catch (err) {
    process.stderr.write(`${NAME}: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (f.help) {
    process.stdout.write(USAGE);
    // The build runs `--help` once to make the V8 code cache of the bundle: have it compile the
    // daemon's code too (protobuf descriptors, the service), which every shim start then reuses.
    if (process.env.KEEL_WRITE_CODE_CACHE) await warmUp();
    return 0;
  }
  if (f.version) {
    process.stdout.write(`${NAME}:\n  Version:  ${VERSION}\n  Revision: ${typeof __KEEL_COMMIT__ === 'string' ? __KEEL_COMMIT__ : 'unknown'}\n  Node.js:  ${process.version}\n`);
    return 0;
  }
  try {
    if (!f.namespace) throw new Error('shim namespace cannot be empty');
    switch (f.action) {
      case 'start': await start(f); return 0;
      case 'delete': await cleanup(f); return 0;
      case '': await serve(f); return -1;
      default: throw new Error(`unknown action ${JSON.stringify(f.action)} (expected start or delete)`);
    }
  } catch (err) {
    process.stderr.write(`${NAME}: ${(err as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => { if (code >= 0) process.exitCode = code; });
