// What never reaches a log line: credentials in headers, and any field whose name
// looks like a secret. One word list feeds both pino's redact paths and the
// deep redaction of logged request bodies, so the two cannot drift apart.
const SECRET_WORDS = ['token', 'secret', 'plaintext', 'key', 'password', 'passphrase'];
/** pino redact paths: credentials in headers and secret-looking fields one level down. */
export const REDACT_PATHS = [
    'req.headers.authorization', 'req.headers.cookie', 'headers.authorization', 'headers.cookie', 'authorization',
    ...SECRET_WORDS.flatMap((f) => [f, `*.${f}`]),
];
const SECRET_FIELD = new RegExp(SECRET_WORDS.join('|'), 'i');
/** Replaces, at any depth, the value of every field whose name looks like a secret. */
export function redactFields(value) {
    if (Array.isArray(value))
        return value.map(redactFields);
    if (typeof value !== 'object' || value === null)
        return value;
    const out = {};
    for (const [k, v] of Object.entries(value))
        out[k] = SECRET_FIELD.test(k) ? '[Redacted]' : redactFields(v);
    return out;
}
//# sourceMappingURL=redact.js.map