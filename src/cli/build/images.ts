import { Command, Option } from 'clipanion';
import { KeelCommand } from '../common.js';

function human(n: number | undefined): string {
  if (n === undefined) return '-';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)}${units[i]}`;
}

/** `keel-build images LAYOUT`: the images an OCI layout holds. */
export class ImagesCommand extends KeelCommand {
  static override paths = [['images']];
  static override usage = Command.Usage({
    description: 'list the images of an OCI layout',
    details: 'One line per entry of index.json: tag, manifest digest, platform, creation time, size (config and compressed layers).',
    examples: [['List', 'keel-build images ./layout'], ['As JSON', 'keel-build images --json ./layout']],
  });

  layout = Option.String({ name: 'LAYOUT' });
  json = Option.Boolean('--json', false, { description: 'print a JSON array' });
  quiet = Option.Boolean('--quiet,-q', false, { description: 'print manifest digests only' });

  async run(): Promise<void> {
    const { OciLayout, listImages } = await import('../../layers/index.js');
    const images = await listImages(await OciLayout.open(this.layout));
    const out = this.context.stdout;
    if (this.json) {
      out.write(`${JSON.stringify(images, null, 2)}\n`);
      return;
    }
    if (this.quiet) {
      for (const i of images) out.write(`${i.digest}\n`);
      return;
    }
    const rows = [['TAG', 'DIGEST', 'PLATFORM', 'CREATED', 'SIZE', 'LAYERS']];
    for (const i of images) {
      rows.push([i.tag ?? '<none>', i.digest.slice(0, 19), i.platform ?? '-', i.created ?? '-', i.error ? `error: ${i.error}` : human(i.size), i.layers === undefined ? '-' : String(i.layers)]);
    }
    const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
    for (const r of rows) out.write(`${r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('   ')}\n`);
  }
}
