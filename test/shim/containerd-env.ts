// A containerd of the shim tests: started with its own root, state, sockets and config, with
// dist/ first on its PATH so that runtime io.containerd.keel.v2 finds dist/containerd-shim-keel-v2,
// and the busybox test image imported. Used by the shim tests and bench/containerd.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseSkip, describe, env, makeBusyboxLayout, repo, run, tempDir, which } from '../runtime-clients/helpers.js';

export const SHIM = join(repo, 'dist/containerd-shim-keel-v2');
export const KEEL_RUNTIME = 'io.containerd.keel.v2';
export const IMAGE = 'localhost/keel-test/busybox:bb';

/** Why containerd cannot be driven here, or false. */
export function containerdSkip(): string | false {
  return baseSkip() || (!which('containerd') && 'containerd not installed') || (!which('ctr') && 'ctr not installed')
    || (!existsSync(SHIM) && 'dist/containerd-shim-keel-v2 not built (npm run build)');
}

export class Containerd {
  readonly dir = tempDir('keel-shim-containerd-');
  readonly sock = join(this.dir, 'containerd.sock');
  /** A namespace of this run only: containerd names task cgroups /<namespace>/<id>. */
  readonly ns = `keel-shim-${process.pid}`;
  readonly env: NodeJS.ProcessEnv = { ...env, PATH: `${join(repo, 'dist')}:${env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };
  private daemon: ChildProcess | undefined;

  /** Starts containerd; returns why it could not, or false. */
  async start(): Promise<string | false> {
    writeFileSync(join(this.dir, 'config.toml'), [
      'version = 2',
      `root = "${join(this.dir, 'root')}"`,
      `state = "${join(this.dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]',
      '[grpc]', `  address = "${this.sock}"`,
      '[ttrpc]', `  address = "${this.sock}.ttrpc"`,
      '[debug]', '  address = ""', '  level = "debug"',
      '[metrics]', '  address = ""',
      '',
    ].join('\n'));
    const log = openSync(join(this.dir, 'containerd.log'), 'a');
    this.daemon = spawn('containerd', ['--config', join(this.dir, 'config.toml')], { env: this.env, stdio: ['ignore', log, log] });
    const deadline = Date.now() + 20_000;
    while (!existsSync(this.sock) || this.ctr(['version']).status !== 0) {
      if (this.daemon.exitCode !== null || Date.now() > deadline) return `containerd did not start here: ${this.logTail(3)}`;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  /** Stops containerd (SIGTERM) and waits for it; its shims go on, as in production. */
  async stop(): Promise<void> {
    const d = this.daemon;
    if (!d || d.exitCode !== null) return;
    d.kill('SIGTERM');
    await new Promise((r) => { if (d.exitCode !== null) r(undefined); else d.once('exit', r); });
  }

  logTail(n: number): string {
    try { return readFileSync(join(this.dir, 'containerd.log'), 'utf8').trim().split('\n').slice(-n).join(' | '); } catch { return ''; }
  }

  ctr(args: string[], opts: { input?: string; timeout?: number } = {}) {
    return run('ctr', ['--address', this.sock, '--namespace', this.ns, ...args], { ...opts, env: this.env });
  }

  /** The bundle directory containerd made for task `id`. */
  bundle(id: string): string { return join(this.dir, 'state/io.containerd.runtime.v2.task', this.ns, id); }

  /** Builds the busybox image with keel's layer library and imports it as IMAGE. */
  async importImage(): Promise<void> {
    await makeBusyboxLayout(join(this.dir, 'layout'), 'bb');
    const { OciLayout, exportArchive } = await import('../../src/layers/index.js');
    const archive = join(this.dir, 'image.tar');
    const out = createWriteStream(archive);
    await exportArchive(await OciLayout.open(join(this.dir, 'layout')), out, { tags: ['bb'] });
    await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
    const imp = this.ctr(['image', 'import', '--base-name', 'localhost/keel-test/busybox', archive]);
    if (imp.status !== 0) throw new Error(describe(imp, 'ctr image import'));
  }

  /** Kills and deletes every task and container left, stops containerd and removes everything. */
  async cleanup(): Promise<void> {
    if (this.daemon && this.daemon.exitCode === null) {
      for (const id of this.ctr(['task', 'ls', '-q']).stdout.split('\n').filter(Boolean)) {
        this.ctr(['task', 'kill', '--signal', 'SIGKILL', id]);
        this.ctr(['task', 'delete', '--force', id]);
      }
      for (const id of this.ctr(['container', 'ls', '-q']).stdout.split('\n').filter(Boolean)) this.ctr(['container', 'delete', id]);
      await this.stop();
    }
    for (const h of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
      const found = run('find', [join('/sys/fs/cgroup', h), '-maxdepth', '3', '-type', 'd', '-name', this.ns]).stdout.split('\n').filter(Boolean);
      for (const d of found) { try { rmdirSync(d); } catch { /* not empty: a task was left behind */ } }
    }
    rmSync(join('/run/containerd/keel', this.ns), { recursive: true, force: true });
    run('umount', ['-R', join(this.dir, 'root')], { stdio: 'ignore' });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
