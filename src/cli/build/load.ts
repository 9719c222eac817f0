import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { KeelError } from '../../util/errors.js';

/** `keel-build load ARCHIVE...`: images from OCI archives or docker-archives into the store, as `podman load`. */
export class LoadCommand extends KeelCommand {
  static override paths = [['load']];
  static override usage = Command.Usage({
    description: 'load images from archives into the store',
    details: 'Reads OCI archives (`podman save --format oci-archive`, `keel-build build -o type=oci-archive`) and docker-archives (`docker save`, `podman save --format docker-archive`) into the store, every blob verified, and tags each image with the names the archive gives (a docker-archive\'s RepoTags, by their familiar names), so `FROM NAME` and `keel-build unpack STORE/oci:NAME` use it. `-` reads standard input.',
    examples: [['Load what podman saved', 'podman save --format docker-archive -o app.tar app:1 && keel-build load app.tar']],
  });

  archives = Option.Rest({ name: 'ARCHIVE', required: 1 });
  store = Option.String('--store,--root', { description: 'the store directory' });
  quiet = Option.Boolean('-q,--quiet', false, { description: 'print nothing' });

  async run(): Promise<void> {
    const fs = await import('node:fs');
    const { importArchive, REF_NAME } = await import('../../layers/index.js');
    const { BuildStore, parseReference, familiarName } = await import('../../builder/index.js');
    const store = BuildStore.open(this.store);
    const unlock = await store.lockShared(); // a prune waits until the images are tagged
    try {
      await this.load(await store.layout(), importArchive, REF_NAME, (t) => familiarName(parseReference(t)));
    } finally {
      unlock();
    }
  }

  private async load(layout: import('../../layers/index.js').OciLayout, importArchive: typeof import('../../layers/index.js').importArchive, REF_NAME: string, tag: (t: string) => string): Promise<void> {
    const fs = await import('node:fs');
    for (const file of this.archives) {
      let source: AsyncIterable<Uint8Array>;
      if (file === '-') source = this.context.stdin as unknown as AsyncIterable<Uint8Array>;
      else {
        try {
          fs.accessSync(file, fs.constants.R_OK);
        } catch (err) {
          throw new KeelError(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code}`);
        }
        source = fs.createReadStream(file, { highWaterMark: 1 << 20 });
      }
      const entries = await importArchive(source, layout, { tag }).catch((err: Error) => {
        throw new KeelError(`${file}: ${err.message}`);
      });
      if (this.quiet) continue;
      for (const e of entries) this.context.stdout.write(`loaded ${e.annotations?.[REF_NAME] ?? '<none>'} ${e.digest}\n`);
    }
  }
}
