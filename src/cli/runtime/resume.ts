// `keel resume ID`: thaws a paused container (runc's resume).
import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { globals, writeLog } from './globals.js';

export class ResumeCommand extends KeelCommand {
  static override paths = [['resume']];
  static override usage = Command.Usage({ description: 'resume all processes of a paused container' });
  id = Option.String();
  async run() {
    const { resume } = await import('../../runtime/index.js');
    await resume({ root: globals.root, systemdCgroup: globals.systemdCgroup, warn: (m: string) => writeLog('warning', m) }, this.id);
  }
}
