// runc's global flags, parsed before the command name, the --log/--log-format logger, and the
// version lines. Loaded by keel before anything else: it must import nothing heavy (no clipanion).
import { appendFileSync, writeSync } from 'node:fs';
import { KeelError } from '../../util/errors.js';
import { RUNTIME_SPEC_VERSION } from '../../spec/version.js';

declare const __KEEL_VERSION__: string | undefined;
declare const __KEEL_COMMIT__: string | undefined;

/** Set by scripts/build.ts from package.json and git; the fallbacks show when running from source. */
export const VERSION = typeof __KEEL_VERSION__ === 'string' ? __KEEL_VERSION__ : '0.0.0-dev';
export const COMMIT = typeof __KEEL_COMMIT__ === 'string' ? __KEEL_COMMIT__ : 'unknown';

/** What `keel --version` prints: the lines of `runc --version`, plus the Node.js version. */
export function versionText(): string {
  return `keel version ${VERSION}\ncommit: ${COMMIT}\nspec: ${RUNTIME_SPEC_VERSION}\nnode: ${process.version}\n`;
}

/** Writes to stdout without creating process.stdout (a stream, and for a pipe the net module: ~2 ms). */
export function writeStdout(text: string): void {
  try {
    writeSync(1, text);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN') process.stdout.write(text); // a non-blocking stdout: let the stream queue it
    else if (code !== 'EPIPE') throw err;
  }
}

export interface GlobalFlags {
  root: string;
  log?: string;
  logFormat: 'text' | 'json';
  debug: boolean;
  systemdCgroup: boolean;
  rootless?: 'true' | 'false' | 'auto';
  /** The criu binary for checkpoint and restore (default PATH's criu). */
  criu?: string;
}

export const globals: GlobalFlags = { root: '/run/keel', logFormat: 'text', debug: false, systemdCgroup: false };

const VALUE_FLAGS = new Set(['--root', '--log', '--log-format', '--criu', '--rootless']);
const BOOL_FLAGS = new Set(['--debug', '--systemd-cgroup']);

/** Takes runc's global flags off the front of argv (both `--flag value` and `--flag=value`) and returns the rest. */
export function parseGlobalFlags(argv: string[]): string[] {
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--') || arg === '--') break;
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    if (BOOL_FLAGS.has(name)) {
      const value = eq > 0 ? arg.slice(eq + 1) : 'true';
      const on = value !== 'false';
      if (name === '--debug') globals.debug = on; else globals.systemdCgroup = on;
      continue;
    }
    if (!VALUE_FLAGS.has(name)) break;
    let value: string;
    if (eq > 0) value = arg.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new KeelError(`flag needs an argument: ${name}`);
      value = argv[++i]!;
    }
    switch (name) {
      case '--root': globals.root = value; break;
      case '--log': globals.log = value; break;
      case '--log-format':
        if (value !== 'text' && value !== 'json') throw new KeelError(`invalid --log-format ${JSON.stringify(value)}: must be text or json`);
        globals.logFormat = value; break;
      case '--rootless':
        if (value !== 'true' && value !== 'false' && value !== 'auto') throw new KeelError(`invalid --rootless ${JSON.stringify(value)}: must be true, false or auto`);
        globals.rootless = value; break;
      case '--criu': globals.criu = value; break;
      default: break;
    }
  }
  return argv.slice(i);
}

/** Writes one log record to the --log file (runc's text or JSON form); does nothing without --log. */
export function writeLog(level: 'debug' | 'info' | 'warning' | 'error', msg: string): void {
  if (level === 'debug' && !globals.debug) return;
  if (!globals.log) {
    if (level === 'debug' || level === 'warning') process.stderr.write(`${level}: ${msg}\n`);
    return;
  }
  const time = new Date().toISOString();
  const line = globals.logFormat === 'json'
    ? JSON.stringify({ level, msg, time }) + '\n'
    : `time="${time}" level=${level} msg=${JSON.stringify(msg)}\n`;
  try { appendFileSync(globals.log, line); } catch { /* a log that cannot be written must not hide the real error */ }
}
