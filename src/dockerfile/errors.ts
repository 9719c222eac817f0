// Errors of the Dockerfile frontend. Every one is a KeelError whose message is one line:
// `FILE:LINE: what is wrong` for Dockerfile errors, `FILE: what is wrong` for .dockerignore ones.
import { KeelError } from '../util/errors.js';
import { oneLine } from './text.js';

/** An error in a Dockerfile, with where it is. */
export class DockerfileError extends KeelError {
  readonly file: string;
  readonly line: number;
  readonly endLine: number;
  /** What is wrong, without the location. */
  readonly detail: string;
  constructor(file: string, line: number, detail: string, endLine = line) {
    const text = oneLine(detail, 400);
    super(line > 0 ? `${file}:${line}: ${text}` : `${file}: ${text}`);
    this.name = 'DockerfileError';
    this.file = file;
    this.line = line;
    this.endLine = endLine;
    this.detail = text;
  }
}

/**
 * A failed word expansion (`${VAR:?}`, unterminated quote, bad substitution...). The message
 * names the word, as BuildKit's does: `failed to process "${x": syntax error: missing '}'`.
 */
export class ExpansionError extends KeelError {
  readonly word: string;
  readonly reason: string;
  constructor(message: string, word: string, reason: string) {
    super(oneLine(message, 400));
    this.name = 'ExpansionError';
    this.word = word;
    this.reason = reason;
  }
}

/** An error in a .dockerignore file. */
export class DockerignoreError extends KeelError {
  constructor(message: string) {
    super(oneLine(message, 400));
    this.name = 'DockerignoreError';
  }
}
