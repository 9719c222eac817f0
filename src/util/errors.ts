/**
 * An error meant for users: its message is one line saying what failed and on which input.
 * CLIs print `message` alone and exit with `exitCode`; anything else is a bug and gets a stack.
 */
export class KeelError extends Error {
  readonly exitCode: number;
  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KeelError';
    this.exitCode = options.exitCode ?? 1;
  }
}

/** The message of any thrown value, on one line. */
export function errorMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*\n\s*/g, '; ');
}

/**
 * A value from user input for an error line: JSON-quoted, and only its first `max` characters when
 * it is longer (with its length), so a huge value never makes a huge line.
 */
export function quoteValue(value: string, max = 64): string {
  if (value.length <= max) return JSON.stringify(value);
  return `${JSON.stringify(value.slice(0, max))}… (${value.length} characters)`;
}
