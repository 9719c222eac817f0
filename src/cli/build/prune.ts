import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';

/** `keel-build prune [--all]`: empties the build cache of the store. */
export class PruneCommand extends KeelCommand {
  static override paths = [['prune']];
  static override usage = Command.Usage({
    description: 'empty the build cache',
    details: 'Removes the step cache, layer snapshots, context digests, RUN cache mounts and the blobs no stored image uses from the store (default /var/lib/keel as root, $XDG_DATA_HOME/keel otherwise). `--all` removes the stored images too. Waits for running builds to finish first.',
    examples: [['Empty the cache', 'keel-build prune'], ['Everything', 'keel-build prune --all']],
  });

  all = Option.Boolean('-a,--all', false, { description: 'remove the stored images too' });
  store = Option.String('--store,--root', { description: 'the store directory' });
  quiet = Option.Boolean('-q,--quiet', false, { description: 'print nothing' });

  async run(): Promise<void> {
    const { prune } = await import('../../builder/index.js');
    const r = await prune({ store: this.store, all: this.all });
    if (!this.quiet) this.context.stdout.write(`freed ${(r.freedBytes / 1e6).toFixed(1)} MB${this.all ? `, removed ${r.removedImages} image(s)` : ''}\n`);
  }
}
