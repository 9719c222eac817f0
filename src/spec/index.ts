/**
 * keel/spec: TypeScript types generated from the OCI runtime-spec and image-spec JSON schemas,
 * and one validator per document kind (ajv standalone code generated from the same schemas).
 */
import { KeelError } from '../util/errors.js';
import type { ValidateFunction } from './validate-function.js';
import { validate as runtimeConfig } from './generated/validate-runtimeConfig.js';
import { validate as runtimeState } from './generated/validate-runtimeState.js';
import { validate as runtimeFeatures } from './generated/validate-runtimeFeatures.js';
import { validate as imageConfig } from './generated/validate-imageConfig.js';
import { validate as imageManifest } from './generated/validate-imageManifest.js';
import { validate as imageIndex } from './generated/validate-imageIndex.js';
import { validate as contentDescriptor } from './generated/validate-contentDescriptor.js';
import { validate as imageLayout } from './generated/validate-imageLayout.js';
import type { Spec } from './generated/runtimeConfig.js';
import type { State } from './generated/runtimeState.js';
import type { Features } from './generated/runtimeFeatures.js';
import type { ImageConfig } from './generated/imageConfig.js';
import type { ImageManifest } from './generated/imageManifest.js';
import type { ImageIndex } from './generated/imageIndex.js';
import type { ContentDescriptor } from './generated/contentDescriptor.js';
import type { ImageLayout } from './generated/imageLayout.js';

export type * from './generated/runtimeConfig.js';
export type { State } from './generated/runtimeState.js';
export type { Features } from './generated/runtimeFeatures.js';
export type { ImageConfig } from './generated/imageConfig.js';
export type { ImageManifest } from './generated/imageManifest.js';
export type { ImageIndex } from './generated/imageIndex.js';
export type { ContentDescriptor } from './generated/contentDescriptor.js';
export type { ImageLayout } from './generated/imageLayout.js';

export { RUNTIME_SPEC_VERSION, IMAGE_SPEC_VERSION } from './version.js';

/** One broken rule: the JSON pointer of the offending value and what it must be. */
export interface ValidationProblem {
  path: string;
  message: string;
}

export type ValidationResult<T> = { ok: true; value: T } | { ok: false; errors: ValidationProblem[] };

/** A document refused by its schema; the message has one line per problem, `SOURCE: /path: rule`. */
export class SpecValidationError extends KeelError {
  readonly problems: ValidationProblem[];
  readonly source: string;
  constructor(source: string, problems: ValidationProblem[]) {
    super(problems.map((p) => `${source}: ${p.path || '/'}: ${p.message}`).join('\n'));
    this.name = 'SpecValidationError';
    this.source = source;
    this.problems = problems;
  }
}

function problemsOf(fn: ValidateFunction): ValidationProblem[] {
  const seen = new Set<string>();
  const out: ValidationProblem[] = [];
  const errors = fn.errors ?? [];
  // "must match a schema in anyOf/oneOf" only repeats a more precise error at or under its path.
  const precise = errors.filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf');
  for (const e of errors) {
    if ((e.keyword === 'anyOf' || e.keyword === 'oneOf') && precise.some((p) => p.instancePath.startsWith(e.instancePath))) continue;
    let message = e.message ?? e.keyword;
    if (e.keyword === 'additionalProperties' && typeof e.params.additionalProperty === 'string') {
      message = `must NOT have additional property '${e.params.additionalProperty}'`;
    } else if (e.keyword === 'enum' && Array.isArray(e.params.allowedValues)) {
      message = `must be one of ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    }
    const key = `${e.instancePath}\0${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path: e.instancePath, message });
  }
  return out;
}

function checker<T>(fn: ValidateFunction) {
  return (doc: unknown): ValidationResult<T> =>
    fn(doc) ? { ok: true, value: doc as T } : { ok: false, errors: problemsOf(fn) };
}

function asserter<T>(fn: ValidateFunction, defaultSource: string) {
  return (doc: unknown, source = defaultSource): T => {
    if (fn(doc)) return doc as T;
    throw new SpecValidationError(source, problemsOf(fn));
  };
}

export const checkRuntimeConfig = checker<Spec>(runtimeConfig);
export const checkRuntimeState = checker<State>(runtimeState);
export const checkRuntimeFeatures = checker<Features>(runtimeFeatures);
export const checkImageConfig = checker<ImageConfig>(imageConfig);
export const checkImageManifest = checker<ImageManifest>(imageManifest);
export const checkImageIndex = checker<ImageIndex>(imageIndex);
export const checkContentDescriptor = checker<ContentDescriptor>(contentDescriptor);
export const checkImageLayout = checker<ImageLayout>(imageLayout);

export const validateRuntimeConfig = asserter<Spec>(runtimeConfig, 'config.json');
export const validateRuntimeState = asserter<State>(runtimeState, 'state');
export const validateRuntimeFeatures = asserter<Features>(runtimeFeatures, 'features');
export const validateImageConfig = asserter<ImageConfig>(imageConfig, 'image config');
export const validateImageManifest = asserter<ImageManifest>(imageManifest, 'image manifest');
export const validateImageIndex = asserter<ImageIndex>(imageIndex, 'image index');
export const validateContentDescriptor = asserter<ContentDescriptor>(contentDescriptor, 'descriptor');
export const validateImageLayout = asserter<ImageLayout>(imageLayout, 'oci-layout');

/** Parses JSON text and validates it, reporting bad JSON as one line naming the source. */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new KeelError(`${source}: invalid JSON: ${(err as Error).message}`);
  }
}
