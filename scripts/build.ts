// Builds the command-line tools and the libraries (dist/lib: ES modules and .d.ts types). For keel and keel-build,
// dist/ gets:
//   NAME        the executable: a few lines that compile NAME.js with V8's code cache and run it
//   NAME.js     the whole CLI bundled into one CommonJS file
//   NAME.cache  V8's code cache of NAME.js, made by running `NAME --help` once
// and for keel-conformance (when conformance/cli.ts exists) NAME and NAME.mjs, an ES module bundle.
//
// Why CommonJS: Node's ESM loader costs ~3.5 ms more at every start than the CommonJS one, and keel
// is started several times per container. The sources stay ES modules; esbuild turns each lazy
// `await import('./x.js')` into a call of a bundled module's initialiser, so a command only runs
// the code it uses. Consequences for code reachable from a CLI: no top-level await (esbuild refuses
// it in CommonJS output), and `import.meta.url`/`dirname`/`filename` describe the bundle file.
// koffi, zstd-napi and node-liblzma are native addons: never bundled, loaded from node_modules when first used.
import { build, type BuildOptions, type Plugin } from 'esbuild';
import { readdirSync, statSync, chmodSync, readFileSync, writeFileSync, mkdirSync, rmSync, copyFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, relative, dirname } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function filesUnder(dir: string, keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p, keep));
    else if (keep(name)) out.push(p);
  }
  return out;
}

function isFile(p: string): boolean {
  try { return statSync(p).isFile(); } catch { return false; }
}

/**
 * clipanion reads the process's stdio and terminal colour depth when its module loads (its default
 * context), which creates the stdin, stdout and stderr streams and loads `tty` and `net`: ~3 ms at
 * every start, even for commands that print nothing. keel's CLIs never use colours nor output
 * capture and always pass their own (lazy) stdio, so the bundle gets clipanion without those reads.
 */
const leanClipanion: Plugin = {
  name: 'lean-clipanion',
  setup(b) {
    b.onLoad({ filter: /[\\/]clipanion[\\/]lib[\\/]platform[\\/]node\.js$/ }, () => ({
      contents: 'exports.getDefaultColorDepth = () => 1;\nexports.getCaptureActivator = () => null;\n',
      loader: 'js',
    }));
    b.onLoad({ filter: /[\\/]clipanion[\\/]lib[\\/]advanced[\\/]Cli\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8');
      let out = src.replace(/^\s*(stdin|stdout|stderr): process\.\1,\n/gm, '');
      if (out.length === src.length) throw new Error(`lean-clipanion: Cli.defaultContext not found in ${args.path} (clipanion changed?)`);
      // The help's list of commands is sorted with an ICU collator, whose set-up costs ~5 ms: sort
      // case-insensitively, upper case first on ties, which is the same order for command lines.
      const sorted = out.replace(/([\w.]+)\.localeCompare\(([\w.]+), `en`, \{ usage: `sort`, caseFirst: `upper` \}\)/g, '__keelCollate($1, $2)');
      if (sorted === out) throw new Error(`lean-clipanion: localeCompare not found in ${args.path} (clipanion changed?)`);
      out = 'function __keelCollate(a, b) { const x = a.toLowerCase(), y = b.toLowerCase(); return x < y ? -1 : x > y ? 1 : a < b ? -1 : a > b ? 1 : 0; }\n' + sorted;
      return { contents: out, loader: 'js' };
    });
  },
};

const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
let commit = 'unknown';
try { commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim(); } catch { /* not a git checkout */ }

/**
 * The CLIs. keel and keel-build are CommonJS (fast start, see above). keel-conformance, a test
 * suite whose start-up does not matter, is an ES module (dist/keel-conformance.mjs started by
 * dist/keel-conformance), so its code may use top-level await.
 */
const clis: { in: string; out: string; format: 'cjs' | 'esm' }[] = [
  { in: 'src/cli/keel.ts', out: 'keel', format: 'cjs' },
  { in: 'src/cli/keel-build.ts', out: 'keel-build', format: 'cjs' },
  { in: 'src/shim/main.ts', out: 'containerd-shim-keel-v2', format: 'cjs' },
  { in: 'src/shim/daemon.ts', out: 'containerd-shim-keel-v2-daemon', format: 'cjs' },
  { in: 'conformance/cli.ts', out: 'keel-conformance', format: 'esm' },
];

const dist = join(root, 'dist');
mkdirSync(dist, { recursive: true });
// A failed build must not leave the previous CLIs behind to be tested in its place.
for (const c of clis) {
  for (const ext of ['', '.js', '.cache', '.mjs']) rmSync(join(dist, c.out + ext), { force: true });
}
// dist/ holds CommonJS (.js and extensionless files), whatever the root package.json's "type" says;
// dist/lib, ES modules, gets its own package.json below.
writeFileSync(join(dist, 'package.json'), '{ "type": "commonjs" }\n');

const common: BuildOptions = {
  absWorkingDir: root,
  bundle: true,
  platform: 'node',
  target: 'node20',
  // Native addons, and @particle/dbus-next (only the systemd cgroup driver loads it), come from node_modules.
  external: ['koffi', 'zstd-napi', 'node-liblzma', '@particle/dbus-next'],
  plugins: [leanClipanion],
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  logLevel: 'warning',
};
const defines = { __KEEL_VERSION__: JSON.stringify(pkg.version), __KEEL_COMMIT__: JSON.stringify(commit) };

/** dist/NAME.js: one CommonJS file; `import.meta` (an ES module feature) describes the bundle file. */
async function bundleCommonJs(entry: string, name: string): Promise<void> {
  await build({
    ...common,
    entryPoints: [entry],
    outfile: join(dist, `${name}.js`),
    format: 'cjs',
    // `import('koffi')` becomes a require() in a promise: the bundle runs as a vm.Script (below),
    // where a real dynamic import would need a loader callback.
    supported: { 'dynamic-import': false },
    define: { ...defines, 'import.meta': '__keelImportMeta' },
    banner: {
      js: 'var __keelImportMeta = { get url() { return require("node:url").pathToFileURL(__filename).href; }, filename: __filename, dirname: __dirname, ' +
        'resolve(s) { return require("node:url").pathToFileURL(require.resolve(s)).href; } };',
    },
  });
}

/** dist/NAME.mjs: one ES module, with a `require` for the native addons. */
async function bundleEsm(entry: string, name: string): Promise<void> {
  await build({
    ...common,
    entryPoints: [entry],
    outfile: join(dist, `${name}.mjs`),
    format: 'esm',
    define: defines,
    banner: { js: "import { createRequire as __keelCreateRequire } from 'node:module'; const require = __keelCreateRequire(import.meta.url);" },
  });
}

/**
 * The interpreter of the executables: the Node.js that ran the build (the one the code cache is
 * for), by its absolute path, since engines exec the runtime with their own PATH.
 */
const interpreter = /^\/[^\s]{1,100}$/.test(process.execPath) ? process.execPath : '/usr/bin/env node';

/**
 * The executable dist/NAME of a CommonJS CLI: it compiles the bundle dist/NAME.js with V8's code
 * cache dist/NAME.cache (see warmUp), which saves compiling it at every start: 1-3 ms. A cache from
 * another Node or V8 version is rejected by V8 and the bundle is compiled as usual; `node
 * dist/NAME.js` works too. The wrapper is the CommonJS one, so the bundle sees `require`, `module`
 * and `__dirname` as if Node had loaded it.
 */
function launcher(name: string): string {
  return `#!${interpreter}
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { Script } = require('node:vm');
const file = __dirname + '/${name}.js', cacheFile = __dirname + '/${name}.cache';
let cachedData;
try { cachedData = readFileSync(cacheFile); } catch { /* no cache: compile */ }
const script = new Script('(function (exports, require, module, __filename, __dirname) {' + readFileSync(file, 'utf8') + '\\n})', { filename: file, cachedData });
if (process.env.KEEL_WRITE_CODE_CACHE === cacheFile) process.on('exit', () => writeFileSync(cacheFile, script.createCachedData()));
script.runInThisContext()(module.exports, require, module, file, __dirname);
`;
}

/** The executable dist/NAME of an ES module CLI. */
function esmLauncher(name: string): string {
  return `#!${interpreter}
'use strict';
import(require('node:url').pathToFileURL(__dirname + '/${name}.mjs').href);
`;
}

const SHIM = 'containerd-shim-keel-v2';

/** dist/containerd-shim-keel-v2: src/shim/launcher.sh with this Node.js and the shim's paths filled in. */
async function shimScript(): Promise<string> {
  const { SOCKET_DIR, DELETE_RESPONSE_FILE, keelRoot } = await import('../src/shim/flags.js');
  const quote = (v: string) => `'${v.replace(/'/g, `'\\''`)}'`;
  const values: Record<string, string> = {
    NODE: interpreter.startsWith('/usr/bin/env ') ? 'node' : interpreter,
    SOCKET_DIR, DELETE_RESPONSE_FILE, KEEL_ROOT: dirname(keelRoot('x')),
  };
  return readFileSync(join(root, 'src/shim/launcher.sh'), 'utf8').replace(/@([A-Z_]+)@/g, (m, k: string) => {
    if (!(k in values)) throw new Error(`src/shim/launcher.sh: unknown placeholder ${m}`);
    return quote(values[k]!);
  });
}

/**
 * Runs the CLI once (\`--help\`: it loads clipanion and every command class, and runs most of the
 * code that start-up shares) and has it write V8's code cache of everything compiled by then.
 * No NODE_OPTIONS: V8 rejects a cache made under other flags.
 */
function warmUp(name: string): void {
  const cacheFile = join(dist, `${name}.cache`);
  const env: NodeJS.ProcessEnv = { ...process.env, KEEL_WRITE_CODE_CACHE: cacheFile };
  delete env.NODE_OPTIONS;
  try {
    execFileSync(join(dist, name), ['--help'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    console.warn(`warning: dist/${name} --help failed, so it has no code cache (it works, it starts slower): ${(err as Error).message.split('\n')[0]}`);
  }
}

// Each CLI on its own: one that does not build (esbuild has printed why) does not stop the others.
let failed = 0;
for (const c of clis) {
  if (!isFile(join(root, c.in))) continue;
  try {
    if (c.format === 'cjs') await bundleCommonJs(c.in, c.out);
    else await bundleEsm(c.in, c.out);
  } catch {
    console.error(`build: dist/${c.out} was not built (errors above)`);
    failed++;
    continue;
  }
  if (c.out === SHIM) {
    // containerd runs the shim for every task's start and delete: a shell script answers the common
    // cases, Node.js (the launcher beside it) the rest.
    writeFileSync(join(dist, `${c.out}.launch.cjs`), launcher(c.out));
    writeFileSync(join(dist, c.out), await shimScript());
  } else {
    writeFileSync(join(dist, c.out), c.format === 'cjs' ? launcher(c.out) : esmLauncher(c.out));
  }
  chmodSync(join(dist, c.out), 0o755);
  if (c.format === 'cjs') warmUp(c.out);
}

// The libraries (package.json "exports": keel/runtime, keel/builder, keel/dockerfile, keel/layers,
// keel/spec) as ES modules in dist/lib, one file per source module, with their .d.ts types made by
// tsc (tsconfig.lib.json); JavaScript and declaration files of src/ (the generated validators) are
// copied as they are. Plain Node.js imports them: no TypeScript loader needed.
rmSync(join(dist, 'lib'), { recursive: true, force: true });
const libs = filesUnder(join(root, 'src'), (n) => n.endsWith('.ts') && !n.endsWith('.test.ts') && !n.endsWith('.d.ts'));
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
for (const f of filesUnder(join(root, 'src'), (n) => n.endsWith('.js') || n.endsWith('.d.ts'))) {
  const to = join(dist, 'lib', relative(join(root, 'src'), f));
  mkdirSync(dirname(to), { recursive: true });
  copyFileSync(f, to);
}
writeFileSync(join(dist, 'lib', 'package.json'), '{ "type": "module" }\n');
try {
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.lib.json')], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
} catch {
  console.error('build: the libraries\' type declarations (dist/lib/**/*.d.ts) were not made (errors above)');
  failed++;
}

if (failed) process.exitCode = 1;
