// config.md POSIX-platform Hooks and runtime.md Lifecycle: when each hook runs, in which order and
// namespace, what it gets on stdin, and what a failing hook does to the lifecycle. Hooks are the
// probe itself in event mode: it appends {event, ns, argv, env, stdin} to a log shared with the
// container process (bind-mounted at /out), so the log's line order is the order things ran in.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Hook } from '../../../src/spec/index.js';
import { checkRuntimeState } from '../../../src/spec/index.js';
import { assert, assertEqual, fail, skip } from '../../check.js';
import { type Bundle, type SuiteContext, why } from '../context.js';
import type { ExecResult } from '../driver.js';
import type { ProbeEvent, ProbeReport } from '../probe.js';
import { configMd, must, runtimeMd, should, waitFor, type RuntimeCheck } from '../spec.js';

/** A hook running the host copy of the probe that logs `event` to the bundle's events log. */
function hostHook(ctx: SuiteContext, b: Bundle, event: string, extra: string[] = [], env?: string[]): Hook {
  const hook: Hook = { path: ctx.probe, args: ['kc-hook', '--no-report', '--event', event, '--log', join(b.out, 'events.log'), ...extra] };
  if (env) hook.env = env;
  return hook;
}

interface HookRun {
  bundle: Bundle;
  create: ExecResult;
  afterCreate: ProbeEvent[];
  start?: ExecResult;
  afterStart?: ProbeEvent[];
  stopped?: boolean;
  delete?: ExecResult;
  afterDelete?: ProbeEvent[];
  report?: ProbeReport | null;
  stateAfterDelete?: number;
  aborted?: string;
}

const HOOK_ENV = ['KC_HOOK=createRuntime-1', 'KC_SECOND=two words'];

/** A container with every runtime-namespace hook and createContainer, run through create, start, delete. */
function allHooks(ctx: SuiteContext): Promise<HookRun> {
  return hookRun(ctx, 'hooks', (b) => ({
    prestart: [hostHook(ctx, b, 'prestart')],
    createRuntime: [hostHook(ctx, b, 'createRuntime-1', [], HOOK_ENV), hostHook(ctx, b, 'createRuntime-2')],
    createContainer: [hostHook(ctx, b, 'createContainer')],
    poststart: [hostHook(ctx, b, 'poststart')],
    poststop: [hostHook(ctx, b, 'poststop')],
  }));
}

/** A container with only a startContainer hook: /probe, a path that exists only in the container. */
function startHooks(ctx: SuiteContext): Promise<HookRun> {
  return hookRun(ctx, 'starthooks', () => ({
    startContainer: [{ path: '/probe', args: ['/probe', '--no-report', '--event', 'startContainer', '--log', '/out/events.log'] }],
  }));
}

async function hookRun(ctx: SuiteContext, name: string, hooks: (b: Bundle) => NonNullable<Bundle['config']['hooks']>): Promise<HookRun> {
  return ctx.memo(name, async () => {
    const b = ctx.bundle(name);
    // The process stays up until killed, so a poststart hook can see what it is running.
    b.config.process.args = ['/probe', '--out', '/out/report.json', '--event', 'process', '--log', '/out/events.log', '--signals', '/out/signals'];
    b.config.hooks = hooks(b);
    b.write();
    const d = ctx.driver;
    const o: HookRun = { bundle: b, create: await d.create(b.id, b.dir), afterCreate: [] };
    o.afterCreate = b.events();
    if (o.create.code !== 0) {
      o.aborted = `create failed (${why(o.create)})`;
      return o;
    }
    o.start = await d.start(b.id);
    o.afterStart = b.events();
    if (o.start.code !== 0) {
      o.aborted = `start failed (${why(o.start)})`;
      return o;
    }
    await waitFor(() => existsSync(join(b.out, 'signals.ready')), 10_000);
    await d.kill(b.id, 'KILL');
    o.stopped = (await d.waitStatus(b.id, 'stopped', 10_000))?.status === 'stopped';
    o.report = b.report();
    o.delete = await d.delete(b.id);
    o.afterDelete = b.events();
    o.stateAfterDelete = (await d.state(b.id)).result.code;
    await d.remove(b.id);
    return o;
  });
}

async function hooksUpTo<K extends keyof HookRun>(ctx: SuiteContext, step: K, scenario = allHooks): Promise<HookRun & Required<Pick<HookRun, K>>> {
  const o = await scenario(ctx);
  if (o[step] === undefined) fail(o.aborted ?? `hook scenario did not reach ${String(step)}`);
  return o as HookRun & Required<Pick<HookRun, K>>;
}

const names = (events: ProbeEvent[]) => events.map((e) => e.event);
const indexOf = (events: ProbeEvent[], name: string) => names(events).indexOf(name);

function before(events: ProbeEvent[], a: string, b: string): void {
  const i = indexOf(events, a);
  const j = indexOf(events, b);
  assert(i >= 0, `${a} hook did not run (ran: ${names(events).join(', ') || 'nothing'})`);
  assert(j >= 0, `${b} did not run (ran: ${names(events).join(', ') || 'nothing'})`);
  assert(i < j, `${a} ran after ${b} (order: ${names(events).join(', ')})`);
}

const RUNTIME_NS = ['net', 'uts', 'ipc'];
const CONTAINER_NS = ['mnt', 'net', 'uts', 'ipc'];

interface FailureRun {
  create: ExecResult;
  start?: ExecResult;
  events: ProbeEvent[];
  status?: string | null;
  deleted?: ExecResult;
  gone?: boolean;
  ranProcess: boolean;
}

/** A container whose `phase` hooks are [failing hook, succeeding hook]. */
async function failingHook(ctx: SuiteContext, phase: 'createRuntime' | 'poststart' | 'poststop'): Promise<FailureRun> {
  return ctx.memo(`hook-fail-${phase}`, async () => {
    const b = ctx.bundle(`hookfail-${phase.toLowerCase()}`);
    b.config.process.args = ['/probe', '--out', '/out/report.json', '--signals', '/out/signals'];
    b.config.hooks = { [phase]: [hostHook(ctx, b, `${phase}-fails`, ['--exit', '1']), hostHook(ctx, b, `${phase}-after`)] };
    b.write();
    const d = ctx.driver;
    const o: FailureRun = { create: await d.create(b.id, b.dir), events: [], ranProcess: false };
    if (o.create.code === 0 && phase !== 'createRuntime') {
      o.start = await d.start(b.id);
      await waitFor(() => existsSync(join(b.out, 'signals.ready')), 5_000);
      if (phase === 'poststop') {
        await d.kill(b.id, 'KILL');
        await d.waitStatus(b.id, 'stopped', 10_000);
        o.deleted = await d.delete(b.id);
        o.gone = (await d.state(b.id)).result.code !== 0;
      }
    }
    o.status = ((await d.state(b.id)).state?.status as string | undefined) ?? null;
    o.events = b.events();
    o.ranProcess = existsSync(join(b.out, 'report.json'));
    await d.remove(b.id);
    return o;
  });
}

const hooksRef = configMd('POSIX-platform Hooks');
const lifecycleRef = runtimeMd('Lifecycle');

export const hookChecks: RuntimeCheck[] = [
  must(configMd('CreateRuntime Hooks'), 'config.hooks.createRuntime.during-create', 'createRuntime hooks MUST be called as part of the create operation.', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterCreate');
    assert(indexOf(o.afterCreate, 'createRuntime-1') >= 0, `no createRuntime hook ran during create (ran: ${names(o.afterCreate).join(', ') || 'nothing'}${o.aborted ? `; ${o.aborted}` : ''})`);
  }),
  must(configMd('CreateContainer Hooks'), 'config.hooks.createContainer.during-create', 'createContainer hooks MUST be called as part of create, after the createRuntime hooks.', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterCreate');
    before(o.afterCreate, 'createRuntime-2', 'createContainer');
  }),
  must(configMd('Prestart'), 'config.hooks.prestart.before-createRuntime', 'The (deprecated) prestart hooks MUST be called before the createRuntime hooks.', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterStart');
    before(o.afterStart, 'prestart', 'createRuntime-1');
  }),
  must(hooksRef, 'config.hooks.listed-order', 'Hooks MUST be called in the listed order.', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterCreate');
    before(o.afterCreate, 'createRuntime-1', 'createRuntime-2');
  }),
  must(configMd('StartContainer Hooks'), 'config.hooks.startContainer.during-start', 'startContainer hooks MUST be called as part of start, before the user-specified process is executed.', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterStart', startHooks);
    assert(indexOf(o.afterCreate, 'startContainer') < 0, 'the startContainer hook ran during create');
    before(o.afterDelete ?? o.afterStart, 'startContainer', 'process');
  }),
  must(configMd('StartContainer Hooks'), 'config.hooks.startContainer.container-path', "The startContainer hook's path MUST resolve in the container namespace.", async (ctx) => {
    if (existsSync('/probe')) return skip('the host has a /probe of its own, so the path resolution cannot be told apart');
    const o = await hooksUpTo(ctx, 'afterStart', startHooks);
    assert(indexOf(o.afterDelete ?? o.afterStart, 'startContainer') >= 0, 'the startContainer hook with path /probe (present only in the container rootfs) did not run');
  }),
  must(configMd('Poststart'), 'config.hooks.poststart.before-start-returns', 'poststart hooks MUST be called before the start operation returns (and not during create).', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterStart');
    assert(indexOf(o.afterCreate, 'poststart') < 0, 'the poststart hook ran during create');
    assert(indexOf(o.afterStart, 'poststart') >= 0, `the poststart hook had not run when start returned (ran: ${names(o.afterStart).join(', ')})`);
  }),
  must(configMd('Poststart'), 'config.hooks.poststart.after-process-executed', 'poststart hooks MUST be called after the user-specified process is executed.', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterStart');
    const e = o.afterStart.find((x) => x.event === 'poststart');
    assert(e, 'the poststart hook did not run');
    // The hook recorded what the state's pid was running at that moment: the user program (/probe), not the runtime's init.
    assert(e.statePidCmdline?.startsWith('/probe '), `when the poststart hook ran, the container process (pid ${e.statePid}) was running ${JSON.stringify(e.statePidCmdline)}, not the user program`);
  }),
  must(configMd('Poststop'), 'config.hooks.poststop.before-delete-returns', 'poststop hooks MUST be called after the container is deleted but before delete returns.', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterDelete');
    assert(indexOf(o.afterStart!, 'poststop') < 0, 'the poststop hook ran before delete');
    const del = o.delete;
    assert(del?.code === 0, `delete failed (${del ? why(del) : 'not run'})`);
    assert(indexOf(o.afterDelete, 'poststop') >= 0, `the poststop hook had not run when delete returned (ran: ${names(o.afterDelete).join(', ')})`);
  }),
  must(hooksRef, 'config.hooks.state-on-stdin', 'The state of the container MUST be passed to hooks over stdin.', async (ctx) => {
    const problems: string[] = [];
    for (const scenario of [allHooks, startHooks]) {
      const o = await hooksUpTo(ctx, 'afterDelete', scenario);
      for (const e of o.afterDelete.filter((x) => x.event !== 'process')) {
        let state: Record<string, unknown>;
        try {
          state = JSON.parse(e.stdin) as Record<string, unknown>;
        } catch {
          problems.push(`${e.event}: stdin is not JSON (${JSON.stringify(e.stdin.slice(0, 60))})`);
          continue;
        }
        const v = checkRuntimeState(state);
        if (!v.ok) problems.push(`${e.event}: ${v.errors.map((x) => `${x.path || '/'} ${x.message}`).join(', ')}`);
        if (state.id !== o.bundle.id) problems.push(`${e.event}: id ${JSON.stringify(state.id)}`);
      }
    }
    assert(problems.length === 0, problems.join('; '));
  }),
  must(hooksRef, 'config.hooks.runtime-namespace', 'prestart, createRuntime, poststart and poststop hooks MUST be executed in the runtime namespace.', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterDelete');
    const problems: string[] = [];
    for (const name of ['prestart', 'createRuntime-1', 'poststart', 'poststop']) {
      const e = o.afterDelete.find((x) => x.event === name);
      if (!e) {
        problems.push(`${name} did not run`);
        continue;
      }
      for (const ns of RUNTIME_NS) if (e.ns[ns] !== ctx.host.ns[ns]) problems.push(`${name} ran in ${e.ns[ns]}, not the runtime's ${ctx.host.ns[ns]}`);
    }
    assert(problems.length === 0, problems.join('; '));
  }),
  must(hooksRef, 'config.hooks.container-namespace', 'createContainer and startContainer hooks MUST be executed in the container namespace.', async (ctx) => {
    const problems: string[] = [];
    for (const [name, scenario] of [['createContainer', allHooks], ['startContainer', startHooks]] as const) {
      const o = await hooksUpTo(ctx, 'afterDelete', scenario);
      const e = o.afterDelete.find((x) => x.event === name);
      if (!o.report) problems.push(`${name}: the container process wrote no report`);
      else if (!e) problems.push(`${name} did not run`);
      else for (const ns of CONTAINER_NS) if (e.ns[ns] !== o.report.ns[ns]) problems.push(`${name} ran in ${e.ns[ns]}, not the container's ${o.report.ns[ns]}`);
    }
    assert(problems.length === 0, problems.join('; '));
  }),
  must(hooksRef, 'config.hooks.args-and-env', 'A hook runs with its args as argv and its env as the environment (execv semantics).', async (ctx) => {
    const o = await hooksUpTo(ctx, 'afterCreate');
    const e = o.afterCreate.find((x) => x.event === 'createRuntime-1');
    assert(e, 'the createRuntime hook did not run');
    const hook = o.bundle.config.hooks?.createRuntime?.[0];
    assertEqual(e.argv, hook?.args, 'argv of the hook');
    assertEqual([...e.env].sort(), [...HOOK_ENV].sort(), 'environment of the hook');
  }),
  must(lifecycleRef, 'runtime.lifecycle.createRuntime-failure-errors', 'If any createRuntime hook fails, the runtime MUST generate an error and stop the container.', async (ctx) => {
    const o = await failingHook(ctx, 'createRuntime');
    assert(o.events.some((e) => e.event === 'createRuntime-fails'), 'the failing createRuntime hook never ran');
    assert(o.create.code !== 0, 'create exited 0 although a createRuntime hook failed');
    assert(!o.ranProcess, 'the user program ran');
    assert(o.status === null || o.status === 'stopped', `the container is left ${o.status}`);
  }),
  must(lifecycleRef, 'runtime.lifecycle.poststart-failure-continues', 'If a poststart hook fails, the runtime MUST log a warning; the remaining hooks and lifecycle continue as if it had succeeded.', async (ctx) => {
    const o = await failingHook(ctx, 'poststart');
    assert(o.create.code === 0, `create failed (${why(o.create)})`);
    assert(o.events.some((e) => e.event === 'poststart-fails'), 'the failing poststart hook never ran');
    assert(o.events.some((e) => e.event === 'poststart-after'), 'the poststart hook after the failing one did not run');
    assert(o.start?.code === 0, `start failed (${o.start ? why(o.start) : 'not run'})`);
    assertEqual(o.status, 'running', 'container status after the failed poststart hook');
  }),
  must(lifecycleRef, 'runtime.lifecycle.poststop-failure-continues', 'If a poststop hook fails, the runtime MUST log a warning; the remaining hooks and lifecycle continue as if it had succeeded.', async (ctx) => {
    const o = await failingHook(ctx, 'poststop');
    assert(o.create.code === 0, `create failed (${why(o.create)})`);
    assert(o.events.some((e) => e.event === 'poststop-fails'), 'the failing poststop hook never ran');
    assert(o.events.some((e) => e.event === 'poststop-after'), 'the poststop hook after the failing one did not run');
    assert(o.gone, 'the container still exists after delete');
  }),
  must(hooksRef, 'config.hooks.path-absolute', 'A hook path MUST be absolute; runtimes MUST generate an error for invalid values (a relative path).', async (ctx) => {
    const b = ctx.bundle('hookrelpath');
    b.config.hooks = { createRuntime: [{ path: 'probe', args: ['probe', '--no-report', '--event', 'relative', '--log', join(b.out, 'events.log')] }] };
    b.write();
    const r = await ctx.driver.create(b.id, b.dir);
    await ctx.driver.remove(b.id);
    assert(r.code !== 0, 'create with the relative hook path "probe" exited 0');
  }),
  must(hooksRef, 'config.hooks.timeout-positive', 'If set, a hook timeout MUST be greater than zero; runtimes MUST generate an error for invalid values (timeout 0).', async (ctx) => {
    const b = ctx.bundle('hooktimeout0');
    b.config.hooks = { createRuntime: [{ ...hostHook(ctx, b, 'zero-timeout'), timeout: 0 }] };
    b.write();
    const r = await ctx.driver.create(b.id, b.dir);
    await ctx.driver.remove(b.id);
    assert(r.code !== 0, 'create with a hook timeout of 0 exited 0');
  }),
  should(hooksRef, 'config.hooks.timeout', 'timeout is the number of seconds before aborting the hook (a hook over its timeout fails create).', async (ctx) => {
    const b = ctx.bundle('hooktimeout');
    b.config.hooks = { createRuntime: [{ ...hostHook(ctx, b, 'slow', ['--sleep', '30']), timeout: 1 }] };
    b.write();
    const t0 = Date.now();
    const r = await ctx.driver.create(b.id, b.dir, [], { timeoutMs: 20_000 });
    const ms = Date.now() - t0;
    await ctx.driver.remove(b.id);
    assert(!r.timedOut && ms < 15_000, `create was still waiting for the hook after ${Math.round(ms / 1000)}s (timeout 1s)`);
    assert(r.code !== 0, 'create exited 0 although its createRuntime hook was aborted');
  }),
];
