// The repository stands alone: no source, test, script, bench or example names a path outside it
// (a folder beside the clone, such as a shared one, or the absolute paths of one machine). Everything is found
// from the repository's own root, so a clone anywhere builds, tests and benches with nothing beside it.
// (.ci/run goes further: it runs the test command in a fresh clone made in an empty folder.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('../../', import.meta.url).pathname;
const self = relative(root, new URL(import.meta.url).pathname);

/** Paths that leave the repository: a sibling folder reached through `..`, this project's machine. */
const OUTSIDE = [/\.\.\/shared\b/, /(^|[^\w.~-])\/work\//];
/** A bench may offer the yardsticks of a shared folder beside the clone as an extra, never as something it needs. */
const OPTIONAL = /only with --also-shared/;

function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'generated') out.push(...files(rel));
    } else if (e.isFile() && statSync(join(root, rel)).size < 1 << 20) out.push(rel);
  }
  return out;
}

test('no file of the project names a path outside the repository', () => {
  const scanned = ['src', 'test', 'bench', 'scripts', 'examples', 'conformance', '.ci'].flatMap(files).concat('package.json');
  assert.ok(scanned.length > 100, `${scanned.length} files scanned`);
  const found: string[] = [];
  for (const f of scanned) {
    if (f === self) continue;
    readFileSync(join(root, f), 'utf8').split('\n').forEach((line, i) => {
      if (OUTSIDE.some((re) => re.test(line)) && !OPTIONAL.test(line)) found.push(`${f}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(found, []);
});
