// Applies a tar file to a directory in a separate process (run unprivileged by the hostile-archive
// test) and prints the outcome as JSON: { ok, error?, warnings? }.
import * as fs from 'node:fs';
import { applyLayer } from '../../src/layers/index.js';

const [tarFile, target, devices] = process.argv.slice(2) as [string, string, string | undefined];
async function* read() { yield fs.readFileSync(tarFile); }
try {
  const r = await applyLayer(target, read(), devices ? { devices: devices as 'skip' } : {});
  process.stdout.write(JSON.stringify({ ok: true, warnings: r.warnings }));
} catch (err) {
  process.stdout.write(JSON.stringify({ ok: false, error: (err as Error).message }));
}
