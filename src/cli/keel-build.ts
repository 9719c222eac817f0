// keel-build: the image builder's command line. It only parses arguments: every command calls the
// libraries (src/builder, src/dockerfile, src/layers), loaded when the command runs.
import { VERSION, COMMIT, writeStdout } from './runtime/globals.js';

async function main(argv: string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v')) {
    writeStdout(`keel-build version ${VERSION}\ncommit: ${COMMIT}\nnode: ${process.version}\n`);
    return 0;
  }
  const [{ Builtins }, { runCli }, { buildCommands }] =
    await Promise.all([import('clipanion'), import('./common.js'), import('./build/commands.js')]);
  return runCli(argv, {
    binaryName: 'keel-build',
    binaryLabel: 'keel-build: Dockerfile in, OCI image out',
    commands: [Builtins.HelpCommand, ...buildCommands],
  });
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
