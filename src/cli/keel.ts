// keel: the runc-compatible OCI runtime's command line. It parses arguments and calls src/runtime.
// runc's global flags come before the command (`keel --root DIR --log FILE create ...`); they are
// taken off here and handed to the commands through `globals`.
//
// Start-up is the runtime's floor (engines run keel several times per container), so this module
// statically loads only globals.ts: `--version` is answered without clipanion, and everything else
// (clipanion, the commands, and through them the libraries) is loaded when it is needed.
import { globals, parseGlobalFlags, writeLog, versionText, writeStdout } from './runtime/globals.js';
import { errorMessage } from '../util/errors.js';

async function main(args: string[]): Promise<number> {
  let argv: string[];
  try {
    argv = parseGlobalFlags(args);
  } catch (err) {
    process.stderr.write(`keel: ${errorMessage(err)}\n`);
    return 1;
  }
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version')) {
    writeStdout(versionText());
    return 0;
  }
  const [{ Builtins }, { runCli, reporting }, { runtimeCommands }] =
    await Promise.all([import('clipanion'), import('./common.js'), import('./runtime/commands.js')]);
  reporting.debug = globals.debug;
  reporting.onError = (text) => writeLog('error', text);
  return runCli(argv, {
    binaryName: 'keel',
    binaryLabel: 'keel: an OCI container runtime (runc-compatible)',
    commands: [Builtins.HelpCommand, ...runtimeCommands],
  });
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
