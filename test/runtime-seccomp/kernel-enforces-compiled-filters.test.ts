// The BPF keel compiles is loaded into the real kernel (by a small C helper built with gcc) and must
// do what the profile says: ERRNO(n) fails the call with n, KILL/TRAP end the process with SIGSYS,
// ALLOW passes, argument comparisons select, NOTIFY reaches a listener, the -ENOSYS stub answers
// syscalls newer than the profile, and i386 processes are filtered by the i386 rules.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileSeccomp, syscallTable, type LinuxSeccomp } from '../../src/runtime/seccomp/index.js';
import { containersDefaultProfile } from './containers-profile.js';
import { busyboxMissing, busyboxPath } from '../fixtures/busybox-bundle.js';

const gcc = spawnSync('gcc', ['--version']).status === 0;
const skip = process.arch !== 'x64' ? 'the helper programs are x86_64' : !gcc ? 'gcc not installed' : false;
/** Tests that also run busybox (a real program) under the filter. */
const skipBusybox = skip || busyboxMissing || false;
const busybox = busyboxPath ?? 'busybox';

let dir = '';
let helper = '';
/** Why i386 programs cannot be tested here (set in before()), or '' when they can. */
let i386Missing = '';

before(() => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'keel-seccomp-'));
  helper = join(dir, 'seccomp-run');
  const src = new URL('./seccomp-run.c', import.meta.url).pathname;
  const cc = spawnSync('gcc', ['-O1', '-o', helper, src], { encoding: 'utf8' });
  assert.equal(cc.status, 0, cc.stderr);
  i386Missing = i386Probe();
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The C source of a freestanding i386 program that makes syscall NR(a0, a1, a2) and exits with the errno. */
function i386Source(nr: number, a0: number, a1: number, a2: number): string {
  return `
static long sc(long nr, long a, long b, long c) {
  long ret;
  __asm__ volatile ("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return ret;
}
void _start(void) {
  long r = sc(${nr}, ${a0}, ${a1}, ${a2});
  sc(1, r < 0 && r > -4096 ? -r : 0, 0, 0);
  for (;;) {}
}
`;
}

/** Builds that program (see i386Source) as `name`; returns its path, or gcc's complaint. */
function buildI386(name: string, nr: number, a0: number, a1: number, a2: number): { path: string; error?: undefined } | { path?: undefined; error: string } {
  const src = join(dir, `${name}.c`);
  writeFileSync(src, i386Source(nr, a0, a1, a2));
  const out = join(dir, name);
  const cc = spawnSync('gcc', ['-m32', '-nostdlib', '-static', '-ffreestanding', '-fno-pic', '-O1', '-o', out, src], { encoding: 'utf8' });
  return cc.status === 0 ? { path: out } : { error: (cc.stderr || cc.error?.message || `gcc exit ${cc.status}`).trim().split('\n')[0]! };
}

function i386(name: string, nr: number, a0: number, a1: number, a2: number): string {
  const r = buildI386(name, nr, a0, a1, a2);
  if (r.error !== undefined) throw new Error(`gcc -m32 ${name}: ${r.error}`);
  return r.path;
}

/**
 * Whether this host can build *and run* i386 programs: a probe that calls close(-1) must exit with
 * EBADF (9). Where the kernel refuses the ELF (no IA32 emulation, or ia32_emulation=0), exec fails
 * with ENOEXEC and Node's spawn hands the file to /bin/sh, which exits with some other status; so
 * only the probe's own answer counts. Returns '' when it works, else what is missing.
 */
function i386Probe(): string {
  const built = buildI386('probe', 6, -1, 0, 0);
  if (built.error !== undefined) return `gcc cannot build i386 programs here (${built.error})`;
  const r = spawnSync(built.path, [], { encoding: 'utf8', timeout: 10_000 });
  if (r.status === 9) return '';
  const got = r.error ? r.error.message : r.signal ? `signal ${r.signal}` : `exit status ${r.status}${r.stderr.trim() ? `, stderr "${r.stderr.trim().split('\n')[0]}"` : ''}`;
  return `this kernel does not run i386 programs (a static i386 probe gave ${got}, not its own exit status 9)`;
}

let seq = 0;
/** Compiles `profile`, installs it with the helper and runs `cmd` under it. */
function runUnder(profile: LinuxSeccomp, cmd: string[], opts: { notifyErrno?: number } = {}) {
  const c = compileSeccomp(profile);
  const prog = join(dir, `prog-${seq++}.bpf`);
  writeFileSync(prog, c.filter);
  const args = opts.notifyErrno !== undefined
    ? ['notify', prog, String(c.flags), String(opts.notifyErrno), ...cmd]
    : ['load', prog, String(c.flags), ...cmd];
  const r = spawnSync(helper, args, { encoding: 'utf8', timeout: 10000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout.trim(), stderr: r.stderr.trim(), compiled: c };
}

const probeMkdir = (mode = '755') => [helper, 'mkdir', join(dir, `d${seq}`), mode];
const probeCall = (nr: number | string, ...args: (number | bigint | string)[]) => [helper, 'call', String(nr), ...args.map(String)];
const GETPID = 39;

test('SCMP_ACT_ERRNO(n) makes mkdir fail with errno n; unlisted syscalls pass', { skip: skipBusybox }, () => {
  const profile: LinuxSeccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 42 }],
  };
  const r = runUnder(profile, probeMkdir());
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'errno=42');
  const ok = runUnder({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['rmdir'], action: 'SCMP_ACT_ERRNO' }] }, probeMkdir());
  assert.equal(ok.stdout, 'errno=0');
  // busybox, a real program, sees the same errno (42 = ENOMSG).
  const bb = runUnder(profile, [busybox, 'mkdir', join(dir, 'bb')]);
  assert.notEqual(bb.status, 0);
  assert.match(bb.stderr, /No message of desired type/);
});

test('SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS and SCMP_ACT_TRAP end the process with SIGSYS', { skip }, () => {
  for (const action of ['SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_TRAP'] as const) {
    const r = runUnder({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action }] }, probeMkdir());
    assert.equal(r.signal, 'SIGSYS', `${action}: status ${r.status} ${r.stderr}`);
  }
});

test('default action applies to syscalls the profile does not list', { skip }, () => {
  // Allow only what the helper needs to start, then print; mkdir falls to the default ERRNO(EACCES).
  const names = Object.keys(syscallTable('SCMP_ARCH_X86_64')!).filter((n) => !/^mkdir/.test(n));
  const r = runUnder(
    { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 13, syscalls: [{ names: names as [string, ...string[]], action: 'SCMP_ACT_ALLOW' }] },
    probeMkdir(),
  );
  assert.equal(r.stdout, 'errno=13', r.stderr);
});

test('argument comparisons select which calls the rule catches (32- and 64-bit values)', { skip }, () => {
  const profile: LinuxSeccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13, args: [{ index: 1, value: 0o700, op: 'SCMP_CMP_EQ' }] },
      // getpid ignores its arguments, but seccomp sees the registers: a clean probe for comparisons.
      { names: ['getpid'], action: 'SCMP_ACT_ERRNO', errnoRet: 33, args: [{ index: 0, value: 0xff00000000, valueTwo: 0x1200000000, op: 'SCMP_CMP_MASKED_EQ' }] },
      { names: ['getpid'], action: 'SCMP_ACT_ERRNO', errnoRet: 34, args: [{ index: 1, value: 0x100000000, op: 'SCMP_CMP_GT' }] },
      { names: ['getpid'], action: 'SCMP_ACT_ERRNO', errnoRet: 35, args: [{ index: 2, value: 5, op: 'SCMP_CMP_LT' }, { index: 3, value: 7, op: 'SCMP_CMP_NE' }] },
      { names: ['getppid'], action: 'SCMP_ACT_ERRNO', errnoRet: 36, args: [{ index: 0, value: 0x200000000, op: 'SCMP_CMP_LE' }, { index: 1, value: 9, op: 'SCMP_CMP_GE' }] },
    ],
  };
  const errnoOf = (cmd: string[]) => runUnder(profile, cmd).stdout.replace(/^ret=-?\d+ /, '');
  assert.equal(errnoOf(probeMkdir('700')), 'errno=13');
  assert.equal(errnoOf(probeMkdir('755')), 'errno=0');
  const arg = (x: bigint) => '0x' + x.toString(16);
  const big = 7n;
  assert.equal(errnoOf(probeCall(GETPID, arg(0x12000000ffn), 0, big, 0)), 'errno=33'); // masked hi word matches
  assert.equal(errnoOf(probeCall(GETPID, arg(0x13000000ffn), 0, big, 0)), 'errno=0');
  assert.equal(errnoOf(probeCall(GETPID, 0, arg(0x100000001n), big, 0)), 'errno=34'); // > 2^32 by the low word
  assert.equal(errnoOf(probeCall(GETPID, 0, arg(0x100000000n), big, 0)), 'errno=0');
  assert.equal(errnoOf(probeCall(GETPID, 0, 0, 4, 0)), 'errno=35'); // a2 < 5 and a3 != 7
  assert.equal(errnoOf(probeCall(GETPID, 0, 0, 4, 7)), 'errno=0');
  assert.equal(errnoOf(probeCall(GETPID, 0, 0, arg(0x100000004n), 0)), 'errno=0'); // hi word makes a2 large
  assert.equal(errnoOf(probeCall(110, arg(0x200000000n), 9)), 'errno=36'); // getppid
  assert.equal(errnoOf(probeCall(110, arg(0x200000001n), 9)), 'errno=0');
  assert.equal(errnoOf(probeCall(110, 1, 8)), 'errno=0');
});

test("runc's -ENOSYS stub: syscalls newer than the profile get ENOSYS, unlisted older ones the default", { skip }, () => {
  const table = syscallTable('SCMP_ARCH_X86_64')!;
  const names = Object.keys(table).filter((n) => table[n]! <= 400 && n !== 'mkdir');
  const profile: LinuxSeccomp = {
    defaultAction: 'SCMP_ACT_ERRNO',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [{ names: names as [string, ...string[]], action: 'SCMP_ACT_ALLOW' }],
  };
  assert.equal(runUnder(profile, probeMkdir()).stdout, 'errno=1');
  assert.equal(runUnder(profile, probeCall(445)).stdout, 'ret=-1 errno=38'); // landlock_add_rule > 400
  assert.equal(runUnder(profile, probeCall(9999)).stdout, 'ret=-1 errno=38');
  // Without the stub (default ALLOW profiles never get it) an unknown number reaches the kernel: ENOSYS too,
  // but from the kernel; with ERRNO(ENOSYS) as default runc adds no stub.
  const noStub = compileSeccomp({ ...profile, defaultErrnoRet: 38 });
  const withStub = compileSeccomp(profile);
  assert.ok(noStub.length < withStub.length + 2);
});

test('SCMP_ACT_NOTIFY: the filter is installed with NEW_LISTENER and the listener answers the call', { skip }, () => {
  const profile: LinuxSeccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    listenerPath: '/run/agent.sock',
    syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_NOTIFY' }],
  };
  const r = runUnder(profile, probeMkdir(), { notifyErrno: 77 });
  assert.equal(r.compiled.flags & 8, 8, 'SECCOMP_FILTER_FLAG_NEW_LISTENER');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'errno=77');
  assert.match(r.stderr, /notifications=1/);
});

test('x86 (i386) processes are filtered with i386 numbers, socket() also through socketcall()', { skip }, (t) => {
  // The VM lane's guest kernel runs i386 programs: there the test must run, not skip.
  if (i386Missing && process.env.KEEL_VM_GUEST === '1') assert.fail(`the guest kernel should run i386 programs: ${i386Missing}`);
  if (i386Missing) return t.skip(i386Missing);
  const profile: LinuxSeccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'],
    syscalls: [
      { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 66 },
      { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: 55 },
    ],
  };
  const mkdir32 = i386('mkdir32', 39, 0, 0o755, 0); // mkdir(NULL): EFAULT unless filtered
  const socketcall32 = i386('socketcall32', 102, 1, 0, 0); // socketcall(SYS_SOCKET, NULL)
  const socket32 = i386('socket32', 359, 2, 1, 0); // socket(AF_INET, SOCK_STREAM, 0)
  const getpid32 = i386('getpid32', 20, 0, 0, 0);
  assert.equal(spawnSync(mkdir32).status, 14, 'unfiltered: EFAULT');
  assert.equal(runUnder(profile, [mkdir32]).status, 66);
  assert.equal(runUnder(profile, [socketcall32]).status, 55);
  assert.equal(runUnder(profile, [socket32]).status, 55);
  assert.equal(runUnder(profile, [getpid32]).status, 0);
  // Without SCMP_ARCH_X86 in the filter an i386 syscall is a bad architecture: killed.
  const r = runUnder({ ...profile, architectures: ['SCMP_ARCH_X86_64'] }, [getpid32]);
  assert.equal(r.signal, 'SIGSYS');
});

test('x32 numbers (bit 30) are a bad architecture unless SCMP_ARCH_X32 is listed', { skip }, () => {
  const X32_GETPID = 0x40000000 + 39;
  const profile: LinuxSeccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [{ names: ['getpid'], action: 'SCMP_ACT_ERRNO', errnoRet: 44 }],
  };
  assert.equal(runUnder(profile, probeCall(X32_GETPID)).signal, 'SIGSYS');
  const withX32 = runUnder({ ...profile, architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X32'] }, probeCall(X32_GETPID));
  assert.equal(withX32.stdout, 'ret=-1 errno=44');
  assert.equal(runUnder(profile, probeCall(GETPID)).stdout, 'ret=-1 errno=44');
});

test('a Docker-sized allow-list profile loads and runs busybox; what it leaves out is refused', { skip: skipBusybox }, () => {
  const denied = new Set(['mount', 'umount2', 'reboot', 'kexec_load', 'init_module', 'swapon', 'unshare']);
  const names = new Set<string>();
  for (const arch of ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']) {
    for (const n of Object.keys(syscallTable(arch)!)) if (!denied.has(n)) names.add(n);
  }
  names.delete('personality');
  names.delete('clone');
  const profile: LinuxSeccomp = {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: 1,
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: [
      { names: [...names] as [string, ...string[]], action: 'SCMP_ACT_ALLOW' },
      ...[0, 8, 0x20000, 0x20008, 0xffffffff].map((v) => ({
        names: ['personality'] as [string], action: 'SCMP_ACT_ALLOW' as const, args: [{ index: 0, value: v, op: 'SCMP_CMP_EQ' as const }],
      })),
      { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
    ],
  };
  const r = runUnder(profile, [busybox, 'sh', '-c', `echo hello; ${busybox} true`]);
  assert.ok(r.compiled.length < 300, `contiguous allowed numbers collapse into ranges (${r.compiled.length} instructions)`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'hello');
  const m = runUnder(profile, [busybox, 'mount', '-t', 'tmpfs', 'none', dir]);
  assert.notEqual(m.status, 0);
  assert.match(m.stderr, /permission denied|Operation not permitted/); // busybox words EPERM so
  const u = runUnder(profile, [busybox, 'unshare', '-n', 'true']);
  assert.notEqual(u.status, 0);
});

test('a long program (conditions on every syscall, jumps over 255 instructions) loads and decides right', { skip: skipBusybox }, () => {
  const MAGIC = 0xdead0000beefn;
  const table = syscallTable('SCMP_ARCH_X86_64')!;
  const profile: LinuxSeccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    syscalls: [
      {
        names: Object.keys(table) as [string, ...string[]],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: 99,
        args: [{ index: 5, value: Number(MAGIC), op: 'SCMP_CMP_EQ' }],
      },
    ],
  };
  const r = runUnder(profile, [busybox, 'sh', '-c', 'echo hello']);
  assert.ok(r.compiled.length > 1000, `${r.compiled.length} instructions`);
  assert.ok(r.compiled.instructions.some((i) => i.code === 0x05 && i.k > 255), 'has long jumps');
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'hello');
  const hit = runUnder(profile, probeCall(GETPID, 0, 0, 0, 0, 0, '0x' + MAGIC.toString(16)));
  assert.equal(hit.stdout, 'ret=-1 errno=99');
  const miss = runUnder(profile, probeCall(GETPID, 0, 0, 0, 0, 0, '0x' + (MAGIC + 1n).toString(16)));
  assert.match(miss.stdout, /^ret=\d+ errno=0$/);
});

test("containers-common's default profile: busybox works under it; what it leaves out is refused", { skip: skipBusybox }, (t) => {
  const profile = containersDefaultProfile();
  if (!profile) return t.skip('containers-common seccomp.json not installed');
  const r = runUnder(profile, [busybox, 'sh', '-c', `echo hello; ${busybox} ls / >/dev/null && echo ls-ok`]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'hello\nls-ok');
  // Left out for podman's default capabilities: kexec_load (246), init_module (175), open_by_handle_at (304).
  for (const nr of [246, 175, 304]) assert.equal(runUnder(profile, probeCall(nr)).stdout, 'ret=-1 errno=1', `syscall ${nr}`);
  // Newer than anything the profile names: ENOSYS, so libc falls back.
  assert.equal(runUnder(profile, probeCall(1000)).stdout, 'ret=-1 errno=38');
});
