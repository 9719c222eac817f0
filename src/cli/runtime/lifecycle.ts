// keel's lifecycle commands, with runc's names, flags and output.
import { writeSync } from 'node:fs';
import { Command, Option } from 'clipanion';
import { KeelCommand, intOption } from '../common.js';
import { globals, writeLog } from './globals.js';

/** Writes to stdout without creating Node's stdout stream (which costs milliseconds at start). */
function out(text: string): void {
  const buf = Buffer.from(text);
  for (let off = 0; off < buf.length;) off += writeSync(1, buf, off);
}

async function runtime() {
  // The lifecycle module alone (not the whole entry module): a command loads only what it uses.
  const rt = await import('../../runtime/container.js');
  const ctx = { root: globals.root, systemdCgroup: globals.systemdCgroup, warn: (m: string) => writeLog('warning', m) };
  return { rt, ctx };
}

/** The flags `create` and `run` share (runc's). */
abstract class CreateFlagsCommand extends KeelCommand {
  bundle = Option.String('-b,--bundle', { description: 'path to the root of the bundle directory (default: current directory)' });
  pidFile = Option.String('--pid-file', { description: 'file to write the process id to' });
  consoleSocket = Option.String('--console-socket', { description: 'unix socket that receives the pty master when process.terminal is true' });
  noPivot = Option.Boolean('--no-pivot', false, { description: 'do not use pivot_root (MS_MOVE + chroot instead)' });
  noNewKeyring = Option.Boolean('--no-new-keyring', false, { description: 'do not create a new session keyring' });
  preserveFds = Option.String('--preserve-fds', { description: 'pass N additional file descriptors (3..3+N-1) to the container' });

  createOptions() {
    return {
      bundle: this.bundle ?? '.', pidFile: this.pidFile, consoleSocket: this.consoleSocket, noPivot: this.noPivot,
      noNewKeyring: this.noNewKeyring, preserveFds: intOption(this.preserveFds, '--preserve-fds'),
    };
  }
}

export class CreateCommand extends CreateFlagsCommand {
  static override paths = [['create']];
  static override usage = Command.Usage({ description: 'create a container (its process waits for start)' });
  id = Option.String();
  async run() {
    const { rt, ctx } = await runtime();
    await rt.create(ctx, this.id, this.createOptions());
  }
}

export class RunCommand extends CreateFlagsCommand {
  static override paths = [['run']];
  static override usage = Command.Usage({ description: 'create and start a container, wait for it and exit with its status' });
  detach = Option.Boolean('-d,--detach', false, { description: 'detach from the container process' });
  keep = Option.Boolean('--keep', false, { description: 'do not delete the container after it exits' });
  id = Option.String();
  async run() {
    const { rt, ctx } = await runtime();
    return rt.run(ctx, this.id, { ...this.createOptions(), detach: this.detach, keep: this.keep });
  }
}

export class StartCommand extends KeelCommand {
  static override paths = [['start']];
  static override usage = Command.Usage({ description: 'start the process of a created container' });
  id = Option.String();
  async run() {
    const { rt, ctx } = await runtime();
    await rt.start(ctx, this.id);
  }
}

export class StateCommand extends KeelCommand {
  static override paths = [['state']];
  static override usage = Command.Usage({ description: 'print the runtime-spec state of a container as JSON' });
  id = Option.String();
  async run() {
    const { rt, ctx } = await runtime();
    out(JSON.stringify(await rt.state(ctx, this.id), null, 2) + '\n');
  }
}

export class KillCommand extends KeelCommand {
  static override paths = [['kill']];
  static override usage = Command.Usage({ description: 'send a signal (default SIGTERM) to the container init, or to all its processes with --all' });
  all = Option.Boolean('-a,--all', false, { description: 'send the signal to every process of the container' });
  id = Option.String();
  signal = Option.String({ required: false });
  async run() {
    const { rt, ctx } = await runtime();
    await rt.kill(ctx, this.id, this.signal ?? 'TERM', { all: this.all });
  }
}

export class DeleteCommand extends KeelCommand {
  static override paths = [['delete']];
  static override usage = Command.Usage({ description: 'delete a stopped container and everything it owned' });
  force = Option.Boolean('-f,--force', false, { description: 'kill the container first if it is still running' });
  id = Option.String();
  async run() {
    const { rt, ctx } = await runtime();
    await rt.remove(ctx, this.id, { force: this.force });
  }
}

export class ListCommand extends KeelCommand {
  static override paths = [['list'], ['ps-all']];
  static override usage = Command.Usage({ description: 'list the containers under --root' });
  format = Option.String('-f,--format', 'table', { description: 'table or json' });
  quiet = Option.Boolean('-q,--quiet', false, { description: 'print only the ids' });
  async run() {
    const { rt, ctx } = await runtime();
    const all = await rt.list(ctx);
    if (this.quiet) { for (const s of all) out(`${s.id}\n`); return; }
    if (this.format === 'json') { out(JSON.stringify(all.length ? all : null) + '\n'); return; }
    if (this.format !== 'table') throw new (await import('../../util/errors.js')).KeelError(`invalid --format ${JSON.stringify(this.format)}: must be table or json`);
    const rows = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'], ...all.map((s) => [s.id, String(s.pid), s.status, s.bundle, s.created, s.owner])];
    const widths = rows[0]!.map((_, i) => Math.max(12, ...rows.map((r) => r[i]!.length + 3)));
    for (const r of rows) out(r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('').trimEnd() + '\n');
  }
}

export const lifecycleCommands = [CreateCommand, RunCommand, StartCommand, StateCommand, KillCommand, DeleteCommand, ListCommand];
