// Generates src/shim/generated/: TypeScript message types and descriptors (@bufbuild/protobuf,
// protoc-gen-es) from the protocol buffers vendored under spec/containerd-api (the shim's task
// service, events, mounts), spec/containerd-cgroups (metrics) and spec/ttrpc (ttrpc's request and
// response) and spec/cri-api (Kubernetes' CRI, for the tests), compiled by buf; and
// src/runtime/criu/generated/ from spec/criu (criu's RPC, for checkpoint/restore). Never edit the output.
// `--check` regenerates into a temporary directory and exits 1 if any generated file differs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync, mkdirSync, cpSync } from 'node:fs';
import { join, relative } from 'node:path';
import { tmpdir } from 'node:os';

const root = new URL('..', import.meta.url).pathname;
export const outDir = join(root, 'src/shim/generated');

/** Each vendored module: a directory whose files import one another relative to it. */
const modules = ['spec/containerd-api', 'spec/containerd-cgroups', 'spec/ttrpc', 'spec/cri-api'];
/** criu's RPC messages, generated apart: the runtime uses them, not the shim. */
export const criuModules = ['spec/criu'];
export const criuOutDir = join(root, 'src/runtime/criu/generated');
/** Every output folder and the modules generated into it. */
const targets = [{ out: outDir, modules }, { out: criuOutDir, modules: criuModules }];

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
export function generate(dest: string, from: string[] = modules): Map<string, string> {
  const bin = join(root, 'node_modules/.bin');
  const template = JSON.stringify({
    version: 'v2',
    plugins: [{ local: join(bin, 'protoc-gen-es'), out: dest, opt: ['target=ts', 'import_extension=js'] }],
  });
  for (const m of from) {
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
  let stale = 0;
  for (const { out, modules: from } of targets) {
    const shown = relative(root, out);
    const tmp = mkdtempSync(join(tmpdir(), 'keel-gen-protos-'));
    try {
      const generated = generate(tmp, from);
      const existing = existsSync(out) ? files(out).map((f) => relative(out, f)) : [];
      let changed = 0;
      for (const [name, text] of generated) {
        const path = join(out, name);
        if (!existsSync(path) || readFileSync(path, 'utf8') !== text) { changed++; if (check) console.error(`out of date: ${shown}/${name}`); }
      }
      for (const name of existing) if (!generated.has(name)) { changed++; if (check) console.error(`not generated any more: ${shown}/${name}`); }
      stale += changed;
      if (check) continue;
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out, { recursive: true });
      cpSync(tmp, out, { recursive: true });
      console.log(`${generated.size} files in ${shown} (${changed} changed)`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (check) process.exit(stale ? 1 : 0);
}
