// `RUN --mount=type=ssh` and `--ssh ID[=SOCKET|KEY[,...]]`, as BuildKit gives them: the step sees an
// ssh-agent socket (at /run/buildkit/ssh_agent.N, or target=) owned by uid/gid with mode (default
// 0:0, 0600), and SSH_AUTH_SOCK names the first one. The socket is a proxy made by the builder for
// the step: every connection is forwarded to the agent given for the id (`--ssh default` is the
// builder's $SSH_AUTH_SOCK). Key files given instead of a socket are loaded into an ssh-agent the
// builder starts for the build (ssh-add; keys with a passphrase cannot be used, as with BuildKit).
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import type { Server, Socket } from 'node:net';
import { KeelError } from '../util/errors.js';

/** `--ssh` values: id → agent sockets or key files (empty: the builder's $SSH_AUTH_SOCK). */
export type SshSources = Record<string, string[]>;

/** `default`, `default=/path/agent.sock`, `deploy=/keys/a.pem,/keys/b.pem` → { id: paths }. */
export function parseSshOption(value: string): [string, string[]] {
  const i = value.indexOf('=');
  const id = i < 0 ? value : value.slice(0, i);
  if (!/^[\w.-]+$/.test(id)) throw new KeelError(`--ssh ${JSON.stringify(value)}: expected ID[=SOCKET|KEY[,KEY...]]`);
  return [id, i < 0 ? [] : value.slice(i + 1).split(',').filter(Boolean)];
}

/** The agents of one build: the sockets given, or agents started for key files; stopped by close(). */
export class SshAgents {
  private readonly sockets = new Map<string, string>();
  private readonly agents: ChildProcess[] = [];

  constructor(private readonly sources: SshSources, private readonly workDir: string) {}

  has(id: string): boolean {
    return id in this.sources;
  }

  /** The agent socket for an id (an agent is started for key files the first time). */
  async socket(id: string): Promise<string> {
    const known = this.sockets.get(id);
    if (known) return known;
    const paths = this.sources[id] ?? [];
    let sock: string;
    if (paths.length === 0) {
      const env = process.env.SSH_AUTH_SOCK;
      if (!env) throw new KeelError(`--ssh ${id}: SSH_AUTH_SOCK is not set (start ssh-agent, or give --ssh ${id}=SOCKET)`);
      sock = env;
    } else if (paths.length === 1 && isSocket(paths[0]!)) {
      sock = paths[0]!;
    } else {
      sock = await this.startAgent(id, paths);
    }
    this.sockets.set(id, sock);
    return sock;
  }

  private async startAgent(id: string, keys: string[]): Promise<string> {
    for (const k of keys) {
      if (isSocket(k)) throw new KeelError(`--ssh ${id}: ${k} is a socket: give one agent socket, or key files`);
      if (!fs.existsSync(k)) throw new KeelError(`--ssh ${id}: ${k}: no such file`);
    }
    const dir = join(this.workDir, `ssh-agent-${this.agents.length}`);
    fs.mkdirSync(dir, { mode: 0o700 });
    const sock = join(dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
    this.agents.push(agent);
    agent.on('error', () => {});
    for (let i = 0; i < 200 && !isSocket(sock); i++) await new Promise((r) => setTimeout(r, 10));
    if (!isSocket(sock)) throw new KeelError(`--ssh ${id}: ssh-agent did not start (is openssh-client installed?)`);
    const add = spawnSync('ssh-add', keys, { env: { ...process.env, SSH_AUTH_SOCK: sock, SSH_ASKPASS: '/bin/false', DISPLAY: '' }, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', timeout: 10_000 });
    if (add.status !== 0) throw new KeelError(`--ssh ${id}: ssh-add ${keys.join(' ')}: ${(add.stderr || add.error?.message || '').trim().split('\n')[0]}`);
    return sock;
  }

  /** Stops the agents started for key files. */
  close(): void {
    for (const a of this.agents) a.kill('SIGTERM');
  }
}

function isSocket(p: string): boolean {
  try {
    return fs.statSync(p).isSocket();
  } catch {
    return false;
  }
}

/**
 * A socket at `path` (mode, owner as asked) forwarding each connection to `agent`; the returned
 * function closes it and every connection through it.
 */
export async function agentProxy(agent: string, path: string, owner: { uid: number; gid: number; mode: number }): Promise<() => Promise<void>> {
  const net = await import('node:net');
  const open = new Set<Socket>();
  const server: Server = net.createServer((client) => {
    const upstream = net.connect(agent);
    open.add(client);
    open.add(upstream);
    const end = () => { client.destroy(); upstream.destroy(); open.delete(client); open.delete(upstream); };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  fs.chownSync(path, owner.uid, owner.gid);
  fs.chmodSync(path, owner.mode);
  return () => new Promise<void>((resolve) => {
    for (const s of open) s.destroy();
    server.close(() => resolve());
  });
}
