/** The shape of an ajv standalone validator (src/spec/generated/validate-*.js). */
export interface ValidateFunction {
  (data: unknown): boolean;
  errors?: { instancePath: string; keyword: string; message?: string; params: Record<string, unknown> }[] | null;
}
