/** pino redact paths: credentials in headers and secret-looking fields one level down. */
export declare const REDACT_PATHS: readonly string[];
/** Replaces, at any depth, the value of every field whose name looks like a secret. */
export declare function redactFields(value: unknown): unknown;
