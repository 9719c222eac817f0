// Results of a conformance run and their three renderings: a table, TAP, and JSON.
// A check is required when the spec says MUST (or MUST NOT, REQUIRED); SHOULD-level checks are
// reported but never make the run fail. A run passes when no required check failed.

export type Level = 'MUST' | 'SHOULD';
export type Status = 'pass' | 'fail' | 'skip';

/** What a check verifies and where the spec says so. */
export interface CheckMeta {
  /** Stable identifier, e.g. `config-linux.namespaces.new-pid`. */
  id: string;
  /** The spec section the check verifies, e.g. `config-linux.md § Namespaces`. */
  section: string;
  /** Link to that section of the spec. */
  url: string;
  level: Level;
  /** The requirement, stated as the spec states it (MUST/SHOULD ...). */
  statement: string;
}

export interface CheckResult extends CheckMeta {
  required: boolean;
  status: Status;
  /** Why it failed or was skipped; what was observed. */
  message?: string;
  ms: number;
}

export interface Summary {
  total: number;
  pass: number;
  fail: number;
  skip: number;
  requiredFailed: number;
  optionalFailed: number;
}

export interface Report {
  suite: 'runtime' | 'image';
  /** The runtime binary or the image layout (and tag) under test. */
  target: string;
  specVersion: string;
  startedAt: string;
  ms: number;
  results: CheckResult[];
  summary: Summary;
  /** True when every required check passed (skips do not fail a run). */
  ok: boolean;
}

export function summarize(results: CheckResult[]): Summary {
  const s: Summary = { total: results.length, pass: 0, fail: 0, skip: 0, requiredFailed: 0, optionalFailed: 0 };
  for (const r of results) {
    s[r.status]++;
    if (r.status === 'fail') {
      if (r.required) s.requiredFailed++;
      else s.optionalFailed++;
    }
  }
  return s;
}

export function makeReport(suite: Report['suite'], target: string, specVersion: string, started: number, results: CheckResult[]): Report {
  const summary = summarize(results);
  return {
    suite,
    target,
    specVersion,
    startedAt: new Date(started).toISOString(),
    ms: Date.now() - started,
    results,
    summary,
    ok: summary.requiredFailed === 0,
  };
}

function oneLine(text: string | undefined): string {
  return (text ?? '').replace(/\s*\n\s*/g, '; ');
}

function summaryLine(r: Report): string {
  const s = r.summary;
  return `${s.total} checks: ${s.pass} passed, ${s.fail} failed (${s.requiredFailed} required, ${s.optionalFailed} optional), ${s.skip} skipped in ${(r.ms / 1000).toFixed(1)}s`;
}

/** A plain-text table: one row per check with its status, level, id and spec link, and the reason under failures and skips. */
export function formatTable(r: Report): string {
  const label = (x: CheckResult) => (x.status === 'fail' && !x.required ? 'WARN' : x.status.toUpperCase());
  const idWidth = Math.min(56, Math.max(...r.results.map((x) => x.id.length), 5));
  const lines = [`keel-conformance ${r.suite}: ${r.target} (${r.suite === 'runtime' ? 'runtime-spec' : 'image-spec'} v${r.specVersion})`, ''];
  lines.push(`${'RESULT'.padEnd(6)}  ${'LEVEL'.padEnd(6)}  ${'CHECK'.padEnd(idWidth)}  SPEC`);
  for (const x of r.results) {
    lines.push(`${label(x).padEnd(6)}  ${x.level.padEnd(6)}  ${x.id.padEnd(idWidth)}  ${x.url}`);
    if (x.status !== 'pass' && x.message) lines.push(`${''.padEnd(16)}${x.status === 'skip' ? 'skipped: ' : ''}${oneLine(x.message)}`);
  }
  lines.push('', `${r.ok ? 'PASS' : 'FAIL'}: ${summaryLine(r)}`);
  return lines.join('\n') + '\n';
}

/** TAP version 13; optional (SHOULD) failures are marked TODO so TAP consumers do not count them. */
export function formatTap(r: Report): string {
  const lines = ['TAP version 13', `1..${r.results.length}`];
  r.results.forEach((x, i) => {
    const n = i + 1;
    const desc = `${x.id} - ${x.statement.replace(/#/g, '\\#')}`;
    if (x.status === 'skip') lines.push(`ok ${n} ${desc} # SKIP ${oneLine(x.message)}`);
    else if (x.status === 'pass') lines.push(`ok ${n} ${desc}`);
    else lines.push(`not ok ${n} ${desc}${x.required ? '' : ' # TODO optional (SHOULD)'}`);
    if (x.status === 'fail') {
      lines.push('  ---', `  level: ${x.level}`, `  spec: ${x.url}`, `  message: ${JSON.stringify(oneLine(x.message))}`, '  ...');
    }
  });
  lines.push(`# ${r.ok ? 'PASS' : 'FAIL'}: ${summaryLine(r)}`);
  return lines.join('\n') + '\n';
}

export function formatJson(r: Report): string {
  return JSON.stringify(r, null, 2) + '\n';
}

/** Runs tasks with at most `limit` at once, keeping results in input order. */
export async function pool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  });
  await Promise.all(workers);
  return out;
}
