// Device rules mean the same thing on both cgroup versions: the emulator keel uses matches what
// the v1 kernel does with the same writes (devices.list, real accesses), and the v2 eBPF program
// keel generates decides every access like the emulator (run in a small eBPF interpreter here,
// and on the kernel in v2-core-files-on-unified-mount.test.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  createCgroupManager, DeviceEmulator, deviceFilterInstructions, parseDeviceRules, runcDefaultDeviceRules, v1DeviceWrites,
  type EbpfInsn, type OciDeviceRule,
} from '../../src/runtime/cgroups/index.js';
import { KeelError } from '../../src/util/errors.js';
import { cleanupParent, isRoot, layout, uniqueParent } from './helpers.js';

const l = layout();
const parents: string[] = [];
after(() => parents.forEach(cleanupParent));

/** Runs a device-filter program (the instructions deviceFilterInstructions emits) on one access. */
function runEbpf(prog: EbpfInsn[], ctx: [number, number, number]): number {
  const r = new Array<number>(11).fill(0);
  const mem = new DataView(new ArrayBuffer(12));
  ctx.forEach((v, i) => mem.setUint32(i * 4, v >>> 0, true));
  r[1] = -1; // the context pointer
  let pc = 0;
  for (let steps = 0; steps < 10000; steps++) {
    const i = prog[pc];
    if (!i) throw new Error(`fell off at ${pc}`);
    const u32 = (x: number) => x >>> 0;
    switch (i.code) {
      case 0x61: // ldxw dst, [src+off]
        assert.equal(r[i.src], -1, 'loads only from the context');
        r[i.dst] = mem.getUint32(i.off, true);
        break;
      case 0xbc: r[i.dst] = u32(r[i.src]!); break; // mov32 reg
      case 0xb7: r[i.dst] = i.imm; break; // mov64 imm
      case 0x54: r[i.dst] = u32(r[i.dst]! & i.imm); break; // and32 imm
      case 0x74: r[i.dst] = u32(r[i.dst]!) >>> i.imm; break; // rsh32 imm
      case 0x55: if (r[i.dst] !== u32(i.imm)) { pc += i.off; } break; // jne imm
      case 0x15: if (r[i.dst] === u32(i.imm)) { pc += i.off; } break; // jeq imm
      case 0x5d: if (r[i.dst] !== r[i.src]) { pc += i.off; } break; // jne reg
      case 0x95: return r[0]!; // exit
      default: throw new Error(`unexpected opcode 0x${i.code.toString(16)}`);
    }
    pc++;
  }
  throw new Error('no exit');
}

function rng(seed: number) {
  let s = seed;
  return (n: number) => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
}

function randomRules(rand: (n: number) => number): OciDeviceRule[] {
  const rules: OciDeviceRule[] = [];
  const n = 1 + rand(8);
  for (let i = 0; i < n; i++) {
    const type = ['a', 'b', 'c', 'c', 'c'][rand(5)]!;
    const rule: OciDeviceRule = { allow: rand(2) === 0, type };
    if (rand(3)) rule.major = [1, 5, 8, 136][rand(4)]!;
    if (rand(3)) rule.minor = [0, 1, 3, 5][rand(4)]!;
    rule.access = ['r', 'w', 'm', 'rw', 'rwm', 'wm', 'rm'][rand(7)]!;
    rules.push(rule);
  }
  return rules;
}

const ACCESSES = [1, 2, 4, 3, 6, 7];

test('the eBPF device filter decides every access like the v1 emulator', () => {
  const rand = rng(42);
  let checked = 0;
  for (let round = 0; round < 400; round++) {
    const rules = randomRules(rand);
    const emu = DeviceEmulator.fromRules(parseDeviceRules(rules, 'x'));
    const prog = deviceFilterInstructions(emu);
    for (const type of ['b', 'c'] as const) {
      for (const major of [1, 5, 8, 136, 999]) {
        for (const minor of [0, 1, 3, 5, 7]) {
          for (const access of ACCESSES) {
            const want = emu.allows(type, major, minor, access) ? 1 : 0;
            const got = runEbpf(prog, [(access << 16) | (type === 'b' ? 1 : 2), major, minor]);
            assert.equal(got, want, `${JSON.stringify(rules)} ${type} ${major}:${minor} access ${access}`);
            checked++;
          }
        }
      }
    }
  }
  assert.ok(checked > 100000);
});

test('the emulator agrees with the v1 kernel: same devices.list after the same rules', { skip: !isRoot ? 'needs root' : !l.v1.devices ? 'no v1 devices controller' : false }, async () => {
  const rand = rng(7);
  const parent = uniqueParent('devemu');
  parents.push(parent);
  const cg = createCgroupManager({ cgroupsPath: `${parent}/c`, containerId: 'devemu' });
  cg.create();
  const dir = cg.paths.v1.devices!;
  try {
    for (let round = 0; round < 60; round++) {
      const rules = randomRules(rand);
      const emu = DeviceEmulator.fromRules(parseDeviceRules(rules, 'x'));
      cg.set({ devices: rules });
      const list = readFileSync(join(dir, 'devices.list'), 'utf8').trim().split('\n').filter(Boolean).sort();
      assert.deepEqual(list, emu.listLines().sort(), JSON.stringify(rules));
    }
  } finally {
    await cg.destroy();
  }
});

test("runc's default device rules: deny-all first, then the usual /dev nodes", () => {
  const emu = DeviceEmulator.fromRules(parseDeviceRules([{ allow: false, access: 'rwm' }, ...runcDefaultDeviceRules()], 'x'));
  assert.ok(emu.allows('c', 1, 3, 6)); // /dev/null rw
  assert.ok(emu.allows('c', 136, 7, 6)); // /dev/pts/7
  assert.ok(emu.allows('b', 8, 0, 1)); // mknod of a block device
  assert.ok(!emu.allows('b', 8, 0, 2)); // but no read
  assert.ok(!emu.allows('c', 10, 1, 2));
});

test('v1 writes: deny-all → allow list in order; an update between allow lists only adds and removes the difference', () => {
  const target = DeviceEmulator.fromRules(parseDeviceRules([{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'rw' }], 'x'));
  assert.deepEqual(v1DeviceWrites(undefined, target), [
    { file: 'devices.deny', line: 'a *:* rwm' },
    { file: 'devices.allow', line: 'c 1:3 rw' },
  ]);
  const next = DeviceEmulator.fromRules(parseDeviceRules([{ allow: false, access: 'rwm' }, { allow: true, type: 'c', major: 1, minor: 3, access: 'r' }, { allow: true, type: 'c', major: 1, minor: 5, access: 'r' }], 'x'));
  assert.deepEqual(v1DeviceWrites(target, next), [
    { file: 'devices.deny', line: 'c 1:3 w' },
    { file: 'devices.allow', line: 'c 1:5 r' },
  ]);
});

test('bad device rules are one KeelError naming the field', () => {
  assert.throws(() => parseDeviceRules([{ allow: true, type: 'x' }], 'linux.resources.devices'), (e: unknown) =>
    e instanceof KeelError && e.message === 'invalid device type "x" in linux.resources.devices[0].type (expected "a", "b" or "c")');
  assert.throws(() => parseDeviceRules([{ allow: true, type: 'c', access: 'rwx' }], 'linux.resources.devices'), /invalid device access "rwx" in linux\.resources\.devices\[0\]\.access/);
});
