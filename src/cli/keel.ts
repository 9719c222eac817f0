// keel: the runc-compatible OCI runtime's command line. It parses arguments and calls src/runtime.
// runc's global flags come before the command (`keel --root DIR --log FILE create ...`); they are
// taken off here and handed to the commands through `globals`.
import { Builtins } from 'clipanion';
import { runCli, reporting } from './common.js';
import { globals, parseGlobalFlags, writeLog } from './runtime/globals.js';
import { runtimeCommands } from './runtime/commands.js';

const argv = parseGlobalFlags(process.argv.slice(2));
reporting.debug = globals.debug;
reporting.onError = (text) => writeLog('error', text);

const code = await runCli(argv, {
  binaryName: 'keel',
  binaryLabel: 'keel: an OCI container runtime (runc-compatible)',
  commands: [Builtins.HelpCommand, ...runtimeCommands],
});
process.exitCode = code;
