// Helpers for checkpoint/restore tests: which criu to use and whether it works on this kernel,
// and containers whose stdio are pipes this test holds (criu restores pipes to the outside, as
// runc's tests do; a file or the host's /dev/null on stdio is outside the container's mounts).
import { spawnSync } from 'node:child_process';
import { closeSync, readSync } from 'node:fs';
import { keelBin, sleepMs } from '../runtime/helpers.js';
import { libc, pipeCloexec } from '../../src/runtime/sys/libc.js';

/** The criu the tests use: KEEL_TEST_CRIU (a criu built for a newer kernel, say) or PATH's. */
export const criu = process.env.KEEL_TEST_CRIU || 'criu';

const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;

let problem: string | false | undefined;
/** Why criu cannot checkpoint here (not installed, or `criu check` fails on this kernel), or false. */
export function criuProblem(): string | false {
  if (problem !== undefined) return problem;
  const r = spawnSync(criu, ['check'], { encoding: 'utf8' });
  if (r.error) problem = `${criu} is not installed`;
  else if (r.status !== 0) {
    const err = `${r.stderr}${r.stdout}`.split('\n').find((l) => l.includes('Error')) ?? `exit status ${r.status}`;
    const kernel = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim();
    problem = `\`${criu} check\` fails on this kernel (${kernel}): ${err.trim()} — run in the VM lane (npm run test:vm) or with KEEL_TEST_CRIU=a criu that knows this kernel`;
  } else problem = false;
  return problem;
}

/** A pipe: [read end, write end], close-on-exec (spawn's stdio dups them into the child). */
export function pipe(): [number, number] { return pipeCloexec(); }

/** Everything readable on `fd` now (made non-blocking), as text. */
export function drain(fd: number): string {
  const c = libc();
  c.fcntl(fd, 4 /* F_SETFL */, 0o4000 /* O_NONBLOCK */);
  const buf = Buffer.alloc(65536);
  let out = '';
  for (;;) {
    let n = 0;
    try { n = readSync(fd, buf, 0, buf.length, null); } catch (err) {
      // EAGAIN: nothing more now; EIO: a pty master whose slave side is closed.
      if (['EAGAIN', 'EIO'].includes((err as NodeJS.ErrnoException).code ?? '')) break;
      throw err;
    }
    if (n <= 0) break;
    out += buf.subarray(0, n).toString();
  }
  return out;
}

/** The numbers a counter container printed on `fd` so far (waits until it printed some). */
export function numbersFrom(fd: number, atLeast = 1, timeoutMs = 10_000): number[] {
  const end = Date.now() + timeoutMs;
  let text = '';
  for (;;) {
    text += drain(fd);
    const nums = text.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
    if (nums.length >= atLeast || Date.now() > end) return nums;
    sleepMs(50);
  }
}

export interface Attached {
  status: number | null;
  /** What the command printed when it failed. */
  stderr: string;
  /** Read end of the container's stdout and stderr. */
  out: number;
  /** Write end of its stdin (held so that stdin stays open). */
  stdin: number;
  close(): void;
}

/**
 * Runs `cmd args` (keel or runc: run -d, restore -d) with pipes as stdio, as engines do: the
 * container keeps the write end of stdout, the test keeps the read end and stdin's write end.
 */
export function withPipes(cmd: string, args: string[], timeout = 60_000): Attached {
  const [inR, inW] = pipe();
  const [outR, outW] = pipe();
  // stdout and stderr are one pipe (2>&1): the command's own error line, if any, comes there first.
  const r = spawnSync(cmd, args, { env, timeout, stdio: [inR, outW, outW] });
  closeSync(inR); closeSync(outW);
  const stderr = r.status === 0 ? '' : drain(outR);
  return {
    status: r.status, stderr: r.error ? String(r.error) : stderr, out: outR, stdin: inW,
    close() { try { closeSync(outR); } catch { /* closed */ } try { closeSync(inW); } catch { /* closed */ } },
  };
}

/** keel with --root ROOT --criu CRIU, stdio as withPipes. */
export function keelPiped(root: string, args: string[]): Attached {
  return withPipes(keelBin, ['--root', root, '--criu', criu, ...args]);
}

/** A counter that prints 0, 1, 2 ... every 100 ms. */
export const COUNTER = ['sh', '-c', 'i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done'];
