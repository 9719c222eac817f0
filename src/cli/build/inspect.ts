import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { KeelError } from '../../util/errors.js';

/** `keel-build inspect LAYOUT[:TAG]`: an image's manifest and config, summarised or raw. */
export class InspectCommand extends KeelCommand {
  static override paths = [['inspect']];
  static override usage = Command.Usage({
    description: 'show an image of an OCI layout',
    details: 'Prints a JSON summary (digest, tag, platform, created, config, layers with their diff_ids and sizes, history). `--config` and `--manifest` print the raw documents, verified against their digests.',
    examples: [['Summary', 'keel-build inspect ./layout:latest'], ['Raw config', 'keel-build inspect --config ./layout:latest']],
  });

  image = Option.String({ name: 'LAYOUT[:TAG]' });
  config = Option.Boolean('--config', false, { description: 'print the image config as stored' });
  manifest = Option.Boolean('--manifest', false, { description: 'print the image manifest as stored' });

  async run(): Promise<void> {
    if (this.config && this.manifest) throw new KeelError('inspect: --config and --manifest cannot be used together');
    const { OciLayout, readImage, parseLayoutRef, parseDigest } = await import('../../layers/index.js');
    const { layout: dir, ref } = parseLayoutRef(this.image);
    const layout = await OciLayout.open(dir);
    const img = await readImage(layout, ref);
    const out = this.context.stdout;
    if (this.config || this.manifest) {
      const desc = this.config ? img.configDescriptor : img.manifestDescriptor;
      const data = await layout.readBytes(parseDigest(desc.digest), desc.size);
      out.write(data);
      out.write('\n');
      return;
    }
    const c = img.config;
    const summary = {
      Name: dir,
      Tag: ref ?? null,
      Digest: img.manifestDescriptor.digest,
      MediaType: img.manifest.mediaType ?? img.manifestDescriptor.mediaType,
      Created: c.created ?? null,
      Author: c.author ?? null,
      Architecture: c.architecture,
      Os: c.os,
      ...(c.variant ? { Variant: c.variant } : {}),
      Config: c.config ?? {},
      Layers: img.manifest.layers.map((l, i) => ({ MediaType: l.mediaType, Digest: l.digest, Size: l.size, DiffID: c.rootfs.diff_ids[i] })),
      Size: img.manifest.config.size + img.manifest.layers.reduce((n, l) => n + l.size, 0),
      History: c.history ?? [],
      Annotations: img.manifest.annotations ?? {},
    };
    out.write(`${JSON.stringify(summary, null, 2)}\n`);
  }
}
