// `keel pause ID`: freezes every process of the container (runc's pause).
import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { globals, writeLog } from './globals.js';

export class PauseCommand extends KeelCommand {
  static override paths = [['pause']];
  static override usage = Command.Usage({ description: 'suspend all processes of a container (the cgroup freezer)' });
  id = Option.String();
  async run() {
    const { pause } = await import('../../runtime/index.js');
    await pause({ root: globals.root, systemdCgroup: globals.systemdCgroup, warn: (m: string) => writeLog('warning', m) }, this.id);
  }
}
