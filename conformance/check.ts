// The shape of a conformance check and the runner that turns one into a result.
// A check's `run` returns normally to pass, returns `skip(reason)` when the host cannot
// observe it, and throws (usually through `assert`) to fail with a message saying what was seen.
import type { CheckMeta, CheckResult, Level } from './report.js';

export class Skip {
  constructor(readonly reason: string) {}
}

export function skip(reason: string): Skip {
  return new Skip(reason);
}

/** A failed expectation: the message says what was expected and what was observed. */
export class CheckFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckFailure';
  }
}

export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new CheckFailure(message);
}

export function fail(message: string): never {
  throw new CheckFailure(message);
}

/** JSON with object keys sorted, so equal values compare equal whatever their key order. */
function show(v: unknown): string {
  const canon = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(canon);
    if (x && typeof x === 'object') return Object.fromEntries(Object.keys(x).sort().map((k) => [k, canon((x as Record<string, unknown>)[k])]));
    return x;
  };
  return JSON.stringify(canon(v)) ?? String(v);
}

export function assertEqual<T>(actual: T, expected: T, what: string): void {
  if (show(actual) !== show(expected)) throw new CheckFailure(`${what}: expected ${show(expected)}, got ${show(actual)}`);
}

export interface Check<C> extends CheckMeta {
  run(ctx: C): Promise<void | Skip>;
}

/** Spec section reference: the section title and its link. */
export interface SpecRef {
  section: string;
  url: string;
}

/** GitHub's anchor for a markdown heading. */
export function slug(title: string): string {
  return title.toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-');
}

export function specRef(base: string, file: string, title: string): SpecRef {
  return { section: `${file} § ${title}`, url: `${base}${file}#${slug(title)}` };
}

export function defineCheck<C>(ref: SpecRef, id: string, level: Level, statement: string, run: (ctx: C) => Promise<void | Skip>): Check<C> {
  return { id, section: ref.section, url: ref.url, level, statement, run };
}

/** Runs one check with a time limit; never throws. */
export async function runCheck<C>(check: Check<C>, ctx: C, timeoutMs: number): Promise<CheckResult> {
  const t0 = Date.now();
  const meta: CheckMeta = { id: check.id, section: check.section, url: check.url, level: check.level, statement: check.statement };
  const required = check.level === 'MUST';
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new CheckFailure(`timed out after ${timeoutMs / 1000}s`)), timeoutMs);
    });
    const out = await Promise.race([check.run(ctx), timeout]);
    if (out instanceof Skip) return { ...meta, required, status: 'skip', message: out.reason, ms: Date.now() - t0 };
    return { ...meta, required, status: 'pass', ms: Date.now() - t0 };
  } catch (err) {
    const message = err instanceof CheckFailure ? err.message : `error while checking: ${(err as Error)?.message ?? String(err)}`;
    return { ...meta, required, status: 'fail', message, ms: Date.now() - t0 };
  } finally {
    clearTimeout(timer);
  }
}
