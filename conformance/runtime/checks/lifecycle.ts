// runtime.md: the container lifecycle observed end to end on one container (create, state,
// start, kill, delete), plus state JSON, and the CLI's pid file and exit codes on the way.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { checkRuntimeState } from '../../../src/spec/index.js';
import { assert, assertEqual, fail } from '../../check.js';
import { type Bundle, type SuiteContext, why } from '../context.js';
import type { ExecResult } from '../driver.js';
import type { ProbeEvent } from '../probe.js';
import { cliMd, configMd, must, runtimeMd, should, waitFor, type RuntimeCheck } from '../spec.js';

type State = Record<string, unknown> | null;

const ANNOTATIONS = { 'org.keel.conformance.scenario': 'lifecycle', 'com.example.empty': '' };

interface Lifecycle {
  bundle: Bundle;
  id: string;
  pidFile: string;
  /** Why the scenario stopped early (a step every later observation needs failed). */
  aborted?: string;
  create?: ExecResult;
  reportAfterCreate?: boolean;
  stateCreated?: State;
  pidFileText?: string | null;
  start?: ExecResult;
  ready?: boolean;
  stateRunning?: State;
  processCmdline?: string;
  start2?: ExecResult;
  stateAfterStart2?: State;
  eventsAfterStart2?: ProbeEvent[];
  deleteRunning?: ExecResult;
  stateAfterDeleteRunning?: State;
  killUsr1?: ExecResult;
  killNumeric?: ExecResult;
  signals?: string[];
  killTerm?: ExecResult;
  stateStopped?: State;
  killStopped?: ExecResult;
  stateAfterKillStopped?: State;
  delete?: ExecResult;
  stateAfterDelete?: ExecResult;
  leftovers?: { bundle: boolean; config: boolean; rootfsProbe: boolean; outReport: boolean };
  recreate?: ExecResult;
}

function readSignals(b: Bundle): string[] {
  try {
    return readFileSync(join(b.out, 'signals'), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

async function lifecycle(ctx: SuiteContext): Promise<Lifecycle> {
  return ctx.memo('lifecycle', async () => {
    const d = ctx.driver;
    const bundle = ctx.bundle('life');
    const id = bundle.id;
    const pidFile = join(ctx.tmp, `${id}.pid`);
    const o: Lifecycle = { bundle, id, pidFile };
    bundle.config.annotations = { ...ANNOTATIONS };
    bundle.config.process.args = ['/probe', '--out', '/out/report.json', '--event', 'process', '--log', '/out/events.log', '--signals', '/out/signals'];
    bundle.write();

    o.create = await d.create(id, bundle.dir, ['--pid-file', pidFile]);
    if (o.create.code !== 0) {
      o.aborted = `create failed (${why(o.create)})`;
      return o;
    }
    o.reportAfterCreate = existsSync(join(bundle.out, 'report.json'));
    o.stateCreated = (await d.state(id)).state;
    o.pidFileText = existsSync(pidFile) ? readFileSync(pidFile, 'utf8') : null;

    // Rewrite config.json between create and start: the container must not notice.
    const changed = structuredClone(bundle.config);
    changed.process.args = ['/probe', '--out', '/out/changed.json'];
    changed.process.env = [...(changed.process.env ?? []), 'KC_CHANGED=1'];
    bundle.write(changed);

    o.start = await d.start(id);
    if (o.start.code !== 0) {
      o.aborted = `start failed (${why(o.start)})`;
      return o;
    }
    o.ready = await waitFor(() => existsSync(join(bundle.out, 'signals.ready')), 10_000);
    o.stateRunning = (await d.state(id)).state;
    const pid = Number(o.stateRunning?.pid);
    if (pid > 0) {
      try {
        o.processCmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      } catch {
        o.processCmdline = '';
      }
    }
    if (!o.ready) {
      o.aborted = 'the container process never reported (no /out/signals.ready within 10s after start)';
      return o;
    }

    o.start2 = await d.start(id);
    o.stateAfterStart2 = (await d.state(id)).state;
    await new Promise((r) => setTimeout(r, 50));
    o.eventsAfterStart2 = bundle.events();

    o.deleteRunning = await d.delete(id);
    o.stateAfterDeleteRunning = (await d.state(id)).state;

    o.killUsr1 = await d.kill(id, 'USR1');
    await waitFor(() => readSignals(bundle).length >= 1, 5_000);
    o.killNumeric = await d.kill(id, '12');
    await waitFor(() => readSignals(bundle).length >= 2, 5_000);
    o.killTerm = await d.kill(id, 'TERM');
    await waitFor(() => readSignals(bundle).length >= 3, 5_000);
    o.signals = readSignals(bundle);
    o.stateStopped = await d.waitStatus(id, 'stopped', 10_000);
    if (o.stateStopped?.status !== 'stopped') {
      o.aborted = `the container did not stop after SIGTERM (state: ${JSON.stringify(o.stateStopped)})`;
      return o;
    }

    o.killStopped = await d.kill(id, 'KILL');
    o.stateAfterKillStopped = (await d.state(id)).state;

    o.delete = await d.delete(id);
    o.stateAfterDelete = (await d.state(id)).result;
    o.leftovers = {
      bundle: existsSync(bundle.dir),
      config: existsSync(join(bundle.dir, 'config.json')),
      rootfsProbe: existsSync(join(bundle.rootfs, 'probe')),
      outReport: existsSync(join(bundle.out, 'report.json')),
    };

    bundle.write(bundle.config);
    o.recreate = await d.create(id, bundle.dir);
    await d.remove(id);
    return o;
  });
}

/** The scenario, failing the check if it stopped before `step` was observed. */
async function upTo<K extends keyof Lifecycle>(ctx: SuiteContext, step: K): Promise<Lifecycle & Required<Pick<Lifecycle, K>>> {
  const o = await lifecycle(ctx);
  if (o[step] === undefined) fail(o.aborted ?? `lifecycle scenario did not reach ${String(step)}`);
  return o as Lifecycle & Required<Pick<Lifecycle, K>>;
}

function stateProblems(state: State, o: Lifecycle, status: string): string[] {
  if (!state) return ['`state` failed or printed no JSON object'];
  const problems: string[] = [];
  const checked = checkRuntimeState(state);
  if (!checked.ok) problems.push(...checked.errors.map((e) => `${e.path || '/'} ${e.message}`));
  if (state.id !== o.id) problems.push(`id is ${JSON.stringify(state.id)}, not ${JSON.stringify(o.id)}`);
  if (state.status !== status) problems.push(`status is ${JSON.stringify(state.status)}, not "${status}"`);
  if (typeof state.ociVersion !== 'string' || !state.ociVersion) problems.push('ociVersion is missing');
  const bundlePath = state.bundle;
  if (typeof bundlePath !== 'string' || !bundlePath.startsWith('/')) problems.push(`bundle ${JSON.stringify(bundlePath)} is not an absolute path`);
  else if (!existsSync(bundlePath) || realpathSync(bundlePath) !== realpathSync(o.bundle.dir)) problems.push(`bundle is ${JSON.stringify(bundlePath)}, not the bundle ${o.bundle.dir}`);
  if (status !== 'stopped' && !(Number.isInteger(state.pid) && (state.pid as number) > 0)) problems.push(`pid ${JSON.stringify(state.pid)} is not a positive integer (REQUIRED while ${status})`);
  return problems;
}

const stateRef = runtimeMd('State');
const createRef = runtimeMd('Create');
const startRef = runtimeMd('Start');
const killRef = runtimeMd('Kill');
const deleteRef = runtimeMd('Delete');
const lifecycleRef = runtimeMd('Lifecycle');

export const lifecycleChecks: RuntimeCheck[] = [
  must(createRef, 'runtime.create.status-created', 'Upon successful completion of create, the status property of the container MUST be `created`.', async (ctx) => {
    const o = await upTo(ctx, 'stateCreated');
    assertEqual(o.stateCreated?.status, 'created', 'status after create');
  }),
  must(createRef, 'runtime.create.no-user-program', 'create MUST NOT run the user-specified program.', async (ctx) => {
    const o = await upTo(ctx, 'reportAfterCreate');
    assert(!o.reportAfterCreate, 'the probe had already run (its report existed) when create returned');
  }),
  must(lifecycleRef, 'runtime.lifecycle.config-changes-ignored', 'Any updates to config.json after create MUST NOT affect the container.', async (ctx) => {
    const o = await upTo(ctx, 'ready');
    const out = o.bundle.out;
    assert(!existsSync(join(out, 'changed.json')), 'start ran the args written to config.json after create');
    const report = o.bundle.report();
    assert(report, 'the process configured at create time did not run');
    assert(!report.env.includes('KC_CHANGED=1'), 'the environment written to config.json after create reached the process');
  }),
  must(startRef, 'runtime.start.runs-process', 'start MUST run the user-specified program as specified by process.', async (ctx) => {
    const o = await upTo(ctx, 'ready');
    const report = o.bundle.report();
    assert(report, 'no report from the container process after start');
    assertEqual(report.argv, o.bundle.config.process.args, 'argv of the container process');
  }),
  must(startRef, 'runtime.start.status-running', 'Upon successful completion of start, the status property MUST be `running`.', async (ctx) => {
    const o = await upTo(ctx, 'stateRunning');
    assertEqual(o.stateRunning?.status, 'running', 'status after start');
  }),
  must(startRef, 'runtime.start.twice-errors', 'Attempting to start an already started container MUST generate an error.', async (ctx) => {
    const o = await upTo(ctx, 'start2');
    assert(o.start2.code !== 0, 'a second start of a running container exited 0');
  }),
  must(startRef, 'runtime.start.twice-no-effect', 'Attempting to start an already started container MUST have no effect on the container.', async (ctx) => {
    const o = await upTo(ctx, 'eventsAfterStart2');
    assertEqual(o.stateAfterStart2?.status, 'running', 'status after the second start');
    assertEqual(o.stateAfterStart2?.pid, o.stateRunning?.pid, 'container pid after the second start');
    assertEqual(o.eventsAfterStart2.filter((e) => e.event === 'process').length, 1, 'number of times the process ran');
  }),
  must(stateRef, 'runtime.state.created', 'state MUST return the state of a created container as specified in State (id, status, pid, bundle; schema-valid).', async (ctx) => {
    const o = await upTo(ctx, 'stateCreated');
    const p = stateProblems(o.stateCreated, o, 'created');
    assert(p.length === 0, p.join('; '));
  }),
  must(stateRef, 'runtime.state.running', 'state MUST return the state of a running container as specified in State.', async (ctx) => {
    const o = await upTo(ctx, 'stateRunning');
    const p = stateProblems(o.stateRunning, o, 'running');
    assert(p.length === 0, p.join('; '));
  }),
  must(stateRef, 'runtime.state.stopped', 'state MUST return the state of a stopped container as specified in State.', async (ctx) => {
    const o = await upTo(ctx, 'stateStopped');
    const p = stateProblems(o.stateStopped, o, 'stopped');
    assert(p.length === 0, p.join('; '));
  }),
  must(stateRef, 'runtime.state.pid-is-container-process', 'pid is the ID of the container process, as seen by the host.', async (ctx) => {
    const o = await upTo(ctx, 'stateRunning');
    assert(o.processCmdline?.startsWith('/probe '), `/proc/${String(o.stateRunning?.pid)}/cmdline is ${JSON.stringify(o.processCmdline)}, not the container's /probe`);
  }),
  must(stateRef, 'runtime.state.annotations', 'annotations in the state contain the annotations associated with the container.', async (ctx) => {
    const o = await upTo(ctx, 'stateCreated');
    assertEqual(o.stateCreated?.annotations, ANNOTATIONS, 'state annotations');
  }),
  must(killRef, 'runtime.kill.sends-signal', 'kill MUST send the specified signal to the container process.', async (ctx) => {
    const o = await upTo(ctx, 'signals');
    assert(o.killUsr1?.code === 0, `kill USR1 failed (${why(o.killUsr1!)})`);
    assert(o.killNumeric?.code === 0, `kill 12 failed (${why(o.killNumeric!)})`);
    assertEqual(o.signals, ['10', '12', '15'], 'signals the container process received for kill USR1, kill 12, kill TERM');
  }),
  must(killRef, 'runtime.kill.stopped-status', 'When the container process is stopped, the status property MUST be `stopped`.', async (ctx) => {
    const o = await upTo(ctx, 'stateStopped');
    assertEqual(o.stateStopped?.status, 'stopped', 'status after the container process exited');
  }),
  must(killRef, 'runtime.kill.not-running-errors', 'Attempting to send a signal to a container that is neither created nor running MUST generate an error.', async (ctx) => {
    const o = await upTo(ctx, 'killStopped');
    assert(o.killStopped.code !== 0, 'kill of a stopped container exited 0');
  }),
  must(killRef, 'runtime.kill.not-running-no-effect', 'Attempting to signal a container that is neither created nor running MUST have no effect on the container.', async (ctx) => {
    const o = await upTo(ctx, 'stateAfterKillStopped');
    assertEqual(o.stateAfterKillStopped?.status, 'stopped', 'status after kill of a stopped container');
  }),
  must(deleteRef, 'runtime.delete.running-errors', 'Attempting to delete a container that is not stopped MUST generate an error.', async (ctx) => {
    const o = await upTo(ctx, 'deleteRunning');
    assert(o.deleteRunning.code !== 0, 'delete of a running container exited 0');
  }),
  must(deleteRef, 'runtime.delete.running-no-effect', 'Attempting to delete a container that is not stopped MUST have no effect on the container.', async (ctx) => {
    const o = await upTo(ctx, 'stateAfterDeleteRunning');
    assertEqual(o.stateAfterDeleteRunning?.status, 'running', 'status after delete of a running container');
    assertEqual(o.stateAfterDeleteRunning?.pid, o.stateRunning?.pid, 'pid after delete of a running container');
  }),
  must(deleteRef, 'runtime.delete.removes-container', 'Deleting a container MUST delete the resources that were created during create (the container no longer exists).', async (ctx) => {
    const o = await upTo(ctx, 'stateAfterDelete');
    assert(o.delete?.code === 0, `delete of a stopped container failed (${why(o.delete!)})`);
    assert(o.stateAfterDelete.code !== 0, '`state` still succeeds after delete');
  }),
  must(deleteRef, 'runtime.delete.keeps-foreign-resources', 'Resources associated with the container but not created by it (bundle, rootfs, bind-mount sources) MUST NOT be deleted.', async (ctx) => {
    const o = await upTo(ctx, 'leftovers');
    const gone = Object.entries(o.leftovers).filter(([, kept]) => !kept).map(([what]) => what);
    assert(gone.length === 0, `delete removed: ${gone.join(', ')}`);
  }),
  should(deleteRef, 'runtime.delete.id-reusable', 'Once a container is deleted its ID MAY be used by a subsequent container.', async (ctx) => {
    const o = await upTo(ctx, 'recreate');
    assert(o.recreate.code === 0, `create with the deleted container's id failed (${why(o.recreate)})`);
  }),
  must(cliMd('create'), 'cli.create.pid-file', 'create --pid-file: the runtime MUST write the container PID to this path.', async (ctx) => {
    const o = await upTo(ctx, 'stateCreated');
    assert(o.pidFileText !== null && o.pidFileText !== undefined, `no pid file at ${o.pidFile}`);
    assertEqual(Number(o.pidFileText.trim()), o.stateCreated?.pid, 'pid in the pid file (vs state)');
  }),
  must(cliMd('Commands'), 'cli.exit-zero-on-success', 'create, start, state, kill and delete exit zero when the operation succeeded.', async (ctx) => {
    const o = await upTo(ctx, 'delete');
    const steps: [string, ExecResult | undefined][] = [['create', o.create], ['start', o.start], ['kill USR1', o.killUsr1], ['kill TERM', o.killTerm], ['delete', o.delete]];
    const bad = steps.filter(([, r]) => r?.code !== 0).map(([n, r]) => `${n} (${r ? why(r) : 'not run'})`);
    assert(bad.length === 0, `non-zero exit for: ${bad.join(', ')}`);
  }),
  must(configMd('Annotations'), 'config.annotations.accepted', 'Annotations MUST be a key-value map of strings; values MAY be empty strings (the runtime accepts them).', async (ctx) => {
    const o = await lifecycle(ctx);
    assert(o.create?.code === 0, `create with annotations failed (${o.create ? why(o.create) : 'not run'})`);
  }),
];

