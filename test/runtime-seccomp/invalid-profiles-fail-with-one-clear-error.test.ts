// Bad seccomp input: one KeelError naming the field; unknown syscall names are skipped like runc does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeelError } from '../../src/util/errors.js';
import {
  compileSeccomp, seccompFlagsFor, SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_FILTER_FLAG_SPEC_ALLOW,
  type LinuxSeccomp,
} from '../../src/runtime/seccomp/index.js';

const bad = (config: unknown, message: RegExp) =>
  assert.throws(() => compileSeccomp(config as LinuxSeccomp, { nativeArch: 'SCMP_ARCH_X86_64' }), (e: unknown) => {
    assert.ok(e instanceof KeelError, String(e));
    assert.match(e.message, message);
    assert.ok(!e.message.includes('\n'));
    return true;
  });

test('unknown action, operator, flag, architecture or argument index name the field', () => {
  bad({ defaultAction: 'SCMP_ACT_NOPE' }, /unknown seccomp action "SCMP_ACT_NOPE" in linux\.seccomp\.defaultAction/);
  bad({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'ALLOW' }] }, /unknown seccomp action "ALLOW" in linux\.seccomp\.syscalls\[0\]\.action/);
  bad(
    { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_XX' }] }] },
    /unknown seccomp operator "SCMP_CMP_XX" in linux\.seccomp\.syscalls\[0\]\.args\[0\]\.op/,
  );
  bad(
    { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }] },
    /index 6 out of range \(0-5\) in linux\.seccomp\.syscalls\[0\]\.args\[0\]\.index/,
  );
  bad({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_FOO'] }, /unknown seccomp flag "SECCOMP_FILTER_FLAG_FOO" in linux\.seccomp\.flags\[0\]/);
  bad({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_VAX'] }, /unknown seccomp architecture "SCMP_ARCH_VAX" in linux\.seccomp\.architectures\[0\]/);
  bad({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 70000 }, /errno 70000 out of range/);
  bad({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: [''], action: 'SCMP_ACT_KILL' }] }, /syscall name in linux\.seccomp\.syscalls\[0\]\.names\[0\]/);
});

test('SCMP_ACT_NOTIFY: not as default action, not for write, only with listenerPath', () => {
  bad({ defaultAction: 'SCMP_ACT_NOTIFY' }, /SCMP_ACT_NOTIFY cannot be the default action/);
  bad({ defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/x', syscalls: [{ names: ['read', 'write'], action: 'SCMP_ACT_NOTIFY' }] }, /write syscall/);
  bad({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_NOTIFY' }] }, /listenerPath must be set/);
});

test('flags: LOG and SPEC_ALLOW pass through, TSYNC is ignored like runc, NOTIFY adds NEW_LISTENER', () => {
  assert.equal(seccompFlagsFor({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW', 'SECCOMP_FILTER_FLAG_TSYNC'] }),
    SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW);
  const c = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/a.sock', listenerMetadata: 'm', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_NOTIFY' }] });
  assert.equal(c.flags, SECCOMP_FILTER_FLAG_NEW_LISTENER);
  assert.equal(c.newListener, true);
  assert.equal(c.listenerPath, '/run/a.sock');
  assert.equal(c.listenerMetadata, 'm');
});

test('unknown syscall names are skipped (as runc does) and reported; architectures without a table are left out', () => {
  const c = compileSeccomp({
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_PPC64LE'],
    syscalls: [{ names: ['mkdir', 'no_such_call'], action: 'SCMP_ACT_ERRNO' }],
  }, { nativeArch: 'SCMP_ARCH_X86_64' });
  assert.deepEqual(c.skippedSyscalls, ['no_such_call']);
  assert.deepEqual(c.architectures, ['SCMP_ARCH_X86_64']);
  assert.deepEqual(c.ignoredArchitectures, ['SCMP_ARCH_PPC64LE']);
  assert.equal(c.filter.length, c.length * 8);
});

test('a 64-bit JSON value that rounded to 2^64 means 2^64-1; larger or negative values are refused', () => {
  const ok = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 18446744073709551615, op: 'SCMP_CMP_EQ' }] }] });
  assert.ok(ok.instructions.some((i) => i.k === 0xffffffff));
  bad({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: -1, op: 'SCMP_CMP_EQ' }] }] }, /out of the unsigned 64-bit range in linux\.seccomp\.syscalls\[0\]\.args\[0\]\.value/);
});
