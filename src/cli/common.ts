// Shared plumbing of keel's CLIs: one-line errors with an exit code, the build-time version.
import { Cli, Command, type CommandClass, type BaseContext } from 'clipanion';
import { KeelError, errorMessage } from '../util/errors.js';

declare const __KEEL_VERSION__: string | undefined;
declare const __KEEL_COMMIT__: string | undefined;

export const VERSION = typeof __KEEL_VERSION__ === 'string' ? __KEEL_VERSION__ : '0.0.0-dev';
export const COMMIT = typeof __KEEL_COMMIT__ === 'string' ? __KEEL_COMMIT__ : 'unknown';

/** Formats a thrown value for users: a KeelError's message as it is, anything else on one line (stack under debug). */
export function describeError(err: unknown, debug = false): { text: string; exitCode: number } {
  if (err instanceof KeelError) return { text: err.message, exitCode: err.exitCode };
  const code = (err as NodeJS.ErrnoException)?.code;
  const text = debug && err instanceof Error && err.stack ? err.stack : errorMessage(err);
  return { text: code && !text.includes(code) ? `${text} (${code})` : text, exitCode: 1 };
}

/** Hooks a CLI can set: where errors go besides stderr, and whether stacks are shown. */
export const reporting: { debug: boolean; onError?: (text: string) => void; prefix: string } = { debug: false, prefix: '' };

export function reportError(err: unknown): number {
  const { text, exitCode } = describeError(err, reporting.debug);
  reporting.onError?.(text);
  process.stderr.write(`${reporting.prefix}${text}\n`);
  return exitCode;
}

/**
 * Base of every keel command: implement `run()`; a thrown error becomes one line on stderr and
 * the exit code (1 unless the error says otherwise); a returned number is the exit code.
 */
export abstract class KeelCommand extends Command {
  abstract run(): Promise<number | void>;
  async execute(): Promise<number> {
    try {
      return (await this.run()) ?? 0;
    } catch (err) {
      return reportError(err);
    }
  }
}

export interface CliOptions {
  binaryName: string;
  binaryLabel: string;
  commands: CommandClass<BaseContext>[];
}

/** Runs a clipanion CLI to completion and returns its exit code; usage errors are one line on stderr. */
export async function runCli(argv: string[], opts: CliOptions): Promise<number> {
  const cli = new Cli({ binaryName: opts.binaryName, binaryLabel: opts.binaryLabel, binaryVersion: VERSION, enableColors: false, enableCapture: false });
  for (const c of opts.commands) cli.register(c);
  try {
    cli.process(argv);
  } catch (err) {
    const first = errorMessage(err).split('; ')[0];
    process.stderr.write(`${opts.binaryName}: ${first}\n(run '${opts.binaryName} --help' for usage)\n`);
    return 1;
  }
  return cli.run(argv, { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
}

/** Parses a decimal integer option, naming the option on failure. */
export function intOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new KeelError(`invalid value for ${name}: ${JSON.stringify(value)} is not an integer`);
  return Number(value);
}
