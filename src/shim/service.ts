// The task service (containerd.task.v2.Task) of containerd-shim-keel-v2: one shim process serves
// every container of a pod (or one container), with keel's runtime loaded in-process. Create,
// start, exec, kill, pause, update and delete are calls of keel/runtime; the shim is the parent of
// every process it makes and learns their exits on SIGCHLD; task events go to containerd as they
// happen.
import { existsSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from '@bufbuild/protobuf';
import { EmptySchema, timestampFromDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import * as runtime from '../runtime/index.js';
import * as api from './generated/runtime/task/v2/shim_pb.js';
import * as ev from './generated/events/task_pb.js';
import { Status } from './generated/types/task/task_pb.js';
import { MetricsSchema } from './generated/cgroup1/stats/metrics_pb.js';
import { MetricsSchema as MetricsV2Schema } from './generated/cgroup2/stats/metrics_pb.js';
import { Code, TtrpcError, type Method, type Services } from './ttrpc.js';
import { openProcessIO, type ProcessIO, type StdioPaths } from './io.js';
import { packAny, type Publisher } from './events.js';
import { toMetrics, toMetricsV2, type RuntimeStats } from './metrics.js';
import { DELETE_RESPONSE_FILE } from './flags.js';

export const TASK_SERVICE = 'containerd.task.v2.Task';

let unifiedHost: boolean | undefined;

interface Proc {
  containerId: string;
  /** '' for the container's init. */
  execId: string;
  pid: number;
  state: 'created' | 'running' | 'stopped';
  exitStatus: number;
  exitedAt?: Date;
  exited: Promise<void>;
  markExited: () => void;
  paths: StdioPaths;
  io?: ProcessIO;
  /** An exec's process (runtime-spec JSON), until it starts. */
  spec?: unknown;
}

interface Container {
  id: string;
  bundle: string;
  rootfsMounted: boolean;
  /** Whether the container has its own pid namespace (else its processes outlive the init). */
  ownPidNs: boolean;
  init: Proc;
  execs: Map<string, Proc>;
  stopWatching: AbortController;
}

export interface ShimOptions {
  /** keel's state directory for this namespace. */
  root: string;
  /** containerd's namespace the shim serves (binary:// loggers get it as CONTAINER_NAMESPACE). */
  namespace: string;
  publisher: Publisher;
  log: (msg: string) => void;
  /** Debug messages (each request and its time), or nothing. */
  debug?: (msg: string) => void;
  /** Called when containerd asks the shim to go (Shutdown) and it holds no container. */
  exit: () => void;
}

function newProc(containerId: string, execId: string, paths: StdioPaths): Proc {
  let markExited!: () => void;
  const exited = new Promise<void>((r) => { markExited = r; });
  return { containerId, execId, pid: 0, state: 'created', exitStatus: 0, exited, markExited, paths };
}

/** A KeelError (one line for users) as the gRPC status containerd maps to its errdefs. */
function asTtrpcError(err: unknown): TtrpcError {
  if (err instanceof TtrpcError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (/does not exist/.test(msg)) return new TtrpcError(Code.NOT_FOUND, msg);
  if (/already exists/.test(msg)) return new TtrpcError(Code.ALREADY_EXISTS, msg);
  if (/not running|not paused|already paused|not stopped|stopped container|paused container|has stopped/.test(msg)) return new TtrpcError(Code.FAILED_PRECONDITION, msg);
  return new TtrpcError(Code.UNKNOWN, msg);
}

const ts = (d: Date | undefined): Timestamp | undefined => (d ? timestampFromDate(d) : undefined);

export class TaskService {
  private readonly containers = new Map<string, Container>();
  private readonly ctx: runtime.RuntimeContext;

  constructor(private readonly opts: ShimOptions) {
    this.ctx = { root: opts.root, warn: (m) => opts.log(`warning: ${m}`) };
  }

  /** The ttrpc methods: decode the request, run, encode the response; errors become statuses. */
  services(): Services {
    const methods = new Map<string, Method>();
    const add = <I extends DescMessage, O extends DescMessage>(name: string, inSchema: I, outSchema: O, fn: (req: MessageShape<I>) => Promise<MessageShape<O>>) => {
      methods.set(name, async (payload) => {
        const req = fromBinary(inSchema, payload);
        const t0 = performance.now();
        try {
          return toBinary(outSchema, await fn(req));
        } catch (err) {
          throw asTtrpcError(err);
        } finally {
          this.opts.debug?.(`${name} ${(req as { id?: string }).id ?? ''} ${(performance.now() - t0).toFixed(1)} ms`);
        }
      });
    };
    const empty = create(EmptySchema);
    add('State', api.StateRequestSchema, api.StateResponseSchema, (r) => this.state(r));
    add('Create', api.CreateTaskRequestSchema, api.CreateTaskResponseSchema, (r) => this.createTask(r));
    add('Start', api.StartRequestSchema, api.StartResponseSchema, (r) => this.start(r));
    add('Delete', api.DeleteRequestSchema, api.DeleteResponseSchema, (r) => this.delete(r));
    add('Pids', api.PidsRequestSchema, api.PidsResponseSchema, (r) => this.pids(r));
    add('Pause', api.PauseRequestSchema, EmptySchema, async (r) => { await this.pause(r.id, true); return empty; });
    add('Resume', api.ResumeRequestSchema, EmptySchema, async (r) => { await this.pause(r.id, false); return empty; });
    add('Checkpoint', api.CheckpointTaskRequestSchema, EmptySchema, async () => {
      throw new TtrpcError(Code.UNIMPLEMENTED, 'checkpoint is not implemented: keel has no CRIU support');
    });
    add('Kill', api.KillRequestSchema, EmptySchema, async (r) => { await this.kill(r); return empty; });
    add('Exec', api.ExecProcessRequestSchema, EmptySchema, async (r) => { await this.exec(r); return empty; });
    add('ResizePty', api.ResizePtyRequestSchema, EmptySchema, async (r) => { await this.proc(r.id, r.execId).io?.resize(r.width, r.height); return empty; });
    add('CloseIO', api.CloseIORequestSchema, EmptySchema, async (r) => { if (r.stdin) this.proc(r.id, r.execId).io?.closeStdin(); return empty; });
    add('Update', api.UpdateTaskRequestSchema, EmptySchema, async (r) => { await this.update(r); return empty; });
    add('Wait', api.WaitRequestSchema, api.WaitResponseSchema, (r) => this.wait(r));
    add('Stats', api.StatsRequestSchema, api.StatsResponseSchema, (r) => this.stats(r));
    add('Connect', api.ConnectRequestSchema, api.ConnectResponseSchema, async (r) => create(api.ConnectResponseSchema, {
      shimPid: process.pid, taskPid: this.containers.get(r.id)?.init.pid ?? 0, version: `keel ${typeof __KEEL_VERSION__ === 'string' ? __KEEL_VERSION__ : 'dev'}`,
    }));
    add('Shutdown', api.ShutdownRequestSchema, EmptySchema, async (r) => {
      if (this.containers.size === 0 || r.now) setImmediate(() => this.opts.exit());
      return empty;
    });
    return new Map([[TASK_SERVICE, methods]]);
  }

  private container(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw new TtrpcError(Code.NOT_FOUND, `container ${id}: not found in this shim`);
    return c;
  }

  private proc(id: string, execId: string): Proc {
    const c = this.container(id);
    if (!execId) return c.init;
    const p = c.execs.get(execId);
    if (!p) throw new TtrpcError(Code.NOT_FOUND, `process ${execId} of container ${id}: not found`);
    return p;
  }

  private publish<D extends DescMessage>(topic: string, schema: D, init: Parameters<typeof create<D>>[1]): void {
    void this.opts.publisher.publish(topic, schema, create(schema, init));
  }

  // -------------------------------------------------------------------------------------------

  private async createTask(r: api.CreateTaskRequest): Promise<api.CreateTaskResponse> {
    if (this.containers.has(r.id)) throw new TtrpcError(Code.ALREADY_EXISTS, `container ${r.id}: already exists`);
    if (r.checkpoint) throw new TtrpcError(Code.UNIMPLEMENTED, 'restoring from a checkpoint is not implemented: keel has no CRIU support');
    const rootfs = join(r.bundle, 'rootfs');
    const paths: StdioPaths = { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal };
    const init = newProc(r.id, '', paths);
    let mounted = false;
    try {
      if (r.rootfs.length) {
        await runtime.mountRootfs(r.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target, options: m.options })), rootfs);
        mounted = true;
      }
      init.io = await openProcessIO(paths, `${r.id} init`, this.opts.log, { id: r.id, namespace: this.opts.namespace });
      await runtime.create(this.ctx, r.id, { bundle: r.bundle, stdio: init.io.stdio, consoleSocket: init.io.consoleSocket });
    } catch (err) {
      init.io?.close();
      if (mounted) await runtime.unmountRootfs(rootfs).catch((e) => this.opts.log(`unmount ${rootfs}: ${(e as Error).message}`));
      throw err;
    }
    const st = await runtime.state(this.ctx, r.id);
    init.pid = st.pid ?? 0;
    writeFileSync(join(r.bundle, 'init.pid'), String(init.pid));
    const config = (await runtime.loadBundle(r.bundle)).config;
    const c: Container = {
      id: r.id, bundle: r.bundle, rootfsMounted: mounted, init, execs: new Map(), stopWatching: new AbortController(),
      ownPidNs: (config.linux?.namespaces ?? []).some((n) => n.type === 'pid' && !n.path),
    };
    this.containers.set(r.id, c);
    void runtime.watchExit(init.pid).then((exit) => this.initExited(c, exit));
    try { init.io.started(); } catch (err) { this.opts.log(`${r.id}: terminal: ${(err as Error).message}`); }
    this.watchOom(c);
    this.publish('/tasks/create', ev.TaskCreateSchema, {
      containerId: r.id, bundle: r.bundle, rootfs: r.rootfs, checkpoint: r.checkpoint, pid: init.pid,
      io: { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal },
    });
    return create(api.CreateTaskResponseSchema, { pid: init.pid });
  }

  /** OOM notices of the container's cgroup, as /tasks/oom events, until it is deleted. */
  private watchOom(c: Container): void {
    const emit = (line: string) => {
      if (line.includes('"type":"oom"')) this.publish('/tasks/oom', ev.TaskOOMSchema, { containerId: c.id });
    };
    runtime.events(this.ctx, c.id, { intervalMs: 2 ** 31 - 1, pollMs: 1000, signal: c.stopWatching.signal }, emit)
      .catch((err) => this.opts.log(`${c.id}: no OOM events: ${(err as Error).message}`));
  }

  private async initExited(c: Container, exit: runtime.ProcessExit): Promise<void> {
    const p = c.init;
    // Without a pid namespace of its own the container's other processes outlive its init: kill
    // them, as runc's shim does, so the task is really over.
    if (!c.ownPidNs) {
      try { for (const pid of await runtime.ps(this.ctx, c.id)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } } } catch { /* container gone */ }
    }
    // The execs die with the pid namespace; their exits come before the init's.
    await Promise.race([Promise.all([...c.execs.values()].filter((e) => e.pid).map((e) => e.exited)), new Promise((r) => setTimeout(r, 2000))]);
    this.processExited(p, exit);
  }

  private processExited(p: Proc, exit: runtime.ProcessExit): void {
    p.state = 'stopped';
    p.exitStatus = exit.status;
    p.exitedAt = exit.exitedAt;
    p.markExited();
    this.publish('/tasks/exit', ev.TaskExitSchema, {
      containerId: p.containerId, id: p.execId || p.containerId, pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt),
    });
  }

  private async start(r: api.StartRequest): Promise<api.StartResponse> {
    const c = this.container(r.id);
    if (!r.execId) {
      await runtime.start(this.ctx, r.id);
      if (c.init.state === 'created') c.init.state = 'running';
      this.publish('/tasks/start', ev.TaskStartSchema, { containerId: r.id, pid: c.init.pid });
      return create(api.StartResponseSchema, { pid: c.init.pid });
    }
    const p = this.proc(r.id, r.execId);
    if (p.state !== 'created' || p.pid) throw new TtrpcError(Code.FAILED_PRECONDITION, `process ${r.execId} of container ${r.id} was already started`);
    const specFile = join(c.bundle, `.exec-${r.execId}.json`);
    const pidFile = join(c.bundle, `.exec-${r.execId}.pid`);
    writeFileSync(specFile, JSON.stringify(p.spec), { mode: 0o600 });
    try {
      p.io = await openProcessIO(p.paths, `${r.id} exec ${r.execId}`, this.opts.log);
      await runtime.exec(this.ctx, r.id, { args: [], process: specFile, detach: true, pidFile, stdio: p.io.stdio, consoleSocket: p.io.consoleSocket, tty: p.paths.terminal });
      p.pid = Number(readFileSync(pidFile, 'utf8'));
    } catch (err) {
      p.io?.close();
      throw err;
    } finally {
      rmSync(specFile, { force: true });
      rmSync(pidFile, { force: true });
    }
    p.state = 'running';
    void runtime.watchExit(p.pid).then((exit) => this.processExited(p, exit));
    try { p.io.started(); } catch (err) { this.opts.log(`${r.id} exec ${r.execId}: terminal: ${(err as Error).message}`); }
    this.publish('/tasks/exec-started', ev.TaskExecStartedSchema, { containerId: r.id, execId: r.execId, pid: p.pid });
    return create(api.StartResponseSchema, { pid: p.pid });
  }

  private async exec(r: api.ExecProcessRequest): Promise<void> {
    const c = this.container(r.id);
    if (c.execs.has(r.execId)) throw new TtrpcError(Code.ALREADY_EXISTS, `process ${r.execId} of container ${r.id}: already exists`);
    if (c.init.state === 'stopped') throw new TtrpcError(Code.FAILED_PRECONDITION, `container ${r.id} is stopped`);
    let spec: unknown;
    try {
      spec = JSON.parse(Buffer.from(r.spec?.value ?? new Uint8Array()).toString('utf8'));
    } catch {
      throw new TtrpcError(Code.INVALID_ARGUMENT, `exec ${r.execId}: the process spec (${r.spec?.typeUrl ?? 'none'}) is not runtime-spec JSON`);
    }
    const p = newProc(r.id, r.execId, { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, terminal: r.terminal });
    p.spec = { ...(spec as object), terminal: r.terminal };
    c.execs.set(r.execId, p);
    this.publish('/tasks/exec-added', ev.TaskExecAddedSchema, { containerId: r.id, execId: r.execId });
  }

  private async state(r: api.StateRequest): Promise<api.StateResponse> {
    const c = this.container(r.id);
    const p = this.proc(r.id, r.execId);
    let status = p.state === 'created' ? Status.CREATED : p.state === 'running' ? Status.RUNNING : Status.STOPPED;
    if (p.state !== 'stopped') {
      try { if ((await runtime.state(this.ctx, c.id)).status as string === 'paused') status = Status.PAUSED; } catch { /* deleted meanwhile */ }
    }
    return create(api.StateResponseSchema, {
      id: p.execId || c.id, bundle: c.bundle, pid: p.pid, status, stdin: p.paths.stdin, stdout: p.paths.stdout,
      stderr: p.paths.stderr, terminal: p.paths.terminal, exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt), execId: p.execId,
    });
  }

  private async kill(r: api.KillRequest): Promise<void> {
    const p = this.proc(r.id, r.execId);
    if (p.state === 'stopped' && !(r.all && !r.execId)) throw new TtrpcError(Code.NOT_FOUND, `process ${r.execId || r.id}: process already finished`);
    if (r.execId) {
      if (!p.pid) throw new TtrpcError(Code.FAILED_PRECONDITION, `process ${r.execId} of container ${r.id} is not started`);
      try { process.kill(p.pid, r.signal); } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') throw new TtrpcError(Code.NOT_FOUND, `process ${r.execId}: process already finished`);
        throw err;
      }
      return;
    }
    try {
      await runtime.kill(this.ctx, r.id, r.signal, { all: r.all });
    } catch (err) {
      if (/not running/.test((err as Error).message)) throw new TtrpcError(Code.NOT_FOUND, `process ${r.id}: process already finished`);
      throw err;
    }
  }

  private async wait(r: api.WaitRequest): Promise<api.WaitResponse> {
    const p = this.proc(r.id, r.execId);
    await p.exited;
    return create(api.WaitResponseSchema, { exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt) });
  }

  private async pids(r: api.PidsRequest): Promise<api.PidsResponse> {
    const c = this.container(r.id);
    const pids = c.init.state === 'stopped' ? [] : await runtime.ps(this.ctx, r.id);
    return create(api.PidsResponseSchema, { processes: pids.map((pid) => ({ pid })) });
  }

  private async pause(id: string, pause: boolean): Promise<void> {
    this.container(id);
    if (pause) {
      await runtime.pause(this.ctx, id);
      this.publish('/tasks/paused', ev.TaskPausedSchema, { containerId: id });
    } else {
      await runtime.resume(this.ctx, id);
      this.publish('/tasks/resumed', ev.TaskResumedSchema, { containerId: id });
    }
  }

  private async update(r: api.UpdateTaskRequest): Promise<void> {
    this.container(r.id);
    let resources: runtime.LinuxResources;
    try {
      resources = JSON.parse(Buffer.from(r.resources?.value ?? new Uint8Array()).toString('utf8'));
    } catch {
      throw new TtrpcError(Code.INVALID_ARGUMENT, `update ${r.id}: the resources (${r.resources?.typeUrl ?? 'none'}) are not runtime-spec JSON`);
    }
    await runtime.update(this.ctx, r.id, resources);
  }

  private async stats(r: api.StatsRequest): Promise<api.StatsResponse> {
    this.container(r.id);
    const stats = (await runtime.stats(this.ctx, r.id)) as unknown as RuntimeStats;
    // A pure cgroup v2 host has cgroup.controllers at the root of /sys/fs/cgroup.
    if (unifiedHost ??= existsSync('/sys/fs/cgroup/cgroup.controllers')) return create(api.StatsResponseSchema, { stats: packAny(MetricsV2Schema, toMetricsV2(stats)) });
    return create(api.StatsResponseSchema, { stats: packAny(MetricsSchema, toMetrics(stats)) });
  }

  private async delete(r: api.DeleteRequest): Promise<api.DeleteResponse> {
    const c = this.container(r.id);
    if (r.execId) {
      const p = this.proc(r.id, r.execId);
      if (p.state === 'running') throw new TtrpcError(Code.FAILED_PRECONDITION, `process ${r.execId} of container ${r.id} is running: it cannot be deleted`);
      p.io?.close();
      c.execs.delete(r.execId);
      return create(api.DeleteResponseSchema, { pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt) });
    }
    const p = c.init;
    if (p.state === 'running') throw new TtrpcError(Code.FAILED_PRECONDITION, `container ${r.id} is running: it cannot be deleted`);
    // A created container's init waits for start: delete kills it, and its exit is its status.
    await runtime.remove(this.ctx, r.id, { force: true });
    if (p.state !== 'stopped') await Promise.race([p.exited, new Promise((res) => setTimeout(res, 5000))]);
    c.stopWatching.abort();
    p.io?.close();
    for (const e of c.execs.values()) e.io?.close();
    if (c.rootfsMounted) await runtime.unmountRootfs(join(c.bundle, 'rootfs'));
    this.containers.delete(r.id);
    this.publish('/tasks/delete', ev.TaskDeleteSchema, { containerId: r.id, id: r.id, pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt) });
    const res = create(api.DeleteResponseSchema, { pid: p.pid, exitStatus: p.exitStatus, exitedAt: ts(p.exitedAt) });
    // containerd runs `containerd-shim-keel-v2 delete` next and waits for it: its answer is ready.
    try { writeFileSync(join(c.bundle, DELETE_RESPONSE_FILE), toBinary(api.DeleteResponseSchema, res)); } catch { /* bundle gone */ }
    return res;
  }
}

declare const __KEEL_VERSION__: string | undefined;
