// containerd-shim-keel-v2: containerd's runtime v2 shim for keel (runtime io.containerd.keel.v2).
//
// containerd runs it with its own flags (Go's flag syntax) and an action:
//   containerd-shim-keel-v2 -namespace NS -address ADDR -publish-binary BIN -id ID [-debug] start
//     in the bundle directory: starts (or, for a container of a pod that already has one, reuses)
//     the shim daemon and prints its socket address, which containerd connects to;
//   containerd-shim-keel-v2 -namespace NS -address ADDR -publish-binary BIN -id ID -bundle DIR delete
//     after a task was deleted, or its shim died: cleans up what is left (the container, its rootfs
//     mount) and prints a DeleteResponse (protobuf) on stdout.
// The daemon is containerd-shim-keel-v2-daemon (daemon.ts), a bundle of its own: this one, which
// containerd runs for every task, loads no runtime and no protobuf code.
import { existsSync, readFileSync, writeFileSync, renameSync, rmSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { DELETE_RESPONSE_FILE, NAME, SOCKET_DIR, USAGE, VERSION, canConnect, keelRoot, parseFlags, socketPath, type ShimFlags } from './flags.js';

/** Annotations that put containers in one shim (runc's shim reads the same, in this order). */
const GROUP_LABELS = ['io.containerd.runc.v2.group', 'io.kubernetes.cri.sandbox-id'];
declare const __KEEL_COMMIT__: string | undefined;

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
    const args = [...process.execArgv, daemonScript(), '-namespace', f.namespace, '-id', f.id, '-address', f.address,
      '-publish-binary', f.publishBinary, '-socket', address, ...(f.debug ? ['-debug'] : [])];
    const child = spawn(process.execPath, args, { cwd: process.cwd(), detached: true, stdio: ['ignore', 'ignore', 'ignore', fd], env: process.env });
    await new Promise<void>((resolve, reject) => { child.once('spawn', resolve); child.once('error', reject); });
    child.unref();
    // The daemon's pid beside its socket: dist/containerd-shim-keel-v2 (src/shim/launcher.sh) finds
    // a pod's live daemon with it, without Node.js.
    writeAtomic(`${path}.pid`, String(child.pid));
    // The shim is killed before containerd when memory runs out (runc's shim: its parent's score + 1).
    try {
      const parent = Number(readFileSync(`/proc/${process.ppid}/oom_score_adj`, 'utf8'));
      writeFileSync(`/proc/${child.pid}/oom_score_adj`, String(Math.min(parent + 1, 1000)));
    } catch { /* best effort */ }
  } catch (err) {
    server.close();
    rmSync(path, { force: true });
    rmSync(`${path}.pid`, { force: true });
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

/** The daemon's bundle, next to this one (daemon.ts next to main.ts when run from source). */
function daemonScript(): string {
  const self = process.argv[1]!;
  return join(dirname(self), self.endsWith('.ts') ? 'daemon.ts' : `${NAME}-daemon`);
}

/**
 * `delete`: containerd runs it after a shim died, and also after every task a shim deleted (it
 * waits for it before it removes the bundle). In that second, common case the shim has left
 * nothing (no container in keel's state, no mount) and has written the DeleteResponse it answered
 * into the bundle: it is printed, with no runtime nor protobuf code loaded. Otherwise the daemon's
 * bundle does the real cleanup.
 */
function cleanup(f: ShimFlags, argv: string[]): number {
  const bundle = f.bundle || process.cwd();
  if (!existsSync(join(keelRoot(f.namespace), f.id)) && !mountedUnder(join(bundle, 'rootfs'))) {
    try {
      process.stdout.write(readFileSync(join(bundle, DELETE_RESPONSE_FILE)));
      return 0;
    } catch { /* not deleted by a shim: clean up */ }
  }
  const r = spawnSync(process.execPath, [...process.execArgv, daemonScript(), ...argv], { stdio: 'inherit' });
  return r.status ?? 1;
}

async function main(argv: string[]): Promise<number> {
  let f: ShimFlags;
  try { f = parseFlags(argv); } catch (err) {
    process.stderr.write(`${NAME}: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (f.help) { process.stdout.write(USAGE); return 0; }
  if (f.version) {
    process.stdout.write(`${NAME}:\n  Version:  ${VERSION}\n  Revision: ${typeof __KEEL_COMMIT__ === 'string' ? __KEEL_COMMIT__ : 'unknown'}\n  Node.js:  ${process.version}\n`);
    return 0;
  }
  try {
    if (!f.namespace) throw new Error('shim namespace cannot be empty');
    switch (f.action) {
      case 'start': await start(f); return 0;
      case 'delete': return cleanup(f, argv);
      default: throw new Error(`unknown action ${JSON.stringify(f.action)} (expected start or delete; the daemon is ${NAME}-daemon, which start spawns)`);
    }
  } catch (err) {
    process.stderr.write(`${NAME}: ${(err as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
