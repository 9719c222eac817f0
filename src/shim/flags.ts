// The command line of containerd-shim-keel-v2 and its daemon, in Go's flag syntax as containerd
// writes it, and the names both agree on.
import { join } from 'node:path';
export const NAME = 'containerd-shim-keel-v2';
/** Where containerd's shims put their sockets (its default state directory). */
export const SOCKET_DIR = '/run/containerd/s';
/** The DeleteResponse a shim answered for a container's init, kept in its bundle for `delete`. */
export const DELETE_RESPONSE_FILE = 'keel-delete-response';

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
export const VERSION = typeof __KEEL_VERSION__ === 'string' ? __KEEL_VERSION__ : '0.0.0-dev';

export class UsageError extends Error {}

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

export const USAGE = `Usage: ${NAME} [flags] [start|delete]
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

export const socketPath = (address: string) => address.replace(/^unix:\/\//, '');

/** Whether something accepts connections on the unix socket `path` (within 200 ms). */
export async function canConnect(path: string): Promise<boolean> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.connect(path);
    const done = (ok: boolean) => { clearTimeout(t); s.destroy(); resolve(ok); };
    const t = setTimeout(() => done(false), 200);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

