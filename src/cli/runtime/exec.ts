import { Command, Option } from 'clipanion';
import { KeelCommand, intOption } from '../common.js';
import { globals, writeLog } from './globals.js';

/** `keel exec`: runc's flags; exits with the process's exit code. */
export class ExecCommand extends KeelCommand {
  static override paths = [['exec']];
  static override usage = Command.Usage({ description: 'run a new process inside a running container' });
  tty = Option.Boolean('-t,--tty', false, { description: 'allocate a pseudo-TTY (needs --console-socket)' });
  consoleSocket = Option.String('--console-socket', { description: 'unix socket that receives the pty master' });
  detach = Option.Boolean('-d,--detach', false, { description: 'detach from the process' });
  pidFile = Option.String('--pid-file', { description: 'file to write the process id to' });
  process = Option.String('-p,--process', { description: 'path to a process.json (runtime-spec process)' });
  cwd = Option.String('--cwd', { description: 'current working directory in the container' });
  env = Option.Array('-e,--env', { description: 'set an environment variable (KEY=VALUE)' });
  user = Option.String('-u,--user', { description: 'UID[:GID]' });
  additionalGids = Option.Array('-g,--additional-gids', { description: 'additional gids' });
  cap = Option.Array('-c,--cap', { description: 'add a capability' });
  noNewPrivs = Option.Boolean('--no-new-privs', false, { description: 'set no_new_privs' });
  preserveFds = Option.String('--preserve-fds', { description: 'pass N additional file descriptors to the process' });
  id = Option.String();
  args = Option.Proxy();
  async run() {
    const { exec } = await import('../../runtime/exec.js');
    const ctx = { root: globals.root, systemdCgroup: globals.systemdCgroup, warn: (m: string) => writeLog('warning', m) };
    return exec(ctx, this.id, {
      args: this.args, process: this.process, tty: this.tty, consoleSocket: this.consoleSocket, detach: this.detach,
      pidFile: this.pidFile, cwd: this.cwd, env: this.env, user: this.user, caps: this.cap, noNewPrivs: this.noNewPrivs,
      additionalGids: this.additionalGids?.map((g) => intOption(g, '--additional-gids')!),
      preserveFds: intOption(this.preserveFds, '--preserve-fds'),
    });
  }
}
