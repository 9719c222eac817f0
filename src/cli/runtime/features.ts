// `keel features`: the runtime-spec features document of keel on this host (runc's features).
import { Command } from 'clipanion';
import { KeelCommand, VERSION, COMMIT } from '../common.js';
import { globals, writeStdout } from './globals.js';

export class FeaturesCommand extends KeelCommand {
  static override paths = [['features']];
  static override usage = Command.Usage({ description: 'show the enabled features (runtime-spec features.md JSON)' });
  async run() {
    const { features } = await import('../../runtime/index.js');
    writeStdout(JSON.stringify(await features({ version: VERSION, commit: COMMIT, criu: globals.criu, root: globals.root }), null, 4) + '\n');
  }
}
