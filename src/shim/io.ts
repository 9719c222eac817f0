// A task process's stdio as containerd gives it: paths of fifos it created (or file:// URIs,
// binary:// logger programs, or nothing), and whether the process has a terminal.
//
// Without a terminal, stdout and stderr are the fifos themselves: the process writes into them with
// no copy in between, and containerd's reader sees EOF when the last process holding them exits.
// They are opened read-write, which never blocks and never fails for want of a reader (the reader
// may come later, or go away: then the process's writes fill the fifo instead of failing). Stdin is
// a pipe the shim fills from the stdin fifo, so that CloseIO can end it.
//
// With binary:///PATH?K=V... as stdout (and stderr), as containerd's runc shim: PATH is started with
// the query's keys and values as arguments, CONTAINER_ID and CONTAINER_NAMESPACE as its environment,
// the read ends of the process's stdout and stderr pipes as fds 3 and 4 and a pipe it closes when it
// is ready as fd 5; the process starts once it is. On close the logger gets SIGTERM, then SIGKILL
// after 12 s, if it has not ended with the output.
//
// With a terminal, the container makes a pty and sends its master to a console socket; the shim
// copies stdin into the master and the master into stdout, and resizes it on ResizePty.
import { openSync, closeSync, constants as fsc } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { Socket } from 'node:net';
import * as tty from 'node:tty';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import * as runtime from '../runtime/index.js';
import { Code, TtrpcError } from './ttrpc.js';

export interface StdioPaths { stdin: string; stdout: string; stderr: string; terminal: boolean }

/** Who the output is of, for binary:// loggers (their CONTAINER_ID and CONTAINER_NAMESPACE). */
export interface Owner { id: string; namespace: string }

export interface ProcessIO {
  /** Fds for the process (stdin, stdout, stderr); without a terminal. */
  stdio?: [number, number, number];
  /** Console socket to give create/exec, with a terminal. */
  consoleSocket?: string;
  /** After create/exec succeeded: drop the process's ends, take the pty master when there is one. */
  started(): void;
  closeStdin(): void;
  resize(width: number, height: number): Promise<void>;
  /** Releases everything (the process is gone or was never made). */
  close(): void;
}

/** Opens a stdio destination: a fifo path read-write (never blocks), a file:// URI for appending. */
function openOutput(target: string): number {
  if (target.startsWith('file://')) {
    const path = decodeURIComponent(new URL(target).pathname);
    return openSync(path, fsc.O_WRONLY | fsc.O_APPEND | fsc.O_CREAT, 0o600);
  }
  return openSync(target, fsc.O_RDWR | fsc.O_NONBLOCK);
}

/** How long a logger may take to end after SIGTERM (containerd's runc shim waits as long). */
const LOGGER_TERM_MS = 12_000;

/**
 * Starts the binary:// logger `uri` for `owner`; resolves with the write ends of its stdout and
 * stderr pipes once it closed fd 5 (ready), and the logger process.
 */
async function startLogger(uri: string, owner: Owner, fds: number[]): Promise<{ stdout: number; stderr: number; proc: ChildProcess }> {
  let url: URL;
  try { url = new URL(uri); } catch { throw new TtrpcError(Code.INVALID_ARGUMENT, `stdio ${uri}: not a URI`); }
  const path = decodeURIComponent(url.pathname);
  if (!path.startsWith('/')) throw new TtrpcError(Code.INVALID_ARGUMENT, `stdio ${uri}: the logger's path must be absolute`);
  const args: string[] = [];
  for (const [k, v] of url.searchParams) args.push(k, ...(v ? [v] : []));
  const [outR, outW] = await runtime.openPipe();
  fds.push(outR, outW);
  const [errR, errW] = await runtime.openPipe();
  fds.push(errR, errW);
  const [readyR, readyW] = await runtime.openPipe();
  fds.push(readyW);
  const ready = new Socket({ fd: readyR, readable: true, writable: false });
  const proc = spawn(path, args, { stdio: ['ignore', 'ignore', 'ignore', outR, errR, readyW], env: { CONTAINER_ID: owner.id, CONTAINER_NAMESPACE: owner.namespace }, detached: false });
  // Only the logger holds the read ends and the ready pipe's write end now.
  for (const fd of [outR, errR, readyW]) { closeSync(fd); fds.splice(fds.indexOf(fd), 1); }
  try {
    await new Promise<void>((resolve, reject) => {
      proc.once('error', (e) => reject(new TtrpcError(Code.FAILED_PRECONDITION, `stdio ${uri}: cannot start the logger: ${e.message}`)));
      proc.once('exit', (code, signal) => {
        if (code === 0) resolve(); // a logger may finish its set-up and hand off (or have nothing to do)
        else reject(new TtrpcError(Code.FAILED_PRECONDITION, `stdio ${uri}: the logger exited before it was ready (${signal ?? `exit status ${code}`})`));
      });
      ready.on('data', () => undefined);
      ready.once('end', resolve);
      ready.once('error', resolve);
    });
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  } finally {
    ready.destroy();
  }
  return { stdout: outW, stderr: errW, proc };
}

/** Ends a logger that has not ended with its output: SIGTERM, then SIGKILL. */
function stopLogger(proc: ChildProcess): void {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const kill = setTimeout(() => proc.kill('SIGKILL'), LOGGER_TERM_MS);
  kill.unref();
  proc.once('exit', () => clearTimeout(kill));
}

const fifoSocket = (fd: number, readable: boolean) => new Socket({ fd, readable, writable: !readable });

/** Sets up a process's stdio (`name` names it in messages). */
export async function openProcessIO(paths: StdioPaths, name: string, log: (m: string) => void, owner?: Owner): Promise<ProcessIO> {
  const fds: number[] = [];
  const streams: Socket[] = [];
  let stdinStream: Socket | undefined;
  let stdinEnd: Socket | undefined;
  const closeFds = () => { for (const fd of fds.splice(0)) { try { closeSync(fd); } catch { /* closed */ } } };
  try {
    if (paths.terminal) {
      // In the temporary directory, as runc's shim does: a bundle's path can be longer than a
      // socket's path may be (108 bytes).
      const consoleSock = await runtime.consoleReceiver(join(tmpdir(), `keel-pty-${randomBytes(8).toString('hex')}.sock`));
      let master = -1;
      let masterIn: Socket | undefined;
      return {
        consoleSocket: consoleSock.path,
        started() {
          try { master = consoleSock.receive(); } finally { consoleSock.close(); }
          // The pty master: read what the process prints, write what it is sent. The process's
          // stdout and stderr are the one terminal, so stderr is not used.
          const fromPty = new tty.ReadStream(master);
          if (paths.stdout) {
            const out = fifoSocket(openOutput(paths.stdout), false);
            out.on('error', (e) => log(`${name} stdout: ${e.message}`));
            fromPty.pipe(out);
            // EIO once the last slave fd is closed: the output is over, containerd's reader gets EOF.
            fromPty.on('error', () => out.end());
            streams.push(out);
          } else {
            fromPty.on('error', () => undefined);
            fromPty.resume();
          }
          streams.push(fromPty as unknown as Socket);
          if (paths.stdin) {
            masterIn = new tty.WriteStream(master) as unknown as Socket;
            masterIn.on('error', () => undefined);
            stdinStream = fifoSocket(openOutput(paths.stdin), true);
            stdinStream.on('error', (e) => log(`${name} stdin: ${e.message}`));
            stdinStream.pipe(masterIn, { end: false });
            streams.push(stdinStream, masterIn);
          }
        },
        closeStdin() {
          stdinStream?.unpipe();
          stdinStream?.destroy();
          // A terminal has no end of file; send the EOF character, as a user typing ^D would.
          if (masterIn && !masterIn.destroyed) masterIn.write('\x04');
        },
        resize: async (width, height) => {
          if (master < 0) throw new TtrpcError(Code.FAILED_PRECONDITION, `${name} has no terminal yet`);
          await runtime.resizeConsole(master, width, height);
        },
        close() {
          consoleSock.close();
          for (const s of streams.splice(0)) s.destroy();
        },
      };
    }
    const devNull = () => { const fd = openSync('/dev/null', fsc.O_RDWR); fds.push(fd); return fd; };
    let stdin: number;
    if (paths.stdin) {
      const [r, w] = await runtime.openPipe();
      fds.push(r);
      stdin = r;
      stdinEnd = fifoSocket(w, false);
      stdinEnd.on('error', () => undefined); // EPIPE when the process is gone
      stdinStream = fifoSocket(openOutput(paths.stdin), true);
      stdinStream.on('error', (e) => log(`${name} stdin: ${e.message}`));
      stdinStream.pipe(stdinEnd);
      streams.push(stdinStream, stdinEnd);
    } else {
      stdin = devNull();
    }
    let logger: ChildProcess | undefined;
    let stdout: number;
    let stderr: number;
    if (paths.stdout.startsWith('binary://') || paths.stderr.startsWith('binary://')) {
      const uri = paths.stdout || paths.stderr;
      if ((paths.stdout && paths.stdout !== uri) || (paths.stderr && paths.stderr !== uri)) {
        throw new TtrpcError(Code.INVALID_ARGUMENT, `stdio of ${name}: a binary:// logger takes both stdout and stderr (stdout ${paths.stdout || 'none'}, stderr ${paths.stderr || 'none'})`);
      }
      if (!owner) throw new TtrpcError(Code.INVALID_ARGUMENT, `stdio of ${name}: binary:// loggers are for a task's init`);
      const l = await startLogger(uri, owner, fds);
      logger = l.proc;
      stdout = l.stdout;
      stderr = l.stderr;
    } else {
      const out = (p: string) => { if (!p) return devNull(); const fd = openOutput(p); fds.push(fd); return fd; };
      stdout = out(paths.stdout);
      stderr = paths.stderr && paths.stderr === paths.stdout ? stdout : out(paths.stderr);
    }
    return {
      stdio: [stdin, stdout, stderr],
      started: closeFds,
      closeStdin() {
        stdinStream?.unpipe();
        stdinStream?.destroy();
        stdinEnd?.end();
      },
      resize: async () => { throw new TtrpcError(Code.FAILED_PRECONDITION, `${name} has no terminal`); },
      close() {
        closeFds();
        for (const s of streams.splice(0)) s.destroy();
        if (logger) stopLogger(logger);
      },
    };
  } catch (err) {
    closeFds();
    for (const s of streams) s.destroy();
    throw err;
  }
}
