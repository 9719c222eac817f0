// The systemd driver gives a container's scope the unit properties runc gives it, at create and on
// update; -1 (unlimited) is systemd's infinity so that update can lift a limit. (The driver itself
// runs against a real systemd in the VM lane: test/vm/guest/systemd-scope-*.guest.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scopeProperties } from '../../src/runtime/cgroups/systemd.js';

const INFINITY = 0xffff_ffff_ffff_ffffn;
const props = (r: Parameters<typeof scopeProperties>[0]) => Object.fromEntries(scopeProperties(r).map(([k, , v]) => [k, v]));

test('limits become MemoryMax, MemorySwapMax, MemoryLow, TasksMax, CPUWeight, CPUQuota and IOWeight as in runc', () => {
  assert.deepEqual(props({
    memory: { limit: 64 << 20, swap: 128 << 20, reservation: 32 << 20 },
    pids: { limit: 30 },
    cpu: { shares: 2048, quota: 25000, period: 100000 },
    blockIO: { weight: 500 },
  }), {
    MemoryMax: BigInt(64 << 20), MemorySwapMax: BigInt(64 << 20), MemoryLow: BigInt(32 << 20), TasksMax: 30n,
    CPUWeight: 79n, CPUQuotaPerSecUSec: 250000n, CPUQuotaPeriodUSec: 100000n, IOWeight: 4950n,
  });
});

test('a quota that is not a multiple of 10 ms per second is rounded up, as runc does', () => {
  assert.equal(props({ cpu: { quota: 12345, period: 100000 } }).CPUQuotaPerSecUSec, 130000n);
});

test('-1 lifts a limit: systemd infinity', () => {
  assert.deepEqual(props({ memory: { limit: -1, swap: -1 }, pids: { limit: -1 }, cpu: { quota: -1 } }), {
    MemoryMax: INFINITY, MemorySwapMax: INFINITY, TasksMax: INFINITY, CPUQuotaPerSecUSec: INFINITY,
  });
});

test('nothing given, nothing set', () => {
  assert.deepEqual(scopeProperties(undefined), []);
  assert.deepEqual(scopeProperties({ memory: { limit: 0 }, pids: { limit: 0 } }), []);
});
