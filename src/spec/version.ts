/** The OCI spec versions keel implements (the VERSION files under spec/). Kept apart so CLIs can print them without loading validators. */
export const RUNTIME_SPEC_VERSION = '1.3.0';
export const IMAGE_SPEC_VERSION = '1.1.1';
