// containerd-shim-keel-v2-daemon: the shim's long-lived process, spawned by
// `containerd-shim-keel-v2 start` with the listening socket as fd 3 (`-socket` names it). It serves
// the task API over ttrpc until containerd shuts it down. A bundle of its own, so that the
// commands containerd runs for every task (start, delete) load none of it.
import { existsSync, openSync, readFileSync, rmSync, constants as fsc } from 'node:fs';
import { join } from 'node:path';
import { NAME, SOCKET_DIR, USAGE, canConnect, keelRoot, parseFlags, socketPath, type ShimFlags } from './flags.js';

/**
 * `delete` after a shim died (run by containerd-shim-keel-v2 delete): kills and deletes the
 * container, unmounts its rootfs, removes the dead shim's socket, and prints a DeleteResponse.
 */
async function cleanup(f: ShimFlags): Promise<void> {
  const bundle = f.bundle || process.cwd();
  const root = keelRoot(f.namespace);
  const runtime = await import('../runtime/index.js');
  const ctx = { root, warn: (m: string) => process.stderr.write(`${m}\n`) };
  try { await runtime.remove(ctx, f.id, { force: true }); } catch (err) { process.stderr.write(`delete container ${f.id}: ${(err as Error).message}\n`); }
  await runtime.unmountRootfs(join(bundle, 'rootfs'));
  let pid = 0;
  try { pid = Number(readFileSync(join(bundle, 'init.pid'), 'utf8')) || 0; } catch { /* never created */ }
  try {
    const path = socketPath(readFileSync(join(bundle, 'address'), 'utf8').trim());
    if (path.startsWith(`${SOCKET_DIR}/keel-`) && existsSync(path) && !(await canConnect(path))) for (const p of [path, `${path}.pid`]) rmSync(p, { force: true });
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
    if (f.socket) for (const p of [socketPath(f.socket), `${socketPath(f.socket)}.pid`]) rmSync(p, { force: true });
    await Promise.race([publisher.flush(), new Promise((r) => setTimeout(r, 2000))]);
    process.exit(code);
  };
  const service = new TaskService({ root: keelRoot(f.namespace), namespace: f.namespace, publisher, log: log.info, debug: f.debug ? log.debug : undefined, exit: () => void exit() });
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
  const service = new TaskService({ root: '/nonexistent', namespace: 'warm-up', publisher: new Publisher('', 'warm-up', () => undefined), log: () => undefined, exit: () => undefined });
  serveTtrpc(net.createServer(), service.services());
  fromBinary(api.CreateTaskRequestSchema, toBinary(api.CreateTaskRequestSchema, create(api.CreateTaskRequestSchema, { id: 'x', rootfs: [{ type: 'overlay' }] })));
}

async function main(argv: string[]): Promise<number> {
  let f: ShimFlags;
  try { f = parseFlags(argv); } catch (err) {
    process.stderr.write(`${NAME}-daemon: ${(err as Error).message}\n`);
    return 2;
  }
  if (f.help) {
    process.stdout.write(USAGE);
    // The build runs `--help` once to make the V8 code cache of this bundle: have it compile the
    // daemon's start-up code too (protobuf descriptors, the service), which every shim then reuses.
    if (process.env.KEEL_WRITE_CODE_CACHE) await warmUp();
    return 0;
  }
  try {
    if (!f.namespace) throw new Error('shim namespace cannot be empty');
    if (f.action === 'delete') { await cleanup(f); return 0; }
    await serve(f);
    return -1;
  } catch (err) {
    process.stderr.write(`${NAME}-daemon: ${(err as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => { if (code >= 0) process.exitCode = code; });
