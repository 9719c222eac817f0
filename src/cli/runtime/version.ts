import { Command } from 'clipanion';
import { VERSION, COMMIT } from '../common.js';
import { RUNTIME_SPEC_VERSION } from '../../spec/version.js';

/** `keel --version`: the same lines as `runc --version`. */
export class VersionCommand extends Command {
  static override paths = [['--version'], ['-v'], ['version']];
  static override usage = Command.Usage({ description: 'print the version, commit and spec version' });
  async execute(): Promise<number> {
    this.context.stdout.write(`keel version ${VERSION}\ncommit: ${COMMIT}\nspec: ${RUNTIME_SPEC_VERSION}\nnode: ${process.version}\n`);
    return 0;
  }
}
