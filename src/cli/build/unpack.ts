import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';
import { KeelError } from '../../util/errors.js';

/** `keel-build unpack LAYOUT[:TAG] BUNDLE`: an image to a runtime bundle (rootfs + config.json), as `umoci unpack`. */
export class UnpackCommand extends KeelCommand {
  static override paths = [['unpack']];
  static override usage = Command.Usage({
    description: 'unpack an image of an OCI layout into a runtime bundle',
    details: 'Applies the image\'s layers into BUNDLE/rootfs (digests and diff_ids verified, hostile archives refused) and writes BUNDLE/config.json from the image config (Entrypoint + Cmd, Env, WorkingDir, User resolved in the image\'s /etc/passwd and /etc/group). BUNDLE must not exist or be empty. TAG may be omitted when the layout holds one image; LAYOUT@sha256:... names a manifest.',
    examples: [['Unpack and run', 'keel-build unpack ./layout:latest ./bundle && keel run -b ./bundle c1']],
  });

  image = Option.String({ name: 'LAYOUT[:TAG]' });
  bundle = Option.String({ name: 'BUNDLE' });
  rootless = Option.Boolean('--rootless', false, { description: 'write a rootless configuration (user namespace); files keep the caller as owner' });
  platform = Option.String('--platform', { description: 'OS/ARCH[/VARIANT] to pick from a multi-platform image (default: this machine)' });
  skipDevices = Option.Boolean('--skip-devices', false, { description: 'skip device nodes instead of refusing them when not privileged' });
  terminal = Option.Boolean('--terminal', false, { description: 'set process.terminal in config.json' });
  noFollow = Option.Boolean('--no-follow-symlinks', false, { description: 'refuse an image whose layers write through a symlink, instead of following it inside the rootfs as Docker, containerd and umoci do' });
  maxSize = Option.String('--max-unpacked-size', { description: 'SIZE (e.g. 10G): stop when the layers unpack to more than this, all together (default: the free space of the bundle\'s file system less a margin)' });

  async run(): Promise<void> {
    const { unpackImage, parseLayoutRef, parseSize } = await import('../../layers/index.js');
    const maxUnpackedSize = this.maxSize === undefined ? undefined : parseSize(this.maxSize, '--max-unpacked-size');
    const { layout, ref } = parseLayoutRef(this.image);
    let platform: { os: string; architecture: string; variant?: string } | undefined;
    if (this.platform) {
      const [os, architecture, variant] = this.platform.split('/');
      if (!os || !architecture) throw new KeelError(`--platform ${JSON.stringify(this.platform)}: expected OS/ARCH[/VARIANT]`);
      platform = variant ? { os, architecture, variant } : { os, architecture };
    }
    const result = await unpackImage(layout, ref, this.bundle, {
      rootless: this.rootless,
      terminal: this.terminal,
      ...(platform ? { platform } : {}),
      ...(maxUnpackedSize === undefined ? {} : { maxUnpackedSize }),
      apply: {
        ...(this.rootless ? { owners: false } : {}),
        ...(this.skipDevices ? { devices: 'skip' as const } : {}),
        ...(this.noFollow ? { parentSymlinks: 'refuse' as const } : {}),
      },
    });
    for (const w of result.warnings) this.context.stderr.write(`warning: ${w}\n`);
  }
}
