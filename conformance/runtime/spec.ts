// Links into the OCI runtime-spec (the version keel implements) and the OCI runtime command-line
// interface draft, and the two ways of declaring a runtime check.
import { RUNTIME_SPEC_VERSION } from '../../src/spec/version.js';
import { defineCheck, specRef, type Check, type SpecRef, type Skip } from '../check.js';
import type { SuiteContext } from './context.js';

export { RUNTIME_SPEC_VERSION };

const SPEC = `https://github.com/opencontainers/runtime-spec/blob/v${RUNTIME_SPEC_VERSION}/`;
const CLI = 'https://github.com/opencontainers/runtime-tools/blob/master/docs/';

export const runtimeMd = (title: string) => specRef(SPEC, 'runtime.md', title);
export const configMd = (title: string) => specRef(SPEC, 'config.md', title);
export const configLinuxMd = (title: string) => specRef(SPEC, 'config-linux.md', title);
export const runtimeLinuxMd = (title: string) => specRef(SPEC, 'runtime-linux.md', title);
/** The OCI runtime command-line interface (runtime-tools), which runc-compatible CLIs follow. */
export const cliMd = (title: string) => specRef(CLI, 'command-line-interface.md', title);

export type RuntimeCheck = Check<SuiteContext>;
type Run = (ctx: SuiteContext) => Promise<void | Skip>;

/** A required check: the spec says MUST, MUST NOT or REQUIRED. */
export function must(ref: SpecRef, id: string, statement: string, run: Run): RuntimeCheck {
  return defineCheck(ref, id, 'MUST', statement, run);
}

/** An optional check: the spec says SHOULD (reported, never failing the run). */
export function should(ref: SpecRef, id: string, statement: string, run: Run): RuntimeCheck {
  return defineCheck(ref, id, 'SHOULD', statement, run);
}

/** Waits until `pred` holds, polling; returns whether it did before the time limit. */
export async function waitFor(pred: () => boolean, timeoutMs = 10_000, everyMs = 20): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
