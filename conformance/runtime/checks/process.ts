// config.md Process, POSIX process, Linux process, User, Hostname, Domainname, Extensibility and
// Valid values, as the probe sees them from inside the container.
import { assert, assertEqual, skip } from '../../check.js';
import { BASE_CAPS, BASE_ENV, type ProbeRunOptions, reportOf, type SuiteContext, why } from '../context.js';
import { capNames } from '../host.js';
import { configMd, must, should, type RuntimeCheck } from '../spec.js';
import { DEFAULT_CWD, DEFAULT_DOMAINNAME, DEFAULT_RLIMITS, USER, USER_CAPS, defaultRun, userRun } from './scenarios.js';

const sorted = (xs: readonly string[] | undefined) => [...(xs ?? [])].sort();

function capsProblems(status: Record<string, string>, want: Record<string, readonly string[]>): string[] {
  const fields: Record<string, string> = { bounding: 'CapBnd', effective: 'CapEff', permitted: 'CapPrm', inheritable: 'CapInh', ambient: 'CapAmb' };
  const out: string[] = [];
  for (const [set, field] of Object.entries(fields)) {
    const got = capNames(status[field]);
    const expected = sorted(want[set] ?? []);
    if (got.join(',') !== expected.join(',')) out.push(`${set}: expected [${expected.join(', ')}], got [${got.join(', ')}]`);
  }
  return out;
}

/** Runs a configuration the runtime must refuse; returns whether create failed. */
async function refused(ctx: SuiteContext, name: string, mutate: ProbeRunOptions['mutate']): Promise<{ code: number; ran: boolean }> {
  const r = await ctx.runProbe(name, { mutate });
  return { code: r.result.code, ran: r.report !== null };
}

const processRef = configMd('Process');
const posixProcessRef = configMd('POSIX process');
const linuxProcessRef = configMd('Linux process');
const userRef = configMd('POSIX-platform User');

export const processChecks: RuntimeCheck[] = [
  must(processRef, 'config.process.args', 'The container process runs with args as its argv (execvp semantics).', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    assertEqual(r.argv, (await defaultRun(ctx)).bundle.config.process.args, 'argv');
  }),
  must(processRef, 'config.process.args-path-lookup', 'args[0] is used with the same semantics as execvp\'s file: a name without a slash is searched in PATH.', async (ctx) => {
    const run = await ctx.runProbe('pathlookup', {
      mutate: (c) => {
        c.process.args = ['probe', '--out', '/out/report.json'];
        c.process.env = ['PATH=/kc-no-such-dir:/', 'HOME=/root'];
      },
    });
    const r = reportOf(run);
    assertEqual(r.argv[0], 'probe', 'argv[0]');
  }),
  must(processRef, 'config.process.env', 'The container process environment holds every env entry (environ semantics).', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const missing = BASE_ENV.filter((e) => !r.env.includes(e));
    assert(missing.length === 0, `missing from the environment: ${missing.join(', ')} (got ${r.env.join(', ')})`);
  }),
  must(processRef, 'config.process.cwd', 'cwd is the working directory that will be set for the executable.', async (ctx) => {
    assertEqual(reportOf(await defaultRun(ctx)).cwd, DEFAULT_CWD, 'working directory');
  }),
  must(processRef, 'config.process.consoleSize-ignored', 'Runtimes MUST ignore consoleSize if terminal is false or unset.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    assert(!r.tty['0']?.isatty && !r.tty['1']?.isatty, 'the process got a terminal although terminal is false');
  }),
  must(posixProcessRef, 'config.process.rlimits', 'For each rlimits entry, getrlimit(type) MUST succeed and rlim_cur/rlim_max MUST match soft/hard.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const problems = DEFAULT_RLIMITS.filter((l) => {
      const got = r.rlimits[l.type];
      return !got || got[0] !== l.soft || got[1] !== l.hard;
    }).map((l) => `${l.type}: expected ${l.soft}/${l.hard}, got ${JSON.stringify(r.rlimits[l.type])}`);
    assert(problems.length === 0, problems.join('; '));
  }),
  must(posixProcessRef, 'config.process.rlimits-unknown-type-errors', 'The runtime MUST generate an error for rlimit types which cannot be mapped to a kernel interface.', async (ctx) => {
    const r = await refused(ctx, 'badrlimit', (c) => {
      c.process.rlimits = [{ type: 'RLIMIT_KC_BOGUS', soft: 1, hard: 1 }];
    });
    assert(r.code !== 0 && !r.ran, 'a container with rlimit type RLIMIT_KC_BOGUS ran');
  }),
  must(posixProcessRef, 'config.process.rlimits-duplicate-errors', 'If rlimits contains duplicated entries with the same type, the runtime MUST generate an error.', async (ctx) => {
    const r = await refused(ctx, 'duprlimit', (c) => {
      c.process.rlimits = [
        { type: 'RLIMIT_NOFILE', soft: 1000, hard: 1000 },
        { type: 'RLIMIT_NOFILE', soft: 900, hard: 900 },
      ];
    });
    assert(r.code !== 0 && !r.ran, 'a container with two RLIMIT_NOFILE entries ran');
  }),
  must(linuxProcessRef, 'config.process.capabilities.root', 'The bounding, effective, permitted, inheritable and ambient sets are the ones configured (root process).', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    const p = capsProblems(r.status, { bounding: BASE_CAPS, effective: BASE_CAPS, permitted: BASE_CAPS, inheritable: [], ambient: [] });
    assert(p.length === 0, p.join('; '));
  }),
  must(linuxProcessRef, 'config.process.capabilities.non-root', 'Capability sets of a non-root process: bounding as configured, ambient (and so inheritable, permitted, effective) as configured.', async (ctx) => {
    const r = reportOf(await userRun(ctx));
    const p = capsProblems(r.status, { bounding: USER_CAPS.bounding, ambient: USER_CAPS.ambient, inheritable: USER_CAPS.inheritable, permitted: USER_CAPS.ambient, effective: USER_CAPS.ambient });
    assert(p.length === 0, p.join('; '));
  }),
  should(linuxProcessRef, 'config.process.capabilities.unknown-tolerated', 'Runtimes SHOULD NOT fail if the configuration requests capabilities that cannot be granted (they MUST log a warning).', async (ctx) => {
    const run = await ctx.runProbe('unknowncap', {
      mutate: (c) => {
        c.process.capabilities!.bounding!.push('CAP_KC_NOT_A_CAPABILITY');
      },
    });
    assert(run.result.code === 0 && run.report, `the container did not run with an unknown capability (${why(run.result)})`);
  }),
  must(linuxProcessRef, 'config.process.noNewPrivileges', 'noNewPrivileges true sets no_new_privs for the process; false leaves it unset.', async (ctx) => {
    const on = reportOf(await defaultRun(ctx));
    assertEqual(on.status.NoNewPrivs, '1', 'NoNewPrivs with noNewPrivileges: true');
    if (ctx.host.status.NoNewPrivs === '1') return skip('the suite itself runs with no_new_privs, so a container without it cannot be observed');
    const off = reportOf(await userRun(ctx));
    assertEqual(off.status.NoNewPrivs, '0', 'NoNewPrivs with noNewPrivileges: false');
  }),
  must(linuxProcessRef, 'config.process.oomScoreAdj-set', 'If oomScoreAdj is set, the runtime MUST set oom_score_adj to the given value.', async (ctx) => {
    const run = await ctx.runProbe('oomset', {
      mutate: (c) => {
        c.process.oomScoreAdj = 123;
      },
    });
    assertEqual(reportOf(run).oomScoreAdj?.trim(), '123', 'oom_score_adj in the container');
  }),
  must(linuxProcessRef, 'config.process.oomScoreAdj-unset', 'If oomScoreAdj is not set, the runtime MUST NOT change the value of oom_score_adj.', async (ctx) => {
    const run = await ctx.runProbe('oomunset', { exec: { oomScoreAdj: 37 } });
    assertEqual(reportOf(run).oomScoreAdj?.trim(), '37', 'oom_score_adj in the container (the runtime was started with 37)');
  }),
  must(userRef, 'config.user.root', 'uid and gid specify the user and group IDs of the process (0:0).', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    assertEqual(r.uid, [0, 0, 0], 'real, effective and saved uid');
    assertEqual(r.gid, [0, 0, 0], 'real, effective and saved gid');
  }),
  must(userRef, 'config.user.non-root', 'uid and gid specify the user and group IDs of the process.', async (ctx) => {
    const r = reportOf(await userRun(ctx));
    assertEqual(r.uid, [USER.uid, USER.uid, USER.uid], 'real, effective and saved uid');
    assertEqual(r.gid, [USER.gid, USER.gid, USER.gid], 'real, effective and saved gid');
  }),
  must(userRef, 'config.user.additionalGids', 'additionalGids are added to the process as supplementary groups.', async (ctx) => {
    const r = reportOf(await userRun(ctx));
    const missing = USER.additionalGids.filter((g) => !r.groups.includes(g));
    const extra = r.groups.filter((g) => !USER.additionalGids.includes(g) && g !== USER.gid);
    assert(missing.length === 0 && extra.length === 0, `supplementary groups are [${r.groups.join(', ')}], expected [${USER.additionalGids.join(', ')}]`);
  }),
  must(userRef, 'config.user.umask', 'umask specifies the umask of the user.', async (ctx) => {
    const r = reportOf(await userRun(ctx));
    assertEqual(r.umask.toString(8), USER.umask.toString(8), 'umask (octal)');
  }),
  must(processRef, 'config.process.args-required', 'args: at least one entry is REQUIRED; runtimes MUST generate an error for invalid values (empty args).', async (ctx) => {
    const r = await refused(ctx, 'noargs', (c) => {
      c.process.args = [];
    });
    assert(r.code !== 0 && !r.ran, 'a container with empty process.args ran');
  }),
  must(processRef, 'config.process.cwd-absolute', 'cwd MUST be an absolute path; runtimes MUST generate an error for invalid values (a relative cwd).', async (ctx) => {
    const r = await refused(ctx, 'relcwd', (c) => {
      c.process.cwd = 'dev';
    });
    assert(r.code !== 0 && !r.ran, 'a container with the relative cwd "dev" ran');
  }),
  should(linuxProcessRef, 'config.process.scheduler', 'scheduler sets the scheduling policy and nice value of the process.', async (ctx) => {
    const run = await ctx.runProbe('scheduler', {
      mutate: (c) => {
        c.process.scheduler = { policy: 'SCHED_BATCH', nice: 5 };
      },
    });
    const r = reportOf(run);
    assertEqual({ policy: r.sched.policy, nice: r.sched.nice }, { policy: 3, nice: 5 }, 'scheduling policy (SCHED_BATCH = 3) and nice value');
  }),
  should(linuxProcessRef, 'config.process.ioPriority', 'ioPriority configures the I/O scheduling class and priority of the container\'s processes.', async (ctx) => {
    const run = await ctx.runProbe('ioprio', {
      mutate: (c) => {
        c.process.ioPriority = { class: 'IOPRIO_CLASS_BE', priority: 6 };
      },
    });
    assertEqual(reportOf(run).sched.ioprio, (2 << 13) | 6, 'ioprio_get value (class BE = 2, priority 6)');
  }),
  must(configMd('Hostname'), 'config.hostname', 'hostname specifies the container\'s hostname as seen by processes running inside the container.', async (ctx) => {
    assertEqual(reportOf(await defaultRun(ctx)).hostname, 'kc-host', 'hostname');
  }),
  must(configMd('Domainname'), 'config.domainname', 'domainname specifies the container\'s domainname as seen by processes running inside the container.', async (ctx) => {
    assertEqual(reportOf(await defaultRun(ctx)).domainname, DEFAULT_DOMAINNAME, 'domainname');
  }),
  must(configMd('Extensibility'), 'config.extensibility.unknown-properties', 'Runtimes MUST ignore unknown properties (not generate errors).', async (ctx) => {
    const run = await ctx.runProbe('unknownprops', {
      mutate: (c) => {
        const loose = c as unknown as Record<string, Record<string, unknown>>;
        loose['org.keel.conformance.unknown'] = { nested: [1, 2, 3] };
        loose.process['kcUnknownField'] = true;
        loose.linux['kcUnknownField'] = { a: 'b' };
        c.annotations = { 'org.keel.conformance.unknown-key': 'some value' };
      },
    });
    assert(run.result.code === 0 && run.report, `the container did not run with unknown properties (${why(run.result)})`);
  }),
  must(configMd('Valid values'), 'config.valid-values.unsupported-errors', 'Runtimes MUST generate an error when invalid or unsupported values are encountered (unknown namespace type).', async (ctx) => {
    const r = await refused(ctx, 'badns', (c) => {
      (c.linux.namespaces as { type: string }[]).push({ type: 'kc-bogus' });
    });
    assert(r.code !== 0 && !r.ran, 'a container with namespace type "kc-bogus" ran');
  }),
];
