import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipReason, context, BUSYBOX_BASE, newStore, cli } from './helpers.js';

const df = `FROM scratch AS base\n${BUSYBOX_BASE}\nRUN echo output-line; sleep 0.3\n\nFROM base\nRUN echo final\n`;

test('plain progress (the default off a terminal): one line per step start, its output, DONE with its time, CACHED on a hit', { skip: skipReason }, () => {
  const store = newStore();
  const ctx = context(df);
  const first = cli(['build', '--store', store, ctx]);
  assert.equal(first.status, 0, first.stderr);
  const lines = first.stderr.split('\n');
  assert.ok(lines.includes('#1 [stage-1 1/2] FROM base') || lines.some((l) => /^#\d+ \[base 1\/5\] FROM scratch AS base$/.test(l)), first.stderr);
  assert.ok(lines.some((l) => /^#\d+ \[base 5\/5\] RUN echo output-line; sleep 0\.3$/.test(l)), first.stderr);
  assert.ok(lines.some((l) => /^#\d+ \d+\.\d{3} output-line$/.test(l)), 'RUN output is shown with its time');
  assert.ok(lines.some((l) => /^#\d+ DONE 0\.[3-9]s$/.test(l)), 'the step\'s duration');
  const second = cli(['build', '--store', store, '--progress', 'plain', ctx]);
  assert.equal(second.status, 0, second.stderr);
  assert.equal((second.stderr.match(/^#\d+ CACHED$/gm) ?? []).length, 5, second.stderr);
  assert.ok(!/^#\d+ \d+\.\d{3} output-line$/m.test(second.stderr), 'a cached step does not run');
});

test('tty progress: a live display redrawn in place, with timers, CACHED marks and a summary', { skip: skipReason }, () => {
  const store = newStore();
  const ctx = context(df);
  assert.equal(cli(['build', '--store', store, '-q', ctx]).status, 0);
  const r = cli(['build', '--store', store, '--progress', 'tty', ctx]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /\x1b\[\d+A\x1b\[J/, 'the live part is redrawn (cursor up, clear)');
  assert.match(r.stderr, /=> #\d+ \[base 5\/5\] RUN echo output-line; sleep 0\.3 +CACHED\n/);
  assert.match(r.stderr, /\[\+\] Building \d+\.\ds \(\d+\/\d+\)/);
  assert.match(r.stderr, /\[\+\] Built in \d+\.\ds\n$/);
});
