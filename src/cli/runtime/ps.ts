// `keel ps [--format table|json] ID [ps options]`: the container's processes (runc's ps).
import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { globals, writeLog, writeStdout } from './globals.js';
import { KeelError } from '../../util/errors.js';

export class PsCommand extends KeelCommand {
  static override paths = [['ps']];
  static override usage = Command.Usage({
    description: 'display the processes running inside a container',
    details: 'With `--format table` (the default) runs the host\'s `ps` with the options given after the ID (default `-ef`) and keeps the lines of the container\'s processes; `--format json` prints their host pids as a JSON array.',
    examples: [['Processes of container c1', 'keel ps c1'], ['Host pids as JSON', 'keel ps --format json c1'], ['Custom ps columns', 'keel ps c1 -o pid,comm']],
  });
  format = Option.String('-f,--format', 'table', { description: 'table or json' });
  id = Option.String();
  psArgs = Option.Proxy();
  async run() {
    if (this.format !== 'table' && this.format !== 'json') throw new KeelError(`invalid --format ${JSON.stringify(this.format)}: must be table or json`);
    const rt = await import('../../runtime/index.js');
    const ctx = { root: globals.root, systemdCgroup: globals.systemdCgroup, warn: (m: string) => writeLog('warning', m) };
    if (this.format === 'json') {
      const pids = await rt.ps(ctx, this.id);
      writeStdout(JSON.stringify(pids.length ? pids : null) + '\n');
      return;
    }
    writeStdout(await rt.psTable(ctx, this.id, this.psArgs));
  }
}
