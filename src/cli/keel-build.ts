// keel-build: the image builder's command line. It only parses arguments: every command calls the
// libraries (src/builder, src/dockerfile, src/layers), loaded when the command runs.
import { Builtins } from 'clipanion';
import { runCli } from './common.js';
import { buildCommands } from './build/commands.js';

const code = await runCli(process.argv.slice(2), {
  binaryName: 'keel-build',
  binaryLabel: 'keel-build: Dockerfile in, OCI image out',
  commands: [Builtins.HelpCommand, Builtins.VersionCommand, ...buildCommands],
});
process.exitCode = code;
