// runtime.md Operations: the errors each operation MUST generate (missing id, unknown container,
// duplicate or invalid id, a config that cannot be created) and that an error leaves nothing behind;
// kill and delete of a created container; plus command-line behaviour of runc-compatible CLIs.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assert, assertEqual, skip } from '../../check.js';
import { type SuiteContext, why } from '../context.js';
import { controllerDir } from '../host.js';
import { cliMd, must, runtimeMd, should, waitFor, type RuntimeCheck } from '../spec.js';

const missing = (ctx: SuiteContext) => ctx.id('no-such-container');

/** A check that one invocation without a container id, or naming a missing container, fails. */
function errorCheck(op: 'state' | 'start' | 'kill' | 'delete', title: string, kind: 'no-id' | 'missing'): RuntimeCheck {
  const statement =
    kind === 'no-id'
      ? `${op} MUST generate an error if it is not provided the container ID.`
      : `Attempting to ${op === 'state' ? 'query' : op} a container that does not exist MUST generate an error.`;
  return must(runtimeMd(title), `runtime.${op}.${kind === 'no-id' ? 'no-id-errors' : 'missing-container-errors'}`, statement, async (ctx) => {
    const args = kind === 'no-id' ? [op] : op === 'kill' ? [op, missing(ctx), 'KILL'] : [op, missing(ctx)];
    const r = await ctx.driver.exec(args);
    assert(r.code !== 0, `\`${args.join(' ')}\` exited 0`);
  });
}

interface Duplicate {
  first: number;
  stateBefore: Record<string, unknown> | null;
  second: number;
  stateAfter: Record<string, unknown> | null;
  firstError?: string;
}

async function duplicate(ctx: SuiteContext): Promise<Duplicate> {
  return ctx.memo('duplicate-id', async () => {
    const a = ctx.bundle('dup');
    a.write();
    const first = await ctx.driver.create(a.id, a.dir);
    const stateBefore = (await ctx.driver.state(a.id)).state;
    const b = ctx.bundle('dup-other');
    b.config.hostname = 'kc-other';
    b.write();
    const second = await ctx.driver.create(a.id, b.dir);
    const stateAfter = (await ctx.driver.state(a.id)).state;
    await ctx.driver.remove(a.id);
    return { first: first.code, stateBefore, second: second.code, stateAfter, firstError: first.code ? why(first) : undefined };
  });
}

interface FailedCreate {
  create: number;
  stderr: string;
  stateCode: number;
  cgroupLeft: string | null;
  ranProcess: boolean;
  retry: number;
  retryError?: string;
}

/** create with a configuration the runtime cannot realise (a bind mount of a missing source). */
async function failedCreate(ctx: SuiteContext): Promise<FailedCreate> {
  return ctx.memo('failed-create', async () => {
    const b = ctx.bundle('badcfg');
    const cgroupsPath = `/keel-conformance-${process.pid}-${b.id}`;
    b.config.linux.cgroupsPath = cgroupsPath;
    b.config.mounts.push({ destination: '/kc-missing', type: 'bind', source: join(b.dir, 'no-such-source'), options: ['rbind', 'ro'] });
    b.config.process.args = ['/probe', '--out', '/out/report.json'];
    b.write();
    const r = await ctx.driver.create(b.id, b.dir);
    const state = await ctx.driver.state(b.id);
    const pidsDir = controllerDir(ctx.host, 'pids', cgroupsPath) ?? controllerDir(ctx.host, '', cgroupsPath, true);
    const cgroupLeft = pidsDir && existsSync(pidsDir) ? pidsDir : null;
    const ranProcess = existsSync(join(b.out, 'report.json'));
    await ctx.driver.remove(b.id);
    b.config.mounts.pop();
    b.write();
    const retry = await ctx.driver.create(b.id, b.dir);
    await ctx.driver.remove(b.id);
    return { create: r.code, stderr: r.stderr, stateCode: state.result.code, cgroupLeft, ranProcess, retry: retry.code, retryError: retry.code ? why(retry) : undefined };
  });
}

export const operationChecks: RuntimeCheck[] = [
  errorCheck('state', 'Query State', 'no-id'),
  errorCheck('state', 'Query State', 'missing'),
  errorCheck('start', 'Start', 'no-id'),
  errorCheck('start', 'Start', 'missing'),
  errorCheck('kill', 'Kill', 'no-id'),
  errorCheck('kill', 'Kill', 'missing'),
  errorCheck('delete', 'Delete', 'no-id'),
  errorCheck('delete', 'Delete', 'missing'),

  must(runtimeMd('Create'), 'runtime.create.no-id-errors', 'create MUST generate an error if it is not provided the container ID.', async (ctx) => {
    const b = ctx.bundle('noid');
    b.write();
    const r = await ctx.driver.exec(['create', '--bundle', b.dir]);
    assert(r.code !== 0, '`create --bundle DIR` without an id exited 0');
    assert(!existsSync(join(b.out, 'report.json')), 'the user program ran');
  }),
  must(runtimeMd('Create'), 'runtime.create.missing-bundle-errors', 'create MUST generate an error if it is not provided a valid path to the bundle.', async (ctx) => {
    const id = ctx.id('nobundle');
    const r = await ctx.driver.create(id, join(ctx.tmp, 'no-such-bundle'));
    assert(r.code !== 0, 'create with a bundle directory that does not exist exited 0');
    const s = await ctx.driver.state(id);
    assert(s.result.code !== 0, 'a container exists after the failed create');
  }),
  must(runtimeMd('Create'), 'runtime.create.duplicate-id-errors', 'If the ID is not unique within the scope of the runtime, create MUST generate an error.', async (ctx) => {
    const d = await duplicate(ctx);
    assert(d.first === 0, `the first create failed (${d.firstError})`);
    assert(d.second !== 0, 'a second create with the same id exited 0');
  }),
  must(runtimeMd('Create'), 'runtime.create.duplicate-id-no-new-container', 'With a duplicate ID a new container MUST NOT be created (the existing one is untouched).', async (ctx) => {
    const d = await duplicate(ctx);
    assert(d.first === 0, `the first create failed (${d.firstError})`);
    assert(d.stateAfter, 'the existing container is gone after the duplicate create');
    assertEqual(d.stateAfter.status, 'created', 'status of the existing container');
    assertEqual(d.stateAfter.pid, d.stateBefore?.pid, 'pid of the existing container');
    assertEqual(d.stateAfter.bundle, d.stateBefore?.bundle, 'bundle of the existing container');
  }),
  must(runtimeMd('Create'), 'runtime.create.invalid-id-errors', 'If the ID is not valid, create MUST generate an error and a new container MUST NOT be created.', async (ctx) => {
    const b = ctx.bundle('badid');
    b.write();
    const id = `kc/../${b.id}`;
    const r = await ctx.driver.create(id, b.dir);
    assert(r.code !== 0, `create with the id ${JSON.stringify(id)} exited 0`);
    assert(!existsSync(join(b.out, 'report.json')), 'the user program ran');
  }),
  must(runtimeMd('Create'), 'runtime.create.unrealisable-config-errors', 'If the runtime cannot create the container as specified in config.json, it MUST generate an error.', async (ctx) => {
    const f = await failedCreate(ctx);
    assert(f.create !== 0, 'create with a bind mount of a missing source exited 0');
  }),
  must(runtimeMd('Errors'), 'runtime.errors.no-trace', 'Generating an error MUST leave the state of the environment as if the operation were never attempted.', async (ctx) => {
    const f = await failedCreate(ctx);
    if (f.create === 0) return skip('create did not fail (see runtime.create.unrealisable-config-errors)');
    assert(f.stateCode !== 0, 'a container is left behind (`state` succeeds after the failed create)');
    assert(f.cgroupLeft === null, `the container's cgroup is left behind: ${f.cgroupLeft}`);
    assert(!f.ranProcess, 'the user program ran');
    assert(f.retry === 0, `create with the same id and a fixed config then failed (${f.retryError})`);
  }),
  must(runtimeMd('Kill'), 'runtime.kill.created', 'kill of a created container MUST send the signal to the container process (it stops).', async (ctx) => {
    const b = ctx.bundle('killcreated');
    b.write();
    const c = await ctx.driver.create(b.id, b.dir);
    assert(c.code === 0, `create failed (${why(c)})`);
    const k = await ctx.driver.kill(b.id, 'KILL');
    assert(k.code === 0, `kill KILL of a created container failed (${why(k)})`);
    const s = await ctx.driver.waitStatus(b.id, 'stopped', 10_000);
    assertEqual(s?.status, 'stopped', 'status after SIGKILL');
    assert(!existsSync(join(b.out, 'report.json')), 'the user program ran although the container was never started');
    const d = await ctx.driver.delete(b.id);
    assert(d.code === 0, `delete of the stopped container failed (${why(d)})`);
  }),
  must(runtimeMd('Delete'), 'runtime.delete.created-errors', 'Attempting to delete a container that is not stopped (here: created) MUST generate an error and have no effect.', async (ctx) => {
    const b = ctx.bundle('delcreated');
    b.write();
    const c = await ctx.driver.create(b.id, b.dir);
    assert(c.code === 0, `create failed (${why(c)})`);
    const before = (await ctx.driver.state(b.id)).state;
    const d = await ctx.driver.delete(b.id);
    const after = (await ctx.driver.state(b.id)).state;
    await ctx.driver.remove(b.id);
    assert(d.code !== 0, 'delete of a created (not stopped) container exited 0');
    assertEqual(after?.status, 'created', 'status after the refused delete');
    assertEqual(after?.pid, before?.pid, 'pid after the refused delete');
  }),

  must(cliMd('Global usage'), 'cli.unknown-command-errors', 'If the runtime is invoked with an unrecognized command, it MUST exit with a nonzero exit code.', async (ctx) => {
    const r = await ctx.driver.exec(['kc-no-such-command']);
    assert(r.code !== 0, '`RUNTIME kc-no-such-command` exited 0');
  }),
  must(cliMd('create'), 'cli.create.stdio-passed-through', 'Without a terminal, the runtime MUST pass its stdin and stdout through to the container process.', async (ctx) => {
    const b = ctx.bundle('stdio');
    const input = join(ctx.tmp, `${b.id}.stdin`);
    const text = `kc stdin ${b.id}\nsecond line\n`;
    writeFileSync(input, text);
    b.config.process.args = ['/probe', '--stdin'];
    b.write();
    const r = await ctx.driver.run(b.id, b.dir, [], { stdinFile: input });
    await ctx.driver.remove(b.id);
    assert(r.code === 0, `run failed (${why(r)})`);
    let report: { stdin?: string; argv?: string[] } | null = null;
    try {
      report = JSON.parse(r.stdout) as { stdin?: string };
    } catch {
      /* checked below */
    }
    assert(report, `the runtime's stdout does not hold the report the container process printed (stdout: ${JSON.stringify(r.stdout.slice(0, 120))})`);
    assertEqual(report.stdin, text, "what the container process read from the runtime's stdin");
  }),
  should(cliMd('create'), 'cli.run.exit-status', 'runc-compatible `run` exits with the exit status of the container process.', async (ctx) => {
    const r = await ctx.runProbe('exit7', { args: ['--exit', '7'] });
    assertEqual(r.result.code, 7, 'exit code of `run` when the process exits 7');
  }),
  should(cliMd('kill'), 'cli.run.signal-status', 'runc-compatible `run` exits with 128+N when the container process is killed by signal N.', async (ctx) => {
    const b = ctx.bundle('runkill');
    b.config.process.args = ['/probe', '--out', '/out/report.json', '--signals', '/out/signals'];
    b.write();
    const running = ctx.driver.run(b.id, b.dir);
    const ready = await waitFor(() => existsSync(join(b.out, 'signals.ready')), 10_000);
    if (!ready) {
      await ctx.driver.remove(b.id);
      const r = await running;
      assert(false, `the container never became ready (${why(r)})`);
    }
    const k = await ctx.driver.kill(b.id, 'KILL');
    const r = await running;
    await ctx.driver.remove(b.id);
    assert(k.code === 0, `kill KILL failed (${why(k)})`);
    assertEqual(r.code, 137, 'exit code of `run` when the process is killed by SIGKILL');
  }),
  must(cliMd('state'), 'cli.state.json-stdout', 'state: the runtime MUST print the state JSON to its stdout.', async (ctx) => {
    const b = ctx.bundle('statejson');
    b.write();
    const c = await ctx.driver.create(b.id, b.dir);
    assert(c.code === 0, `create failed (${why(c)})`);
    const r = await ctx.driver.exec(['state', b.id]);
    await ctx.driver.remove(b.id);
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(r.stdout);
    } catch {
      /* checked below */
    }
    assert(r.code === 0, `state failed (${why(r)})`);
    assert(parsed && typeof parsed === 'object' && (parsed as { id?: string }).id === b.id, `stdout is not the container's state JSON: ${JSON.stringify(r.stdout.slice(0, 120))}`);
  }),
];

