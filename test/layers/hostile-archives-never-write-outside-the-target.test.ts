import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { applyLayer, type ApplyOptions } from '../../src/layers/index.js';
import { loadFsSys } from '../../src/runtime/sys/fs.js';
import { tempDir, snapshot, diffSnapshots, rawTar, rawPax, rawEntry, chunks, type RawEntry, which } from './helpers.js';

// The corpus: archives written header by header, so they can say anything. For every one, the
// test checks the applier's verdict AND that nothing outside the target changed: a sentinel tree
// next to the target (contents, modes, owners, times, xattrs) and the list of everything in the
// parent directory.
const base = tempDir('hostile');
const outside = join(base, 'outside');
fs.mkdirSync(join(outside, 'dir'), { recursive: true });
fs.writeFileSync(join(outside, 'secret'), 'secret\n');
fs.writeFileSync(join(outside, 'dir', 'keep'), 'keep\n');
fs.chmodSync(outside, 0o750);
let counter = 0;

function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      if (!rel && n.startsWith('target-')) { out.push(r); continue; } // targets may change inside
      out.push(r);
      if (fs.lstatSync(join(dir, r)).isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

type Layer = (RawEntry | Buffer)[];

/** Applies layers in order to a fresh target; returns the error message of the first refused one. */
async function attempt(layers: Layer[], opts: ApplyOptions = {}): Promise<{ target: string; error?: string; refusedLayer?: number }> {
  const target = join(base, `target-${++counter}`);
  const beforeOutside = await snapshot(outside);
  const beforeList = listing(base);
  fs.mkdirSync(target);
  let error: string | undefined;
  let refusedLayer: number | undefined;
  for (const [i, layer] of layers.entries()) {
    try {
      await applyLayer(target, chunks(rawTar(layer), 512), { ...opts, what: `layer ${i + 1}` });
    } catch (err) {
      error = (err as Error).message;
      refusedLayer = i + 1;
      break;
    }
  }
  assert.deepEqual(diffSnapshots(beforeOutside, await snapshot(outside)), [], 'the sentinel tree outside the target changed');
  assert.deepEqual(listing(base), [...beforeList, `target-${counter}`].sort(), 'something appeared or vanished next to the target');
  assert.ok(!fs.existsSync('/escaped') && !fs.existsSync('/tmp/escaped'), 'a file escaped to / or /tmp');
  return { target, error, refusedLayer };
}

const file = (name: string, data = 'pwned\n', extra: Partial<RawEntry> = {}): RawEntry => ({ name, data, ...extra });
const dir = (name: string, extra: Partial<RawEntry> = {}): RawEntry => ({ name, type: '5', mode: 0o755, ...extra });
const symlink = (name: string, linkname: string): RawEntry => ({ name, type: '2', linkname, mode: 0o777 });
const hardlink = (name: string, linkname: string): RawEntry => ({ name, type: '1', linkname });

// Refused whatever the mode. The symlink cases further down are refused only with
// parentSymlinks 'refuse'; by default they resolve inside the target (checked below).
const refused: [string, Layer[], RegExp][] = [
  ['absolute path', [[file(`${outside}/secret`)]], /absolute path refused/],
  ['absolute path to /', [[file('/escaped')]], /absolute path refused/],
  ['.. at the start', [[file('../escaped')]], /'\.\.' refused/],
  ['.. in the middle', [[dir('a/'), file('a/../../escaped')]], /'\.\.' refused/],
  ['PAX path with ..', [[rawPax({ path: '../escaped' }), file('innocent')]], /'\.\.' refused/],
  ['PAX path absolute', [[rawPax({ path: '/tmp/escaped' }), file('innocent')]], /absolute path refused/],
  ['PAX path with a NUL byte', [[rawPax({ path: 'a\0/../../escaped' }), file('innocent')]], /NUL/],
  ['GNU long name with ..', [[rawEntry({ name: '././@LongLink', type: 'L', data: `${'x/'.repeat(60)}${'../'.repeat(80)}escaped\0` }), file('short')]], /'\.\.' refused/],
  ['hardlink to a path with ..', [[hardlink('h', '../outside/secret')]], /hardlink target with '\.\.' refused/],
  ['hardlink to an absolute path outside (taken as inside the archive, where it does not exist)', [[hardlink('h', `${outside}/secret`)]], /does not exist/],
  ['hardlink to a directory', [[dir('d/'), hardlink('h', 'd')]], /hardlink to directory/],
  ['whiteout of ..', [[dir('a/'), file('a/.wh...', '')]], /invalid whiteout/],
  ['whiteout as a directory', [[dir('.wh.x/')]], /whiteout must not be a directory/],
  ['the root replaced by a file', [[file('./', 'x')]], /root of a layer can only be a directory/],
  ['a device node when devices are refused', [[{ name: 'mem', type: '3', devmajor: 1, devminor: 1, mode: 0o600 }]], /device node refused/],
  ['a huge PAX header', [[rawEntry({ name: 'pax', type: 'x', size: 64 << 20, data: '' })]], /too large/],
  ['an entry type tar extractors do not know', [[{ name: 'v', type: 'V' }]], /unsupported entry type/],
  ['a name longer than PATH_MAX', [[rawPax({ path: 'a/'.repeat(2100) + 'x' }), file('innocent')]], /longer than 4095 bytes/],
  ['a component longer than NAME_MAX', [[rawPax({ path: 'n'.repeat(300) }), file('innocent')]], /component longer than 255 bytes/],
  ['a symlink target longer than PATH_MAX', [[rawPax({ linkpath: 't'.repeat(5000) }), symlink('s', 'x')]], /symlink target is longer/],
  ['a symlink loop on the way', [[symlink('loop1', 'loop2'), symlink('loop2', 'loop1'), file('loop1/x')]], /too many levels of symlinks|refusing to write through symlink/],
  ['a file on the way', [[file('f'), file('f/x')]], /"f" is not a directory/],
  ['a file on the way through a symlink', [[file('f'), symlink('s', '/f'), file('s/x')]], /"f" is not a directory|refusing to write through symlink/],
];

// Refused with parentSymlinks 'refuse' (the opt-out, `--no-follow-symlinks`).
const refusedWithoutFollow: [string, Layer[], RegExp][] = [
  ['write through a relative symlink planted in the same layer', [[symlink('link', '../outside'), file('link/secret')]], /refusing to write through symlink "link"/],
  ['write through an absolute symlink planted in the same layer', [[symlink('link', outside), file('link/secret')]], /refusing to write through symlink "link"/],
  ['directory created through a symlink', [[symlink('link', outside), dir('link/newdir/')]], /refusing to write through symlink/],
  ['write through a symlink planted in a lower layer', [[symlink('link', outside)], [file('link/secret')]], /layer 2: .*refusing to write through symlink "link"/],
  ['write through a symlink deeper in the path', [[dir('a/'), symlink('a/b', '../../outside'), file('a/b/dir/keep')]], /refusing to write through symlink "a\/b"/],
  ['symlink loop', [[symlink('loop', 'loop'), file('loop/x')]], /refusing to write through symlink "loop"/],
  ['hardlink through a planted symlink', [[symlink('link', outside), hardlink('h', 'link/secret')]], /refusing to write through symlink "link"/],
  ['hardlink created inside a symlinked directory', [[file('f'), symlink('link', outside), hardlink('link/h', 'f')]], /refusing to write through symlink "link"/],
  ['whiteout through a symlink planted in a lower layer', [[symlink('link', outside)], [file('link/.wh.secret', '')]], /refusing to write through symlink "link"/],
  ['opaque whiteout through a symlink', [[symlink('link', outside)], [file('link/.wh..wh..opq', '')]], /refusing to write through symlink "link"/],
];

const resolvers = ['auto', 'walk'] as const;
for (const resolver of resolvers) {
  for (const [name, layers, expected] of refused) {
    for (const parentSymlinks of ['in-root', 'refuse'] as const) {
      test(`refused, nothing written outside (${parentSymlinks}, ${resolver}): ${name}`, async () => {
        const r = await attempt(layers, { devices: 'refuse', parentSymlinks, resolver });
        assert.ok(r.error, 'the archive was accepted');
        assert.match(r.error, expected);
      });
    }
  }
  for (const [name, layers, expected] of refusedWithoutFollow) {
    test(`refused with parentSymlinks 'refuse' (${resolver}), nothing written outside: ${name}`, async () => {
      const r = await attempt(layers, { devices: 'refuse', parentSymlinks: 'refuse', resolver });
      assert.ok(r.error, 'the archive was accepted');
      assert.match(r.error, expected);
    });
    test(`followed inside the target by default (${resolver}), nothing written outside: ${name}`, async () => {
      const r = await attempt(layers, { devices: 'refuse', resolver });
      if (r.error) assert.match(r.error, /too many levels of symlinks|does not exist/);
    });
  }
}

for (const resolver of resolvers) {
  test(`by default (${resolver}), writes through planted symlinks land where a chroot would put them, never outside`, async () => {
    const r = await attempt([
      [symlink('abs', outside), symlink('rel', '../../../outside'), dir('a/'), symlink('a/up', '../..'), symlink('loop1', 'loop2'), symlink('loop2', 'loop1')],
      [file('abs/secret', 'via absolute'), file('rel/secret', 'via relative'), file('a/up/escaped', 'clamped'), file('.wh.nothing', '')],
      [file('abs/.wh.secret', ''), hardlink('hl', 'rel/secret'), symlink('dotdot', '..'), dir('dotdot/dotdot/d2/'), file('dotdot/dotdot/d2/f', 'deep')],
    ], { resolver });
    assert.equal(r.error, undefined);
    assert.ok(!fs.existsSync(join(r.target, outside, 'secret')), 'whiteout through the in-root symlink removed the in-root file');
    assert.equal(fs.readFileSync(join(r.target, 'outside', 'secret'), 'utf8'), 'via relative');
    assert.equal(fs.readFileSync(join(r.target, 'escaped'), 'utf8'), 'clamped');
    assert.equal(fs.readFileSync(join(r.target, 'd2', 'f'), 'utf8'), 'deep');
    assert.equal(fs.statSync(join(r.target, 'hl')).ino, fs.statSync(join(r.target, 'outside', 'secret')).ino);
    const loop = await attempt([[symlink('loop1', 'loop2'), symlink('loop2', 'loop1'), file('loop1/x')]], { resolver });
    assert.match(loop.error!, /too many levels of symlinks/);
  });
}

test('a `..` that stays inside the root is resolved lexically, as containerd and Docker do; one that leaves it is refused', async () => {
  const r = await attempt([[dir('a/'), file('a/../b', 'lexical'), dir('c/d/'), file('c/d/../../e', 'two up'), hardlink('h', 'c/../b')]]);
  assert.equal(r.error, undefined);
  assert.equal(fs.readFileSync(join(r.target, 'b'), 'utf8'), 'lexical');
  assert.equal(fs.readFileSync(join(r.target, 'e'), 'utf8'), 'two up');
  assert.equal(fs.statSync(join(r.target, 'h')).ino, fs.statSync(join(r.target, 'b')).ino);
  const out = await attempt([[dir('a/'), file('a/../../escaped')]]);
  assert.match(out.error!, /path with '\.\.' refused \(it leaves the root\)/);
});

test('a file entry over a symlink planted earlier replaces the symlink instead of writing through it', async () => {
  const r = await attempt([[symlink('f', `${outside}/secret`), symlink('rel', '../outside/secret')], [file('f'), file('rel')]]);
  assert.equal(r.error, undefined);
  for (const n of ['f', 'rel']) {
    assert.ok(fs.lstatSync(join(r.target, n)).isFile());
    assert.equal(fs.readFileSync(join(r.target, n), 'utf8'), 'pwned\n');
  }
});

test('a directory entry over a symlink to outside replaces the symlink; its mode and owner go to the new directory only', async () => {
  const r = await attempt([[symlink('d', outside)], [dir('d/', { mode: 0o777, uid: 4242 })]]);
  assert.equal(r.error, undefined);
  const st = fs.lstatSync(join(r.target, 'd'));
  assert.ok(st.isDirectory());
  assert.equal(st.mode & 0o777, 0o777);
  assert.equal(st.uid, 4242);
});

test('xattrs, owners and times of a symlink entry pointing outside go to the link, not its target', async () => {
  const r = await attempt([[rawPax({ 'SCHILY.xattr.trusted.evil': 'x' }), { ...symlink('s', `${outside}/secret`), uid: 1234, mtime: 1000 }]]);
  assert.equal(r.error, undefined);
  const sys = await loadFsSys();
  assert.deepEqual(sys.llistxattr(join(r.target, 's')), ['trusted.evil']);
  assert.equal(fs.lstatSync(join(r.target, 's')).uid, 1234);
});

test('overlayfs xattrs in an archive (redirects, metacopy) are dropped with a warning, other xattrs kept', async () => {
  const target = join(base, `target-${++counter}`);
  fs.mkdirSync(target);
  const r = await applyLayer(target, chunks(rawTar([
    rawPax({ 'SCHILY.xattr.trusted.overlay.redirect': '/../../outside', 'SCHILY.xattr.user.overlay.metacopy': '', 'SCHILY.xattr.user.fine': 'yes' }),
    dir('d/'),
  ])));
  const sys = await loadFsSys();
  assert.deepEqual(sys.llistxattr(join(target, 'd')), ['user.fine']);
  assert.equal(r.warnings.length, 2);
  assert.match(r.warnings[0]!, /overlayfs xattr trusted.overlay.redirect dropped/);
});

test('whiteouts remove lower-layer files only inside the target, and never what the same layer added', async () => {
  const r = await attempt([
    [dir('d/'), file('d/a', 'a'), file('d/b', 'b'), dir('d/sub/'), file('d/sub/old', 'old'), file('gone', 'x')],
    [file('.wh.gone', ''), file('d/new', 'new'), file('d/.wh.new', ''), dir('d/sub/'), file('d/sub/fresh', 'f'), file('d/.wh..wh..opq', '')],
  ]);
  assert.equal(r.error, undefined);
  assert.deepEqual(fs.readdirSync(r.target).sort(), ['d']);
  assert.deepEqual(fs.readdirSync(join(r.target, 'd')).sort(), ['new', 'sub']);
  assert.deepEqual(fs.readdirSync(join(r.target, 'd', 'sub')), ['fresh']);
});

test('a hardlink in the archive, then a file with the same name: the new file replaces the link and the original keeps its data', async () => {
  const r = await attempt([[file('orig', 'original'), hardlink('h', 'orig'), file('h', 'replaced')]]);
  assert.equal(r.error, undefined);
  assert.equal(fs.readFileSync(join(r.target, 'orig'), 'utf8'), 'original');
  assert.equal(fs.readFileSync(join(r.target, 'h'), 'utf8'), 'replaced');
});

test('device nodes are refused by default when unprivileged (uid 65534 without CAP_MKNOD), fifos are fine, and skip skips', async (t) => {
  if (!which('setpriv')) return t.skip('setpriv not installed');
  const tarFile = join(base, 'devices.tar');
  fs.writeFileSync(tarFile, rawTar([{ name: 'fifo', type: '6', mode: 0o644 }, { name: 'mem', type: '3', devmajor: 1, devminor: 1, mode: 0o600 }]));
  const child = new URL('./apply-child.ts', import.meta.url).pathname;
  fs.chmodSync(base, 0o755); // let uid 65534 reach its targets
  const run = (target: string, devices?: string) => {
    fs.mkdirSync(target);
    fs.chownSync(target, 65534, 65534);
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, '--import', 'tsx', child, tarFile, target, ...(devices ? [devices] : [])], { cwd: new URL('../../', import.meta.url).pathname, encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { ok: boolean; error?: string; warnings?: string[] };
  };
  const refusedRun = run(join(base, 'unpriv-default'));
  assert.equal(refusedRun.ok, false);
  assert.match(refusedRun.error!, /"mem": device node refused/);
  assert.ok(!fs.existsSync(join(base, 'unpriv-default', 'mem')));
  const skipped = run(join(base, 'unpriv-skip'), 'skip');
  assert.equal(skipped.ok, true);
  assert.ok(fs.lstatSync(join(base, 'unpriv-skip', 'fifo')).isFIFO());
  assert.ok(!fs.existsSync(join(base, 'unpriv-skip', 'mem')));
  assert.match(skipped.warnings!.join('\n'), /mem: device node skipped/);
});
