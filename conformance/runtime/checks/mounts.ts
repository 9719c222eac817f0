// config.md Root and Mounts: read-only and writable roots, mount order, Linux mount options
// (ro, nosuid, nodev, noexec, filesystem data), bind and recursive bind mounts, file binds.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { assert, assertEqual, fail, skip } from '../../check.js';
import { type ProbeRun, reportOf, type SuiteContext } from '../context.js';
import { mountAt, parseMountinfo } from '../host.js';
import { configMd, must, should, type RuntimeCheck } from '../spec.js';
import { defaultRun } from './scenarios.js';

const execFileP = promisify(execFile);

const DATA = 'kc bind data\n';

interface MountRun {
  run: ProbeRun;
  /** Why the host-side submount for the rbind check could not be made (that check then skips). */
  noSubmount?: string;
}

/** One container with a stack of two tmpfs, a tmpfs with options, read-only dir and file binds, and bind vs rbind of a tree with a submount. */
async function mountRun(ctx: SuiteContext): Promise<MountRun> {
  return ctx.memo('mounts', async () => {
    let noSubmount: string | undefined;
    const run = await ctx.runProbe('mounts', {
      args: [
        '--stat', '/kc-stack',
        '--stat', '/kc-tmpfs',
        '--read', '/kc-ro/hello.txt',
        '--write', '/kc-ro/new.txt',
        '--read', '/kc-file',
        '--stat', '/kc-bind/sub/inner',
        '--stat', '/kc-rbind/sub/inner',
      ],
      mutate: async (c, b) => {
        for (const d of ['kc-stack', 'kc-tmpfs', 'kc-ro', 'kc-bind', 'kc-rbind']) mkdirSync(join(b.rootfs, d));
        writeFileSync(join(b.rootfs, 'kc-file'), '');
        const data = join(b.dir, 'kc-data');
        mkdirSync(data);
        writeFileSync(join(data, 'hello.txt'), DATA);
        writeFileSync(join(b.dir, 'kc-file.txt'), DATA);
        const tree = join(b.dir, 'kc-tree');
        mkdirSync(join(tree, 'sub'), { recursive: true });
        try {
          await execFileP('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'kc-submount', join(tree, 'sub')]);
          ctx.onCleanup(() => execFileP('umount', ['-l', join(tree, 'sub')]).catch(() => undefined));
          writeFileSync(join(tree, 'sub', 'inner'), 'inner\n');
        } catch (err) {
          noSubmount = `cannot mount a tmpfs on the host (${(err as Error).message.split('\n')[0]})`;
        }
        c.mounts.push(
          { destination: '/kc-stack', type: 'tmpfs', source: 'tmpfs', options: ['mode=700'] },
          { destination: '/kc-stack', type: 'tmpfs', source: 'tmpfs', options: ['mode=750'] },
          { destination: '/kc-tmpfs', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', 'mode=1750', 'size=1m'] },
          { destination: '/kc-ro', type: 'bind', source: data, options: ['rbind', 'ro'] },
          { destination: '/kc-file', type: 'bind', source: join(b.dir, 'kc-file.txt'), options: ['bind', 'ro'] },
          { destination: '/kc-bind', type: 'bind', source: tree, options: ['bind'] },
          { destination: '/kc-rbind', type: 'bind', source: tree, options: ['rbind'] },
        );
      },
    });
    return { run, noSubmount };
  });
}

const rootRef = configMd('Root');
const mountsRef = configMd('Mounts');
const optionsRef = configMd('Linux mount options');

export const mountChecks: RuntimeCheck[] = [
  must(rootRef, 'config.root.readonly', 'If root.readonly is true then the root filesystem MUST be read-only inside the container.', async (ctx) => {
    const r = reportOf(await defaultRun(ctx));
    assertEqual(r.writes['/kc-rootfs-write']?.error, 'EROFS', 'error creating a file in /');
    const root = mountAt(r.mountinfo, '/');
    assert(root?.options.includes('ro'), `/ is not mounted read-only (${root?.options.join(',') ?? 'no mount'})`);
  }),
  must(rootRef, 'config.root.writable', 'root.readonly defaults to false: the root filesystem is writable (and is the directory at root.path).', async (ctx) => {
    const run = await ctx.runProbe('rootrw', {
      args: ['--write', '/kc-written'],
      mutate: (c) => {
        delete c.root!.readonly;
      },
    });
    const r = reportOf(run);
    assert(r.writes['/kc-written']?.ok, `creating /kc-written failed (${r.writes['/kc-written']?.error})`);
    assert(existsSync(join(run.bundle.rootfs, 'kc-written')), 'the file written to / is not in the bundle\'s rootfs directory');
  }),
  must(rootRef, 'config.root.absolute-path', 'root.path is either an absolute path or a path relative to the bundle (absolute works).', async (ctx) => {
    const run = await ctx.runProbe('rootabs', {
      mutate: (c, b) => {
        c.root!.path = b.rootfs;
      },
    });
    reportOf(run);
  }),
  must(mountsRef, 'config.mounts.relative-destination', 'A relative mount destination MUST be interpreted as relative to "/".', async (ctx) => {
    const run = await ctx.runProbe('reldest', {
      mutate: (c, b) => {
        mkdirSync(join(b.rootfs, 'kc-reldest'));
        c.mounts.push({ destination: 'kc-reldest', type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] });
      },
    });
    const m = mountAt(reportOf(run).mountinfo, '/kc-reldest');
    assert(m?.fstype === 'tmpfs', `no tmpfs at /kc-reldest (${m ? m.fstype : 'nothing mounted there'})`);
  }),
  must(mountsRef, 'config.mounts.bind-relative-source', 'Path values for bind mount sources are either absolute or relative to the bundle (relative works).', async (ctx) => {
    const run = await ctx.runProbe('relsrc', {
      args: ['--read', '/kc-relsrc/hello.txt'],
      mutate: (c, b) => {
        mkdirSync(join(b.rootfs, 'kc-relsrc'));
        mkdirSync(join(b.dir, 'kc-data'));
        writeFileSync(join(b.dir, 'kc-data', 'hello.txt'), DATA);
        c.mounts.push({ destination: '/kc-relsrc', type: 'bind', source: 'kc-data', options: ['rbind', 'ro'] });
      },
    });
    assertEqual(reportOf(run).files['/kc-relsrc/hello.txt']?.data, DATA, 'content seen through the bind mount of the bundle-relative source kc-data');
  }),
  must(mountsRef, 'config.mounts.order', 'The runtime MUST mount entries in the listed order (the later of two mounts on one path is on top).', async (ctx) => {
    const { run } = await mountRun(ctx);
    const stack = parseMountinfo(reportOf(run).mountinfo ?? '').filter((m) => m.mountpoint === '/kc-stack');
    const describe = stack.map((m) => m.superOptions.find((o) => o.startsWith('mode=')) ?? '?').join(' then ');
    assert(stack.length === 2, `expected 2 mounts on /kc-stack, found ${stack.length}`);
    const [lower, upper] = stack;
    // mode=700 is listed first in config.json, mode=750 second: the second must be mounted on top of the first.
    assert(upper.parent === lower.id && lower.superOptions.includes('mode=700') && upper.superOptions.includes('mode=750'), `mounts on /kc-stack, bottom to top: ${describe} (want mode=700 then mode=750)`);
  }),
  must(optionsRef, 'config.mounts.options-flags', 'Runtimes MUST implement the nosuid, nodev and noexec options.', async (ctx) => {
    const { run } = await mountRun(ctx);
    const m = mountAt(reportOf(run).mountinfo, '/kc-tmpfs');
    assert(m, '/kc-tmpfs is not a mount point');
    const missing = ['nosuid', 'nodev', 'noexec'].filter((o) => !m.options.includes(o));
    assert(missing.length === 0, `/kc-tmpfs lacks ${missing.join(', ')} (options: ${m.options.join(',')})`);
  }),
  should(optionsRef, 'config.mounts.options-data', 'Runtimes SHOULD pass unknown options as filesystem-specific data to mount(2) (tmpfs mode= and size=).', async (ctx) => {
    const { run } = await mountRun(ctx);
    const m = mountAt(reportOf(run).mountinfo, '/kc-tmpfs');
    assert(m, '/kc-tmpfs is not a mount point');
    assertEqual(m.fstype, 'tmpfs', 'type of /kc-tmpfs');
    const missing = ['size=1024k', 'mode=1750'].filter((o) => !m.superOptions.includes(o));
    assert(missing.length === 0, `size=1m and mode=1750 did not both reach tmpfs (super options: ${m.superOptions.join(',')})`);
  }),
  must(optionsRef, 'config.mounts.bind-ro', 'Runtimes MUST implement bind/rbind and ro: a read-only bind mount shows the source and refuses writes.', async (ctx) => {
    const { run } = await mountRun(ctx);
    const r = reportOf(run);
    assertEqual(r.files['/kc-ro/hello.txt']?.data, DATA, 'content of the bind-mounted /kc-ro/hello.txt');
    assertEqual(r.writes['/kc-ro/new.txt']?.error, 'EROFS', 'error writing into the ro bind mount');
    const m = mountAt(r.mountinfo, '/kc-ro');
    assert(m?.options.includes('ro'), `/kc-ro is not mounted read-only (${m?.options.join(',') ?? 'no mount'})`);
  }),
  must(optionsRef, 'config.mounts.bind-file', 'A bind mount may have a file as its source; the file is visible at the destination.', async (ctx) => {
    const { run } = await mountRun(ctx);
    assertEqual(reportOf(run).files['/kc-file']?.data, DATA, 'content of the file bind mount /kc-file');
  }),
  must(optionsRef, 'config.mounts.rbind-recursive', 'Runtimes MUST implement bind (not recursive) and rbind (recursive bind mount).', async (ctx) => {
    const { run, noSubmount } = await mountRun(ctx);
    if (noSubmount) return skip(noSubmount);
    const r = reportOf(run);
    assert(r.stats['/kc-rbind/sub/inner']?.ok, 'the submount of the source is missing under the rbind mount');
    if (r.stats['/kc-bind/sub/inner']?.ok) fail('the submount of the source appears under the (non-recursive) bind mount');
  }),
];
