// Capability names ↔ numbers match linux/capability.h; masks reject unknown names by field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { KeelError } from '../../src/util/errors.js';
import { CAPABILITIES, capabilityMask, capabilityName, capabilityNames, capabilityNumber, capabilityWords, lastCap } from '../../src/runtime/capabilities.js';

test('every capability in linux/capability.h has the same number here', (t) => {
  const header = '/usr/include/linux/capability.h';
  if (!existsSync(header)) return t.skip('linux/capability.h not installed');
  const defs = [...readFileSync(header, 'utf8').matchAll(/^#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$/gm)]
    .filter(([, name]) => !['CAP_LAST_CAP'].includes(name!));
  assert.ok(defs.length >= 41);
  for (const [, name, nr] of defs) assert.equal(capabilityNumber(name!), Number(nr), name);
  assert.equal(CAPABILITIES.length, 41);
  assert.equal(capabilityName(40), 'CAP_CHECKPOINT_RESTORE');
});

test('capabilityMask sets one bit per name and names the field of an unknown one', () => {
  assert.equal(capabilityMask(['CAP_CHOWN', 'CAP_KILL', 'CAP_CHECKPOINT_RESTORE'], 'x'), (1n << 0n) | (1n << 5n) | (1n << 40n));
  assert.equal(capabilityMask(undefined, 'x'), 0n);
  assert.throws(() => capabilityMask(['CAP_CHOWN', 'CAP_FOO'], 'process.capabilities.bounding'), (e: unknown) =>
    e instanceof KeelError && e.message === 'unknown capability "CAP_FOO" in process.capabilities.bounding');
  const dropped: string[] = [];
  assert.equal(capabilityMask(['CAP_BPF', 'CAP_KILL'], 'x', { lastCap: 38, onUnavailable: (n) => dropped.push(n) }), 1n << 5n);
  assert.deepEqual(dropped, ['CAP_BPF']);
  assert.deepEqual(capabilityNames((1n << 21n) | (1n << 40n)), ['CAP_SYS_ADMIN', 'CAP_CHECKPOINT_RESTORE']);
  assert.deepEqual(capabilityWords((1n << 40n) | 1n), [1, 1 << 8]);
});

test('lastCap reads the running kernel', () => {
  const expected = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8'));
  assert.equal(lastCap(), expected);
});
