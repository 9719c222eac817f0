// The VM test lane (`npm run test:vm`): boots Debian's kernel under qemu with a pure cgroup v2
// hierarchy, systemd as PID 1 and AppArmor, on this machine's own files, runs the test files of
// test/vm/guest/ there and prints their TAP output as if they had run here.
//
// - The kernel is Debian's (the package linux-image-amd64 depends on), fetched with
//   `apt-get download` and unpacked with `dpkg-deb -x` into a cache (KEEL_VM_CACHE, default
//   /var/cache/keel-vm): nothing is installed on the host.
// - A busybox initramfs (test/vm/guest/init.sh) loads virtio, 9p and overlay, mounts the host's /
//   (shared read-only over 9p) under an overlay with a tmpfs upper and switch_roots into systemd,
//   which starts the lane's unit (test/vm/guest/lane.sh).
// - The guest writes TAP and its exit status to a results folder shared read-write over 9p; a
//   virtio disk gives the io controller a real block device.
// - /dev/kvm is used when there is one; otherwise qemu's software CPU (TCG), much slower.
// A lane that cannot boot, or whose guest does not report, fails with the reason (exit 1).
// `--bench` runs bench/runtime-lifecycle-vm.sh in the guest instead of tests (KEEL_VM_BENCH_RUNS: its -n).
// Environment: KEEL_VM_FILES (guest test files to run, space-separated, default all of
// test/vm/guest/*.guest.ts), KEEL_VM_SH (shell commands run in the guest first), KEEL_VM_TIMEOUT (seconds, default 1800), KEEL_VM_KEEP (keep the work dir).
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, ftruncateSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { cpus } from 'node:os';

const repo = new URL('../../', import.meta.url).pathname.replace(/\/$/, '');
const cache = process.env.KEEL_VM_CACHE ?? '/var/cache/keel-vm';
const timeoutS = Number(process.env.KEEL_VM_TIMEOUT ?? 1800);
const started = Date.now();
/** --bench: no tests; the guest runs bench/runtime-lifecycle-vm.sh and its output is printed. */
const bench = process.argv.includes('--bench');

/** Modules the initramfs loads, in this order (virtio PCI transport, 9p over virtio, overlayfs, virtio disk). */
const MODULES = [
  'virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'netfs', 'fscache',
  '9pnet', '9pnet_virtio', '9p', 'overlay', 'virtio_blk',
];

function fail(reason: string): never {
  process.stdout.write(`not ok 1 - the VM lane ran # ${reason}\n1..1\n# tests 1\n# pass 0\n# fail 1\n`);
  process.stderr.write(`keel VM lane: ${reason}\n`);
  process.exit(1);
}

function run(cmd: string, args: string[], opts: { cwd?: string; input?: string | Buffer } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed (exit ${r.status}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  return r.stdout;
}

function log(msg: string): void {
  process.stderr.write(`# vm ${((Date.now() - started) / 1000).toFixed(0)}s: ${msg}\n`);
}

/** Debian's current 6.x kernel, unpacked: returns vmlinuz and the modules folder. */
function kernel(): { vmlinuz: string; modules: string; version: string } {
  const deps = run('apt-cache', ['depends', 'linux-image-amd64']);
  const pkg = /Depends:\s*(linux-image-[0-9][^\s]*)/.exec(deps)?.[1];
  if (!pkg) fail(`apt-cache knows no kernel package that linux-image-amd64 depends on (run apt-get update): ${deps.trim()}`);
  const version = pkg.slice('linux-image-'.length);
  const dir = join(cache, pkg);
  const vmlinuz = join(dir, 'boot', `vmlinuz-${version}`);
  const modules = join(dir, 'lib', 'modules', version);
  if (!existsSync(join(modules, 'modules.dep'))) {
    log(`fetching ${pkg} with apt-get download`);
    mkdirSync(cache, { recursive: true });
    const tmp = mkdtempSync(join(cache, '.fetch-'));
    chmodSync(tmp, 0o777); // apt's _apt user downloads into it
    try {
      run('apt-get', ['download', '-q', pkg], { cwd: tmp });
      const deb = readdirSync(tmp).find((f) => f.endsWith('.deb'));
      if (!deb) fail(`apt-get download ${pkg} left no .deb`);
      const out = join(tmp, 'x');
      run('dpkg-deb', ['-x', join(tmp, deb), out]);
      run('depmod', ['-b', out, version]);
      rmSync(dir, { recursive: true, force: true });
      renameSync(out, dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (!existsSync(vmlinuz)) fail(`${vmlinuz} is missing from the unpacked ${pkg}`);
  return { vmlinuz, modules, version };
}

/** A newc cpio of busybox as /init's shell, the init script and the modules. */
function initramfs(work: string, modules: string): string {
  const root = join(work, 'initramfs');
  for (const d of ['bin', 'modules']) mkdirSync(join(root, d), { recursive: true });
  const busybox = '/bin/busybox';
  if (!existsSync(busybox) || !/statically linked|static-pie/.test(run('file', ['-L', busybox]))) {
    fail('the initramfs needs a static /bin/busybox (apt-get install busybox-static)');
  }
  copyFileSync(busybox, join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  copyFileSync(join(repo, 'test/vm/guest/init.sh'), join(root, 'init'));
  chmodSync(join(root, 'init'), 0o755);
  const dep = readFileSync(join(modules, 'modules.dep'), 'utf8');
  for (const m of MODULES) {
    const line = dep.split('\n').find((l) => basename(l.split(':')[0]!).replace(/\.ko(\.xz|\.zst|\.gz)?$/, '') === m);
    if (!line) fail(`module ${m} is not in ${modules}`);
    const file = line.split(':')[0]!;
    if (!file.endsWith('.ko')) fail(`module ${file} is compressed; the initramfs's insmod needs plain .ko files`);
    copyFileSync(join(modules, file), join(root, 'modules', `${m}.ko`));
  }
  writeFileSync(join(root, 'modules.list'), MODULES.join('\n') + '\n');
  const list = run('find', ['.'], { cwd: root });
  const r = spawnSync('/bin/busybox', ['cpio', '-o', '-H', 'newc'], { cwd: root, input: list, maxBuffer: 256 << 20 });
  if (r.status !== 0) fail(`cpio: ${r.stderr}`);
  const out = join(work, 'initramfs.cpio');
  writeFileSync(out, r.stdout);
  return out;
}

/** Test files of other areas that need the guest's kernel (i386 programs, which the host may not run). */
const ALSO_IN_GUEST = [
  'test/runtime-seccomp/kernel-enforces-compiled-filters.test.ts',
  // criu 3.17 (Debian 12) cannot work on Linux 6.13+ hosts; the guest's Debian 6.1 kernel it can (~20 min in TCG).
  'test/runtime-checkpoint/checkpointed-containers-restore-and-keep-running.test.ts',
  'test/runtime-checkpoint/podman-checkpoints-and-restores-with-keel.test.ts',
];

function guestFiles(): string[] {
  if (bench) return [];
  const picked = process.env.KEEL_VM_FILES?.split(/\s+/).filter(Boolean);
  if (picked?.length) return picked.map((f) => (f.startsWith('/') ? f : join(repo, f)));
  const dir = join(repo, 'test/vm/guest');
  const own = readdirSync(dir).filter((f) => f.endsWith('.guest.ts')).sort().map((f) => join(dir, f));
  return [...own, ...ALSO_IN_GUEST.map((f) => join(repo, f))];
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) fail('the VM lane needs root (apt-get download, qemu with a 9p export of /)');
  const qemu = spawnSync('sh', ['-c', 'command -v qemu-system-x86_64']).stdout?.toString().trim();
  if (!qemu) fail('qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)');
  if (!existsSync(join(repo, 'dist/keel'))) fail('dist/keel is not built (npm run build)');
  for (const need of ['/lib/systemd/systemd', '/usr/bin/dbus-daemon', '/usr/sbin/apparmor_parser']) {
    if (!existsSync(need)) fail(`${need} is missing: the guest boots the host's files (apt-get install systemd dbus apparmor)`);
  }
  const k = kernel();
  const work = mkdtempSync('/tmp/keel-vm-');
  const results = join(work, 'results');
  mkdirSync(results);
  chmodSync(results, 0o777);
  const files = guestFiles();
  writeFileSync(join(results, 'files'), files.join('\n') + '\n');
  // KEEL_VM_SH: shell commands the guest runs before the tests (output on the console and in sh.out), to look around.
  const sh = bench ? `bash ${repo}/bench/runtime-lifecycle-vm.sh ${process.env.KEEL_VM_BENCH_RUNS ?? ''}` : process.env.KEEL_VM_SH;
  if (sh) writeFileSync(join(results, 'sh'), sh);
  const initrd = initramfs(work, k.modules);
  // A real block device for the io controller's weights and throttles.
  const disk = join(work, 'disk.img');
  const fd = openSync(disk, 'w');
  ftruncateSync(fd, 64 << 20);
  closeSync(fd);

  const kvm = existsSync('/dev/kvm');
  const smp = Math.min(2, cpus().length);
  const append = [
    'console=ttyS0', 'panic=-1', 'loglevel=4',
    'systemd.unit=keel-vm.target', 'systemd.unified_cgroup_hierarchy=1', 'cgroup_no_v1=all', 'apparmor=1', 'security=apparmor',
    'hugepagesz=2M', 'hugepages=16', `keel.repo=${repo}`, `keel.modules=${k.modules}`,
    ...(process.env.KEEL_VM_DEBUG ? ['systemd.log_level=info'] : ['systemd.show_status=0', 'systemd.log_level=warning']),
  ].join(' ');
  const args = [
    ...(kvm ? ['-accel', 'kvm'] : []), '-accel', 'tcg,thread=multi', '-smp', String(smp), '-m', '2048', '-cpu', 'max',
    '-nographic', '-no-reboot', '-kernel', k.vmlinuz, '-initrd', initrd, '-append', append,
    '-virtfs', 'local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${results},mount_tag=results,security_model=none`,
    '-drive', `file=${disk},if=virtio,format=raw,cache=unsafe`,
    '-nic', 'none',
  ];
  log(`booting ${basename(k.vmlinuz)} (${kvm ? 'KVM' : 'TCG, no /dev/kvm'}, ${smp} CPUs) with ${files.length} test files; console: ${join(work, 'console.log')}`);
  const consoleLog = createWriteStream(join(work, 'console.log'));
  // qemu dies with this process (setpriv's parent-death signal), whatever ends it.
  const child = spawn('setpriv', ['--pdeathsig', 'SIGKILL', qemu, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  let pending = '';
  const onData = (d: Buffer) => {
    consoleLog.write(d);
    tail = (tail + d.toString()).slice(-8000);
    pending += d.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl).replace(/\r/g, '');
      pending = pending.slice(nl + 1);
      // The guest's lane script marks its progress lines.
      const m = /keel-vm: (.*)$/.exec(line);
      if (m) log(m[1]!);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => { child.kill('SIGKILL'); process.exit(1); });
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutS * 1000);
  const exit = await new Promise<{ code: number | null; signal: string | null }>((res) => child.on('close', (code, signal) => res({ code, signal })));
  clearTimeout(timer);
  consoleLog.end();
  const lastLines = tail.replace(/\r/g, '').split('\n').filter((l) => l.trim()).slice(-25).join('\n');
  const status = join(results, 'status');
  const tap = join(results, 'tap');
  const tapText = existsSync(tap) ? readFileSync(tap, 'utf8') : undefined;
  const wall = ((Date.now() - started) / 1000).toFixed(0);
  if (!existsSync(status)) {
    process.stderr.write(`${lastLines}\n`);
    fail(timedOut ? `the guest did not finish within ${timeoutS} s (console: ${join(work, 'console.log')})`
      : `the guest stopped without reporting a result (qemu exit ${exit.code ?? exit.signal}); last console lines above`);
  }
  const code = Number(readFileSync(status, 'utf8').trim());
  const shOut = join(results, 'sh.out');
  if (existsSync(shOut)) {
    if (bench) process.stdout.write(readFileSync(shOut, 'utf8'));
    else process.stderr.write(`# KEEL_VM_SH output:\n${readFileSync(shOut, 'utf8')}`);
  }
  if (existsSync(join(results, 'stderr'))) {
    const err = readFileSync(join(results, 'stderr'), 'utf8').trim();
    if (err) process.stderr.write(`# guest stderr:\n${err.split('\n').map((l) => `#   ${l}`).join('\n')}\n`);
  }
  log(`lane finished in ${wall} s wall, guest test runner exit ${code}`);
  if (!process.env.KEEL_VM_KEEP) rmSync(work, { recursive: true, force: true });
  if (bench) process.exit(code === 0 ? 0 : 1);
  // The guest's TAP last, so its summary closes the output.
  if (tapText === undefined) fail('the guest wrote no TAP output');
  process.stdout.write(tapText);
  process.exit(code === 0 ? 0 : 1);
}

void dirname;
main().catch((err) => fail(String(err?.stack ?? err)));
