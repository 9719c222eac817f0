import { writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { KeelError } from '../../util/errors.js';

/** `keel spec [--rootless] [--bundle DIR]`: writes a default config.json, as `runc spec` does. */
export class SpecCommand extends KeelCommand {
  static override paths = [['spec']];
  static override usage = Command.Usage({
    description: 'create a new specification file (config.json) in the bundle directory',
    details: 'Writes the default configuration: `sh` on a terminal in a read-only `rootfs` directory. Refuses to overwrite an existing config.json.',
    examples: [['Make a bundle for a rootfs in ./rootfs', 'keel spec'], ['For an unprivileged user', 'keel spec --rootless']],
  });

  bundle = Option.String('--bundle,-b', { description: 'path to the root of the bundle directory (default: the current directory)' });
  rootless = Option.Boolean('--rootless', false, { description: 'generate a configuration for a rootless container' });

  async run(): Promise<void> {
    const { defaultSpec, formatSpec } = await import('../../runtime/spec-default.js');
    const dir = this.bundle ?? '.';
    if (this.bundle !== undefined) {
      let isDir: boolean;
      try { isDir = statSync(dir).isDirectory(); } catch (err) {
        throw new KeelError(`chdir ${dir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
      }
      if (!isDir) throw new KeelError(`chdir ${dir}: not a directory`);
    }
    const text = formatSpec(defaultSpec({ rootless: this.rootless }));
    try {
      // 'wx': never replace a config.json, even one created between a check and the write.
      writeFileSync(join(dir, 'config.json'), text, { flag: 'wx', mode: 0o666 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeelError('File config.json exists. Remove it first');
      throw new KeelError(`write ${join(dir, 'config.json')}: ${(err as Error).message}`);
    }
  }
}
