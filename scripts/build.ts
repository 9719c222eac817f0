// Bundles each CLI into one ESM file under dist/ and transpiles the libraries to dist/lib.
import { build } from 'esbuild';
import { readdirSync, statSync, chmodSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
let commit = 'unknown';
try { commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim(); } catch { /* not a git checkout */ }

const clis = [
  { in: 'src/cli/keel.ts', out: 'keel' },
  { in: 'src/cli/keel-build.ts', out: 'keel-build' },
  { in: 'conformance/cli.ts', out: 'keel-conformance' },
].filter((c) => { try { return statSync(join(root, c.in)).isFile(); } catch { return false; } });

await build({
  absWorkingDir: root,
  entryPoints: clis.map((c) => ({ in: c.in, out: c.out })),
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Native addons cannot be bundled; they are loaded only by the code paths that need them.
  external: ['koffi', 'zstd-napi'],
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __keelCreateRequire } from 'node:module'; const require = __keelCreateRequire(import.meta.url);" },
  define: { __KEEL_VERSION__: JSON.stringify(pkg.version), __KEEL_COMMIT__: JSON.stringify(commit) },
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  logLevel: 'warning',
});
for (const c of clis) chmodSync(join(root, 'dist', `${c.out}.mjs`), 0o755);

const libs = tsFiles(join(root, 'src'));
await build({
  absWorkingDir: root,
  entryPoints: libs.map((f) => relative(root, f)),
  outdir: 'dist/lib',
  outbase: 'src',
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
});
