// Generates src/shim/generated/: TypeScript message types and descriptors (@bufbuild/protobuf,
// protoc-gen-es) from the protocol buffers vendored under spec/containerd-api (the shim's task
// service, events, mounts), spec/containerd-cgroups (metrics) and spec/ttrpc (ttrpc's request and
// response) and spec/cri-api (Kubernetes' CRI, for the tests), compiled by buf. Never edit the output.
// `--check` regenerates into a temporary directory and exits 1 if any generated file differs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync, mkdirSync, cpSync } from 'node:fs';
import { join, relative } from 'node:path';
import { tmpdir } from 'node:os';

const root = new URL('..', import.meta.url).pathname;
export const outDir = join(root, 'src/shim/generated');

/** Each vendored module: a directory whose files import one another relative to it. */
const modules = ['spec/containerd-api', 'spec/containerd-cgroups', 'spec/ttrpc', 'spec/cri-api'];

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else out.push(p);
  }
  return out.sort();
}

/** Generates every module into `dest`; returns the generated files (path relative to dest → text). */
export function generate(dest: string): Map<string, string> {
  const bin = join(root, 'node_modules/.bin');
  const template = JSON.stringify({
    version: 'v2',
    plugins: [{ local: join(bin, 'protoc-gen-es'), out: dest, opt: ['target=ts', 'import_extension=js'] }],
  });
  for (const m of modules) {
    // buf reads the directory as a module of its own (no buf.yaml needed); the well-known types
    // (google/protobuf/*) come with buf and with @bufbuild/protobuf/wkt.
    execFileSync(join(bin, 'buf'), ['generate', '--template', template, join(root, m)], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  const out = new Map<string, string>();
  for (const f of files(dest)) out.set(relative(dest, f), readFileSync(f, 'utf8'));
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const check = process.argv.includes('--check');
  const tmp = mkdtempSync(join(tmpdir(), 'keel-gen-protos-'));
  try {
    const generated = generate(tmp);
    const existing = existsSync(outDir) ? files(outDir).map((f) => relative(outDir, f)) : [];
    let stale = 0;
    for (const [name, text] of generated) {
      const path = join(outDir, name);
      if (!existsSync(path) || readFileSync(path, 'utf8') !== text) { stale++; if (check) console.error(`out of date: src/shim/generated/${name}`); }
    }
    for (const name of existing) if (!generated.has(name)) { stale++; if (check) console.error(`not generated any more: src/shim/generated/${name}`); }
    if (check) process.exit(stale ? 1 : 0);
    rmSync(outDir, { recursive: true, force: true });
    mkdirSync(outDir, { recursive: true });
    cpSync(tmp, outDir, { recursive: true });
    console.log(`${generated.size} files in src/shim/generated (${stale} changed)`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
