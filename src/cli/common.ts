// Shared plumbing of keel's CLIs: one-line errors with an exit code, the build-time version.
import { Cli, Command, type CommandClass, type BaseContext } from 'clipanion';
import { KeelError, errorMessage } from '../util/errors.js';
import { VERSION } from './runtime/globals.js';

export { VERSION, COMMIT } from './runtime/globals.js';

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

/**
 * A stand-in for one of the process's stdio streams that creates it on first use. Node builds
 * `process.stdin/stdout/stderr` lazily, and building one costs 1-3 ms (it loads the stream, tty
 * or net modules); most runtime commands print nothing, so they should not pay for it.
 */
function lazyStdio<T extends object>(get: () => T): T {
  return new Proxy({} as T, {
    get(_target, key) {
      const stream = get();
      const value = Reflect.get(stream, key, stream);
      return typeof value === 'function' ? value.bind(stream) : value;
    },
    set(_target, key, value) { return Reflect.set(get(), key, value); },
    has(_target, key) { return Reflect.has(get(), key); },
    getPrototypeOf() { return Object.getPrototypeOf(get()); },
  });
}

const stdio = {
  stdin: lazyStdio(() => process.stdin),
  stdout: lazyStdio(() => process.stdout),
  stderr: lazyStdio(() => process.stderr),
};

/**
 * The commands clipanion must know to parse argv: those whose name is argv's first word, or all of
 * them when none is (`--help`, a typo to suggest a fix for). Clipanion compiles a state machine of
 * every registered command on each parse, so registering one instead of all saves start-up time.
 */
function candidates(argv: string[], commands: CommandClass<BaseContext>[]): CommandClass<BaseContext>[] {
  const first = argv[0];
  if (first === undefined || first.startsWith('-')) return commands;
  const named = commands.filter((c) => c.paths?.some((p) => p.length > 0 && p[0] === first));
  if (named.length === 0) return commands;
  return commands.filter((c) => named.includes(c) || c.paths?.some((p) => p.length === 0));
}

/** Runs a clipanion CLI to completion and returns its exit code; usage errors are one line on stderr. */
export async function runCli(argv: string[], opts: CliOptions): Promise<number> {
  // `help [COMMAND]`, as runc and most CLIs have it, is `[COMMAND] --help`.
  if (argv[0] === 'help' && !opts.commands.some((c) => c.paths?.some((p) => p[0] === 'help'))) argv = [...argv.slice(1, 2), '--help'];
  const cli = new Cli({ binaryName: opts.binaryName, binaryLabel: opts.binaryLabel, binaryVersion: VERSION, enableColors: false, enableCapture: false });
  for (const c of candidates(argv, opts.commands)) cli.register(c);
  let command: Command<BaseContext>;
  try {
    command = cli.process(argv, stdio);
  } catch (err) {
    const first = errorMessage(err).split('; ')[0];
    process.stderr.write(`${opts.binaryName}: ${first}\n(run '${opts.binaryName} --help' for usage)\n`);
    return 1;
  }
  return cli.run(command, stdio);
}

/** Parses a decimal integer option, naming the option on failure. */
export function intOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new KeelError(`invalid value for ${name}: ${JSON.stringify(value)} is not an integer`);
  return Number(value);
}
