// A containerd of the shim tests: started with its own root, state, sockets and config, with
// dist/ first on its PATH so that runtime io.containerd.keel.v2 finds dist/containerd-shim-keel-v2,
// and the busybox test image imported. Used by the shim tests and bench/containerd.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseSkip, describe, env, makeBusyboxLayout, repo, run, tempDir, which } from '../runtime-clients/helpers.js';
import { killAtExit } from '../fixtures/cleanup.js';

export const SHIM = join(repo, 'dist/containerd-shim-keel-v2');
export const KEEL_RUNTIME = 'io.containerd.keel.v2';
export const IMAGE = 'localhost/keel-test/busybox:bb';
/** The same busybox, running `sleep` (a pod's sandbox container). */
export const PAUSE_IMAGE = 'localhost/keel-test/busybox:pause';

/** Why containerd cannot be driven here, or false. */
export function containerdSkip(): string | false {
  return baseSkip() || (!which('containerd') && 'containerd not installed') || (!which('ctr') && 'ctr not installed')
    || (!existsSync(SHIM) && 'dist/containerd-shim-keel-v2 not built (npm run build)');
}

export class Containerd {
  /** With `cri`, containerd's CRI plugin is on, with runtime handler `keel` and the pause image below. */
  constructor(private readonly opts: { cri?: boolean } = {}) {}
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
      `disabled_plugins = [${this.opts.cri ? '' : '"io.containerd.grpc.v1.cri", '}"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]`,
      '[grpc]', `  address = "${this.sock}"`,
      '[ttrpc]', `  address = "${this.sock}.ttrpc"`,
      '[debug]', '  address = ""', '  level = "debug"',
      '[metrics]', '  address = ""',
      ...(this.opts.cri ? [
        '[plugins."io.containerd.grpc.v1.cri"]', `  sandbox_image = "${PAUSE_IMAGE}"`,
        '  stream_server_address = "127.0.0.1"', '  stream_server_port = "0"',
        // No lower OOM scores than containerd's own (the pause container's -998): lowering one
        // needs CAP_SYS_RESOURCE, which the machines these tests run on do not give root.
        '  restrict_oom_score_adj = true',
        '  [plugins."io.containerd.grpc.v1.cri".containerd]', '    default_runtime_name = "keel"',
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.keel]', `      runtime_type = "${KEEL_RUNTIME}"`,
        // No CNI: the tests' pods use the host's network.
        '  [plugins."io.containerd.grpc.v1.cri".cni]', `    bin_dir = "${join(this.dir, 'cni-bin')}"`, `    conf_dir = "${join(this.dir, 'cni-conf')}"`,
      ] : []),
      '',
    ].join('\n'));
    const log = openSync(join(this.dir, 'containerd.log'), 'a');
    this.daemon = killAtExit(spawn('containerd', ['--config', join(this.dir, 'config.toml')], { env: this.env, stdio: ['ignore', log, log] }));
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

  /** Builds the busybox images with keel's layer library and imports them (IMAGE, PAUSE_IMAGE) into `namespace`. */
  async importImage(namespace = this.ns): Promise<void> {
    const layoutDir = join(this.dir, 'layout');
    await makeBusyboxLayout(layoutDir, 'bb');
    const { OciLayout, exportArchive, readImage, writeImage, newImageConfig } = await import('../../src/layers/index.js');
    const layout = await OciLayout.open(layoutDir);
    const bb = await readImage(layout, 'bb');
    await writeImage(layout, {
      config: newImageConfig({ config: { Cmd: ['sleep', '2147483647'], Env: bb.config.config?.Env } }),
      layers: bb.manifest.layers.map((descriptor, i) => ({ descriptor, diffID: bb.config.rootfs.diff_ids[i]! })),
      tag: 'pause',
    });
    const archive = join(this.dir, 'image.tar');
    const out = createWriteStream(archive);
    await exportArchive(layout, out, { tags: ['bb', 'pause'] });
    await new Promise<void>((res, rej) => out.end((err?: Error | null) => (err ? rej(err) : res())));
    const imp = run('ctr', ['--address', this.sock, '--namespace', namespace, 'image', 'import', '--base-name', 'localhost/keel-test/busybox', archive], { env: this.env });
    if (imp.status !== 0) throw new Error(describe(imp, 'ctr image import'));
  }

  /** Kills and deletes every task and container left, stops containerd and removes everything. */
  async cleanup(): Promise<void> {
    if (this.daemon && this.daemon.exitCode === null) {
      for (const ns of this.opts.cri ? [this.ns, 'k8s.io'] : [this.ns]) {
        const ctr = (args: string[]) => run('ctr', ['--address', this.sock, '--namespace', ns, ...args], { env: this.env });
        for (const id of ctr(['task', 'ls', '-q']).stdout.split('\n').filter(Boolean)) {
          ctr(['task', 'kill', '--signal', 'SIGKILL', id]);
          ctr(['task', 'delete', '--force', id]);
        }
        for (const id of ctr(['container', 'ls', '-q']).stdout.split('\n').filter(Boolean)) ctr(['container', 'delete', id]);
      }
      await this.stop();
    }
    for (const h of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
      const found = run('find', [join('/sys/fs/cgroup', h), '-maxdepth', '3', '-type', 'd', '-name', this.ns]).stdout.split('\n').filter(Boolean);
      for (const d of found) { try { rmdirSync(d); } catch { /* not empty: a task was left behind */ } }
    }
    rmSync(join('/run/containerd/keel', this.ns), { recursive: true, force: true });
    // Whatever containerd left mounted under its directories (snapshots, a pod's shm), deepest first.
    const points = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((p) => p.startsWith(`${this.dir}/`));
    for (const p of points.reverse()) run('umount', ['-l', p], { stdio: 'ignore' });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
