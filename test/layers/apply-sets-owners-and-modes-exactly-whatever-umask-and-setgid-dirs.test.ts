import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { applyLayer } from '../../src/layers/index.js';
import { tempDir, rawTar, chunks } from './helpers.js';

const tmp = tempDir('modes');

test('files get exactly the archive\'s owner and mode: under a restrictive umask, in set-gid directories, with set-uid bits', async () => {
  const target = join(tmp, 'target');
  fs.mkdirSync(target);
  const old = process.umask(0o077);
  try {
    await applyLayer(target, chunks(rawTar([
      { name: 'sg/', type: '5', mode: 0o2775, gid: 50 },
      { name: 'sg/f', data: 'x', mode: 0o644, uid: 0, gid: 0 },
      { name: 'sg/sub/', type: '5', mode: 0o755, uid: 0, gid: 0 },
      { name: 'plain', data: 'y', mode: 0o664, uid: 0, gid: 0 },
      { name: 'suid', data: 'z', mode: 0o4755, uid: 0, gid: 0 },
      { name: 'owned', data: 'w', mode: 0o640, uid: 1234, gid: 5678 },
      { name: 'implicit/deep/file', data: 'v', mode: 0o600 },
    ])));
  } finally {
    process.umask(old);
  }
  const st = (p: string) => fs.lstatSync(join(target, p));
  assert.equal(st('sg').mode & 0o7777, 0o2775);
  assert.equal(st('sg').gid, 50);
  assert.equal(st('sg/f').gid, 0, 'group from the archive, not inherited from the set-gid directory');
  assert.equal(st('sg/f').mode & 0o7777, 0o644);
  assert.equal(st('sg/sub').gid, 0);
  assert.equal(st('sg/sub').mode & 0o7777, 0o755, 'no set-gid bit inherited');
  assert.equal(st('plain').mode & 0o7777, 0o664, 'umask does not apply');
  assert.equal(st('suid').mode & 0o7777, 0o4755);
  assert.deepEqual([st('owned').uid, st('owned').gid, st('owned').mode & 0o7777], [1234, 5678, 0o640]);
  assert.equal(st('implicit').mode & 0o7777, 0o755, 'directories the archive does not list are 0755');
  assert.equal(st('implicit/deep').mode & 0o7777, 0o755);
});
