// Tar features real layers use, each applied by keel and extracted by GNU tar from the same
// archive, the two trees compared file by file (type, mode, owner, times, content, link targets,
// hardlinks, xattrs): sparse files in every format GNU tar writes (written sparse), file
// capabilities and other xattrs, POSIX ACLs, long names and link targets (GNU and PAX), the PAX
// global header `git archive` writes, and directories listed after their children.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { applyLayer } from '../../src/layers/index.js';
import { loadFsSys } from '../../src/runtime/sys/fs.js';
import { tempDir, sh, snapshot, diffSnapshots, rawTar, chunks, which, repoRoot, type RawEntry } from './helpers.js';

const dir = tempDir('tar-features');
let n = 0;

/** Applies `archive` with keel and extracts it with GNU tar; returns both roots after checking they are equal. */
async function bothWays(archive: string, opts: { dirMtimes?: boolean } = {}): Promise<{ ours: string; theirs: string }> {
  const ours = join(dir, `keel-${++n}`);
  const theirs = join(dir, `gnu-${n}`);
  fs.mkdirSync(ours);
  fs.mkdirSync(theirs);
  const r = await applyLayer(ours, fs.createReadStream(archive), { what: archive });
  assert.deepEqual(r.warnings, []);
  sh(`tar -C '${theirs}' --numeric-owner --xattrs --xattrs-include='*' --acls -xpf '${archive}'`);
  assert.deepEqual(diffSnapshots(await snapshot(ours, opts), await snapshot(theirs, opts)), []);
  return { ours, theirs };
}

const sparseFormats: [string, string][] = [
  ['GNU (old, type S)', '--format=gnu --sparse'],
  ['PAX 0.0', '--format=posix --sparse --sparse-version=0.0'],
  ['PAX 0.1', '--format=posix --sparse --sparse-version=0.1'],
  ['PAX 1.0', '--format=posix --sparse --sparse-version=1.0'],
];

test('sparse files in every GNU tar format are unpacked byte for byte and stay sparse', async () => {
  const src = join(dir, 'sparse-src');
  fs.mkdirSync(join(src, 'd'), { recursive: true });
  // 96 MiB with three data islands (one at the very end) and a file that is one hole.
  sh(`truncate -s 96M big && printf start | dd of=big conv=notrunc status=none && printf middle | dd of=big bs=1M seek=40 conv=notrunc status=none && truncate -s 100M big && printf end >> big && truncate -s 8M d/hole && echo small > small`, { cwd: src });
  const want = fs.readFileSync(join(src, 'big'));
  for (const [name, flags] of sparseFormats) {
    const archive = join(dir, `sparse-${n}.tar`);
    sh(`tar -C '${src}' ${flags} -cf '${archive}' .`);
    assert.ok(fs.statSync(archive).size < 1 << 20, `${name}: GNU tar did not write the file sparse`);
    const { ours } = await bothWays(archive);
    const st = fs.statSync(join(ours, 'big'));
    assert.equal(st.size, want.length, name);
    assert.ok(fs.readFileSync(join(ours, 'big')).equals(want), `${name}: content differs`);
    assert.ok(st.blocks * 512 < 1 << 20, `${name}: ${st.blocks * 512} bytes allocated, the holes were written`);
    assert.equal(fs.statSync(join(ours, 'd/hole')).size, 8 << 20);
  }
});

test('file capabilities (security.capability), user xattrs and POSIX ACLs, named users resolved in the image\'s /etc/passwd', async (t) => {
  if (!which('setcap') || !which('setfacl')) return t.skip('setcap or setfacl not installed (libcap2-bin, acl)');
  const src = join(dir, 'xattr-src');
  fs.mkdirSync(join(src, 'etc'), { recursive: true });
  fs.mkdirSync(join(src, 'shared'));
  fs.writeFileSync(join(src, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\n');
  fs.writeFileSync(join(src, 'etc/group'), 'root:x:0:\nadm:x:4:\n');
  fs.writeFileSync(join(src, 'ping'), 'ping binary', { mode: 0o755 });
  fs.writeFileSync(join(src, 'notes'), 'text');
  sh(`setcap cap_net_raw+ep ping && setfattr -n user.origin -v keel notes 2>/dev/null || python3 -c "import os; os.setxattr('notes', 'user.origin', b'keel')"`, { cwd: src });
  sh('setfacl -m u:daemon:r,u:1234:rw,g:adm:rw notes && setfacl -d -m u:1234:rwx,g:adm:rx shared', { cwd: src });
  const archive = join(dir, 'xattrs.tar');
  sh(`tar -C '${src}' --format=posix --xattrs --xattrs-include='*' --acls -cf '${archive}' etc ping notes shared`);
  const { ours } = await bothWays(archive);
  const sys = await loadFsSys();
  assert.ok(sys.lgetxattr(join(ours, 'ping'), 'security.capability'), 'security.capability was not restored');
  assert.match(sh(`getcap '${join(ours, 'ping')}'`), /cap_net_raw[=+]ep/);
  assert.match(sh(`getfacl -n '${join(ours, 'notes')}'`), /user:1:r--[\s\S]*user:1234:rw-[\s\S]*group:4:rw-/);
  assert.match(sh(`getfacl -n '${join(ours, 'shared')}'`), /default:user:1234:rwx[\s\S]*default:group:4:r-x/);
});

test('long names, long link targets and hardlinks to long names, in GNU and PAX archives', async () => {
  const src = join(dir, 'long-src');
  const deep = join(...Array.from({ length: 12 }, (_, i) => `directory-level-${i}-with-a-long-name`));
  fs.mkdirSync(join(src, deep), { recursive: true });
  const file = join(deep, `${'f'.repeat(200)}.txt`);
  fs.writeFileSync(join(src, file), 'deep');
  fs.symlinkSync(`../${'t'.repeat(150)}/${file}`, join(src, 'long-link'));
  fs.linkSync(join(src, file), join(src, 'hard'));
  for (const format of ['gnu', 'posix']) {
    const archive = join(dir, `long-${format}.tar`);
    sh(`tar -C '${src}' --format=${format} -cf '${archive}' .`);
    const { ours } = await bothWays(archive);
    assert.equal(fs.readFileSync(join(ours, file), 'utf8'), 'deep');
    assert.equal(fs.statSync(join(ours, 'hard')).ino, fs.statSync(join(ours, file)).ino);
  }
});

test('git archive output (a PAX global header first) unpacks as GNU tar extracts it', async (t) => {
  if (!which('git') || !fs.existsSync(join(repoRoot, '.git'))) return t.skip('no git checkout');
  const archive = join(dir, 'git.tar');
  sh(`git -C '${repoRoot}' archive --format=tar HEAD src/layers spec > '${archive}'`);
  assert.equal(fs.readFileSync(archive).toString('latin1', 156, 157), 'g', 'git archive wrote no global header');
  await bothWays(archive);
});

test('directories listed after their children get the mode and times the archive gives them', async () => {
  const entries: RawEntry[] = [
    { name: 'a/b/c', data: 'child first', mtime: 1500000000 },
    { name: 'a/b/', type: '5', mode: 0o700, mtime: 1400000000 },
    { name: 'a/', type: '5', mode: 0o750, mtime: 1300000000, uid: 7, gid: 8 },
  ];
  const archive = join(dir, 'late-parents.tar');
  fs.writeFileSync(archive, rawTar(entries));
  const { ours } = await bothWays(archive);
  assert.equal(fs.statSync(join(ours, 'a')).mode & 0o7777, 0o750);
  assert.equal(fs.statSync(join(ours, 'a/b')).mtimeMs, 1400000000 * 1000);
  // And from chunks of any size (the reader's block boundaries).
  const again = join(dir, 'late-parents-chunks');
  fs.mkdirSync(again);
  await applyLayer(again, chunks(rawTar(entries), 7));
  assert.deepEqual(diffSnapshots(await snapshot(ours), await snapshot(again)), []);
});
