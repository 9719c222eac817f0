// Builds without root: `keel-build build` run by an unprivileged user starts itself again in a user
// namespace (and a mount namespace of its own) where it is root: uid and gid 0 are the user's own,
// 1..N its subordinate ids of /etc/subuid and /etc/subgid, mapped by the setuid helpers newuidmap
// and newgidmap (through util-linux's `unshare --map-auto --map-root-user`), as podman and buildah
// do. There the store is the user's ($XDG_DATA_HOME/keel), overlay mounts are the user
// namespace's, and RUN containers are made in it like any other.
import * as fs from 'node:fs';
import { userInfo } from 'node:os';
import { spawn, spawnSync } from 'node:child_process';
import { KeelError } from '../util/errors.js';

/** Set in the environment of the keel-build started in the user namespace. */
export const ROOTLESS_ENV = 'KEEL_BUILD_ROOTLESS';

/** Whether this process is the rootless builder (in its user namespace). */
export function isRootlessChild(): boolean {
  return process.env[ROOTLESS_ENV] === '1';
}

/** The first range of subordinate ids a user has in /etc/subuid or /etc/subgid, or undefined. */
export function subordinateIds(file: string, user: string, id: number): { start: number; count: number } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if ((who === user || who === String(id)) && Number(count) > 0) return { start: Number(start), count: Number(count) };
  }
  return undefined;
}

/**
 * Runs this command again in a user namespace where this user is root; resolves to its exit status.
 * Throws a one-line KeelError when the user has no subordinate ids or the helpers are missing.
 */
export async function runInUserNamespace(args: string[]): Promise<number> {
  const me = userInfo();
  const uid = process.getuid!();
  const gid = process.getgid!();
  const name = me.username;
  if (!subordinateIds('/etc/subuid', name, uid)) {
    throw new KeelError(`rootless build: user ${name} has no subordinate user ids in /etc/subuid (add a range, e.g. as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${name})`);
  }
  if (!subordinateIds('/etc/subgid', name, gid) && !subordinateIds('/etc/subgid', name, uid)) {
    throw new KeelError(`rootless build: user ${name} has no subordinate group ids in /etc/subgid (add a range, e.g. as root: usermod --add-subgids 100000-165535 ${name})`);
  }
  for (const helper of ['newuidmap', 'newgidmap']) {
    if (spawnSync('sh', ['-c', `command -v ${helper}`], { stdio: 'ignore' }).status !== 0) {
      throw new KeelError(`rootless build: ${helper} is not installed (Debian's uidmap package)`);
    }
  }
  const help = spawnSync('unshare', ['--help'], { encoding: 'utf8' });
  if (!/--map-auto/.test(help.stdout ?? '')) throw new KeelError('rootless build: unshare (util-linux 2.38 or later) with --map-auto is needed');
  const env: NodeJS.ProcessEnv = { ...process.env, [ROOTLESS_ENV]: '1' };
  // The user's own store, named before HOME and the uid look different inside.
  env.XDG_DATA_HOME ||= `${me.homedir}/.local/share`;
  const argv = ['--map-auto', '--map-root-user', '--mount', '--propagation', 'private', '--', process.execPath, ...process.execArgv, process.argv[1]!, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', argv, { stdio: 'inherit', env });
    child.on('error', (err) => reject(new KeelError(`rootless build: cannot start unshare: ${err.message}`)));
    const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    child.on('close', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15));
    });
  });
}
